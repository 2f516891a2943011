"""``train.cutout``: D sees real and generated clips with one zeroed rectangle each (DiffAugment's cutout), and
`specgan train` with it trains another generator."""

from __future__ import annotations

from dataclasses import replace

import torch

from specgan.training.augment import cutout
from specgan.training.gan import GanState, GanStep
from tests.services import run_cli
from tests.tiny import train_args

ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}


def test_each_clip_gets_one_rectangle_of_the_ratio_at_its_own_place():
    x = torch.rand(16, 1, 128, 128) + 1  # no zeros of its own
    out = cutout(x, 0.25, torch.Generator().manual_seed(0))
    holes = out == 0
    assert out.shape == x.shape and torch.equal(out[~holes], x[~holes])
    for clip in holes[:, 0]:
        frames, bins = clip.any(1).nonzero().flatten(), clip.any(0).nonzero().flatten()
        assert len(frames) == 32 and len(bins) == 32  # one 32 x 32 rectangle
        assert int(frames[-1] - frames[0]) == 31 and int(bins[-1] - bins[0]) == 31 and int(clip.sum()) == 32 * 32
    corners = {(int(c.any(1).nonzero()[0]), int(c.any(0).nonzero()[0])) for c in holes[:, 0]}
    assert len(corners) > 8  # random places, not one
    assert cutout(x, 0.0, torch.Generator()) is x


def test_g_sees_the_mask_and_its_gradient_passes_through_it():
    x = torch.rand(4, 1, 128, 128, requires_grad=True)
    cutout(x, 0.5, torch.Generator().manual_seed(1)).sum().backward()
    assert set(x.grad.unique().tolist()) == {0.0, 1.0} and float(x.grad.mean()) == 0.75


def test_a_step_with_cutout_trains_d_on_other_inputs(params):
    """The same step twice without cutout gives the same D; with it, another."""
    model = replace(params.model, model_dim=4)

    def one_step(ratio: float) -> dict:
        train = replace(params.train, batch_size=4, cutout=ratio)
        state = GanState.create(model, train, torch.device("cpu"))
        gen = torch.Generator().manual_seed(0)
        real = [torch.rand(4, 1, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1]
        GanStep(state, train, model.latent_dim)(real, gen)
        return {k: v.clone() for k, v in state.D.state_dict().items()}

    off, again, on = one_step(0.0), one_step(0.0), one_step(0.25)
    assert all(torch.equal(off[k], again[k]) for k in off)
    assert not all(torch.equal(off[k], on[k]) for k in off)


def test_train_command_with_cutout_trains_another_generator_and_refuses_a_bad_ratio(prepared, tmp_path):
    weights = []
    for ratio in ("0.0", "0.25"):
        run_cli(*train_args(prepared, tmp_path / ratio, 1, "--set", f"train.cutout={ratio}"), env=ENV)
        weights.append(torch.load(tmp_path / ratio / "generator.pt", weights_only=True)["state_dict"])
    assert not all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    bad = run_cli(*train_args(prepared, tmp_path / "bad", 1, "--set", "train.cutout=1.5"), env=ENV, check=False)
    assert bad.returncode != 0 and "cutout" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
