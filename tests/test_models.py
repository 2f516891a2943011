"""Networks, losses and one training iteration (SPEC.md sections 5-7)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from specgan.model import losses
from specgan.model.networks import Discriminator, Generator, _upsampler, minibatch_std, n_params
from specgan.training.gan import GanState, GanStep


def test_full_width_shapes_and_parameter_counts(seed_params):
    params = seed_params
    G, D = Generator(params.model), Discriminator(params.model)
    # Linear 100->16384 plus five 5x5 transposed convs 1024->512->256->128->64->1 (SPEC.md 5).
    assert n_params(G) == 100 * 16384 + 16384 + sum(a * b * 25 + b for a, b in
                                                      [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 1)])
    assert n_params(D) == 16384 + 1 + sum(a * b * 25 + b for a, b in
                                          [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024)])
    assert math.floor(n_params(G) / 1e5) / 10 == 19.0 and math.floor(n_params(D) / 1e5) / 10 == 17.4
    z = torch.rand(2, 100) * 2 - 1
    with torch.no_grad():
        x = G(z)
        assert x.shape == (2, 1, 128, 128) and x.abs().max() <= 1
        assert D(x).shape == (2,)


def test_nn_upsampling_is_a_resize_then_a_convolution_with_the_same_weights(params):
    """model.upsample nn (the paper's code): each G layer is a nearest-neighbour 2x resize and a stride-1
    5x5 convolution, as many parameters as the transposed convolutions; a constant input gives a constant
    output away from the borders (a transposed stride-2 convolution gives a 2x2 checkerboard)."""
    from torch import nn

    cfg = replace(params.model, model_dim=4)
    zeros, resize = Generator(cfg), Generator(replace(cfg, upsample="nn"))
    assert n_params(zeros) == n_params(resize)
    assert all(isinstance(up[0], nn.Upsample) and isinstance(up[1], nn.Conv2d) for up in resize.ups)
    with torch.no_grad():
        x = resize(torch.rand(3, 100) * 2 - 1)
        assert x.shape == (3, 1, 128, 128) and x.abs().max() <= 1
        for mode, flat in (("nn", True), ("zeros", False)):
            layer = _upsampler(1, 1, 5, mode)
            for m in layer.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.ones_(m.weight)
            inner = layer(torch.ones(1, 1, 16, 16))[0, 0, 4:-4, 4:-4]
            assert bool((inner == inner[0, 0]).all()) == flat, mode


def test_glorot_uniform_init_and_zero_bias(params):
    G = Generator(replace(params.model, model_dim=8))
    conv = G.ups[1]
    fan_in, fan_out = conv.weight.shape[1] * 25, conv.weight.shape[0] * 25
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    biases = [m.bias.detach() for m in G.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(float(b.abs().max()) == 0 for b in biases)


def test_dcgan_losses_match_hand_computation():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus: BCE(l, 1) = sp(-l), BCE(l, 0) = sp(l)
    d_expected = ((sp(0.5) + sp(-3.0)) / 2 + (sp(-2.0) + sp(1.0)) / 2) / 2
    assert losses.dcgan_d_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert losses.dcgan_g_loss(fake).item() == pytest.approx((sp(-0.5) + sp(3.0)) / 2, rel=1e-6)
    assert losses.wgan_d_loss(real, fake).item() == pytest.approx((0.5 - 3.0) / 2 - (2.0 - 1.0) / 2)
    assert losses.wgan_g_loss(fake).item() == pytest.approx(1.25)


def test_gradient_penalty_matches_hand_computation():
    # For a linear critic D(x) = sum(w * x), grad D = w everywhere, so the penalty is (||w|| - 1)^2.
    w = torch.full((1, 1, 2, 2), 0.8)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    gp = losses.gradient_penalty(critic, real, fake, torch.rand(3))
    assert gp.item() == pytest.approx((1.6 - 1) ** 2, rel=1e-6)
    # A quadratic critic D(x) = sum(x^2) / 2 has grad x_hat: check alpha's interpolation.
    alpha = torch.tensor([0.25])
    real1, fake1 = torch.full((1, 1, 1, 2), 4.0), torch.zeros(1, 1, 1, 2)
    gp2 = losses.gradient_penalty(lambda x: (x**2).flatten(1).sum(1) / 2, real1, fake1, alpha)
    assert gp2.item() == pytest.approx((math.sqrt(2) * 1.0 - 1) ** 2, rel=1e-6)


@pytest.mark.parametrize("loss", ["dcgan", "wgan_gp"])
def test_one_iteration_changes_both_networks(params, loss):
    model = replace(params.model, model_dim=4)
    train = replace(params.train, loss=loss, batch_size=4)
    state = GanState.create(model, train, torch.device("cpu"))
    g0 = [p.detach().clone() for p in state.G.parameters()]
    # The WGAN critic loss is blind to a constant shift, so its output bias gets exactly zero gradient.
    d_names = [n for n, _ in state.D.named_parameters() if not (loss == "wgan_gp" and n == "fc.bias")]
    d0 = [state.D.get_parameter(n).detach().clone() for n in d_names]
    step = GanStep(state, train, model.latent_dim)
    real = [torch.rand(4, 1, 128, 128) * 2 - 1 for _ in range(train.optim.d_steps)]
    out = step(real, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.d_loss) and torch.isfinite(out.g_loss) and state.iteration == 1
    assert all(not torch.equal(a, b) for a, b in zip(g0, state.G.parameters(), strict=True))
    assert all(not torch.equal(a, state.D.get_parameter(n)) for a, n in zip(d0, d_names, strict=True))
    assert all(p.requires_grad for p in state.D.parameters())


def _d_loss(params, index: int = 0, **optim) -> float:
    model = replace(params.model, model_dim=4, minibatch_std=optim.pop("mbstd", 0),
                    spectral_norm=optim.pop("sn", False))
    train = replace(params.train, batch_size=4, dcgan=replace(params.train.dcgan, **optim))
    state = GanState.create(model, train, torch.device("cpu"))
    real = torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss, _, _ = GanStep(state, train, model.latent_dim).d_update(real, torch.Generator().manual_seed(0), index)
    return float(loss)


def test_each_stabilizer_changes_the_discriminator_step(seed_params):
    params = seed_params
    base = _d_loss(params)
    assert _d_loss(params, r1_weight=10.0) > base  # R1 adds a non-negative penalty (here > 0)
    assert _d_loss(params, r1_weight=10.0, r1_every=2, index=1) == base  # lazy: off on odd D updates
    lazy = _d_loss(params, r1_weight=10.0, r1_every=2, index=2)
    assert lazy - base == pytest.approx(2 * (_d_loss(params, r1_weight=10.0) - base), rel=1e-4)  # weighted k
    assert _d_loss(params, mbstd=4) != base and _d_loss(params, sn=True) != base
    d = Discriminator(replace(params.model, model_dim=4, minibatch_std=4))
    x, y, z = (torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(i)) for i in range(3))
    # Groups of 4 never mix the two halves of a batch: the real half's scores ignore the fake half...
    assert torch.allclose(d(torch.cat([x, y]))[:4], d(torch.cat([x, z]))[:4], atol=1e-6)
    # ...but do depend on the rest of their own group (the feature is a batch statistic).
    assert not torch.allclose(d(torch.cat([x[:2], y[:2]]))[:2], d(torch.cat([x[:2], z[:2]]))[:2], atol=1e-6)


def test_minibatch_std_is_the_population_std_of_each_group():
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    feature = minibatch_std(x, 4)
    expected = [(x[i:i + 4].var(dim=0, unbiased=False) + 1e-8).sqrt().mean() for i in (0, 4)]
    assert feature.shape == (8, 1, 4, 4)
    for i, value in enumerate(expected):
        assert torch.allclose(feature[4 * i:4 * i + 4], value.expand(4, 1, 4, 4), atol=1e-6)


def test_d_lr_scale_sets_the_discriminator_learning_rate(params):
    train = replace(params.train, dcgan=replace(params.train.dcgan, d_lr_scale=4.0))
    state = GanState.create(replace(params.model, model_dim=4), train, torch.device("cpu"))
    assert state.opt_d.param_groups[0]["lr"] == pytest.approx(4 * state.opt_g.param_groups[0]["lr"])
