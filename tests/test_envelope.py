"""G's time-envelope terms (``train.envelope_weight``, ``envelope_quantile_weight``), from the features to
`specgan train`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specgan.core.config import ModelConfig
from specgan.data.normalize import normalize
from specgan.data.shards import load_features
from specgan.data.stats import NormStats
from specgan.model.networks import Generator
from specgan.training.envelope import EnvelopeMatching, TimeEnvelope
from tests.services import run_cli
from tests.tiny import train_args


def _data(prepared, params) -> tuple[np.ndarray, NormStats, torch.Tensor]:
    feats, stats_path = prepared
    raw = load_features(feats)
    stats = NormStats.load(stats_path)
    return raw, stats, normalize(raw, stats, params.normalize)


def test_the_envelope_is_each_frames_energy_in_db_under_the_loudest(prepared, params):
    raw, stats, x = _data(prepared, params)
    env = TimeEnvelope(stats, params.normalize, -60.0)(x).numpy()
    # Independently, from the log-magnitude features (freq x time, Nyquist bin dropped), in float64.
    power = np.exp(2 * raw[:, :-1, :].astype(np.float64)).sum(axis=1)
    expect = np.maximum(10 * np.log10(power / power.max(axis=1, keepdims=True)), -60.0)
    unclipped = (x.abs() < params.normalize.clip).flatten(1).all(1).numpy()  # clipping changes the energy
    assert unclipped.mean() > 0.5
    np.testing.assert_allclose(env[unclipped], expect[unclipped], atol=0.05)
    # drum hits: loudest within their first 24 ms (the kit's attacks, as recorded kicks', take up to about 20)
    assert (env[:, :4].max(axis=1) > -3).mean() > 0.9


def test_the_term_is_zero_on_the_data_and_pulls_a_generator_toward_its_envelope(prepared, params):
    _, stats, x = _data(prepared, params)
    env = TimeEnvelope(stats, params.normalize, -60.0)
    term = EnvelopeMatching(env, env.all_of(x, chunk=7).mean(0), weight=1.0)  # chunked: the same mean
    assert float(term(x)) < 1e-8
    torch.manual_seed(0)
    G = Generator(ModelConfig(**{**params.model.__dict__, "model_dim": 4}))
    opt = torch.optim.Adam(G.parameters(), lr=2e-3)
    z = torch.rand(16, params.model.latent_dim) * 2 - 1
    with torch.no_grad():
        first = float(term(G(z)))
    for _ in range(40):
        opt.zero_grad()
        term(G(z)).backward()
        opt.step()
    with torch.no_grad():
        assert first > 1 and float(term(G(z))) < 0.5 * first


def test_the_quantile_term_asks_for_each_frames_distribution(prepared, params):
    """``train.envelope_quantile_weight``: a batch sorted frame by frame against the data's quantiles. Clips
    spread like the data score far less than one clip repeated."""
    _, stats, x = _data(prepared, params)
    env = TimeEnvelope(stats, params.normalize, -60.0)
    bank = env.all_of(x, chunk=7)
    term = EnvelopeMatching(env, bank.mean(0), 0.0, bank, quantile_weight=1.0)
    q = term.quantiles(8)
    assert torch.allclose(q, torch.quantile(bank, (torch.arange(8) + 0.5) / 8, dim=0))
    gen = torch.Generator().manual_seed(0)
    spread = [float(term(x[torch.randperm(len(x), generator=gen)[:8]])) for _ in range(5)]
    alike = [float(term(x[i:i + 1].expand(8, -1, -1, -1))) for i in range(5)]
    assert max(spread) < min(alike) / 2, (spread, alike)
    with pytest.raises(ValueError, match="quantile"):
        EnvelopeMatching(env, bank.mean(0), 0.0, quantile_weight=1.0)


def test_train_command_with_the_weight_trains_another_generator(prepared, tmp_path):
    env = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}
    weights = []
    for key, w in (("envelope_weight", "0.0"), ("envelope_weight", "1.0"), ("envelope_quantile_weight", "1.0")):
        out = tmp_path / f"{key}{w}"
        run_cli(*train_args(prepared, out, 1, "--set", f"train.{key}={w}"), env=env)
        weights.append(torch.load(out / "generator.pt", weights_only=True)["state_dict"])
    assert weights[0].keys() == weights[1].keys() == weights[2].keys()
    for other in weights[1:]:
        assert not all(torch.equal(weights[0][k], other[k]) for k in weights[0])
    bad = run_cli(*train_args(prepared, tmp_path / "bad", 1, "--set", "train.envelope_weight=-1"), env=env,
                  check=False)
    assert bad.returncode != 0 and "envelope_weight" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_conditional_batch_is_held_against_its_own_classes_envelopes(prepared, params):
    """A conditional model's target is each class's mean envelope: a batch of real clips of any class mix meets
    it, where the whole set's mean would pull a batch of kicks toward the cymbals' long tails."""
    from specgan.data.shards import load_labels

    _, stats, x = _data(prepared, params)
    names = load_labels(prepared[0])
    classes = sorted(set(names))
    y = torch.tensor([classes.index(n) for n in names])
    env = TimeEnvelope(stats, params.normalize, -60.0)
    bank = env.all_of(x)
    by_class = EnvelopeMatching(env, torch.stack([bank[y == k].mean(0) for k in range(len(classes))]), 1.0)
    whole = EnvelopeMatching(env, bank.mean(0), 1.0)
    kicks = y == classes.index("kick")
    assert float(by_class(x[kicks], y[kicks])) < 1e-8 and float(whole(x[kicks])) > 1
    mixed = kicks | (y == classes.index("cymbal"))  # every kick and cymbal: each class's mean is its target
    assert float(by_class(x[mixed], y[mixed])) < 1e-8 < float(whole(x[mixed]))
