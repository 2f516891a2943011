"""``train.g_ema``: the exported generator is a moving average of G's weights, exact across a resume."""

from __future__ import annotations

from dataclasses import replace

import torch

from specgan.training.checkpoints import list_checkpoints, load_checkpoint
from specgan.training.gan import GanState, GanStep
from tests.services import run_cli
from tests.tiny import train_args

ENV = {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}


def test_the_average_follows_each_generator_step_at_the_decay(params):
    decay = 0.6
    model = replace(params.model, model_dim=4)
    train = replace(params.train, batch_size=4, g_ema=decay)
    state = GanState.create(model, train, torch.device("cpu"))
    step, gen = GanStep(state, train, model.latent_dim), torch.Generator().manual_seed(0)
    expect = None
    for _ in range(4):
        step([torch.rand(4, 1, 128, 128, generator=gen) * 2 - 1], gen)
        now = {n: p.detach().clone() for n, p in state.G.named_parameters()}
        # The first update copies G; each later one is decay x the average + (1 - decay) x G.
        expect = now if expect is None else {n: decay * expect[n] + (1 - decay) * now[n] for n in now}
    out = dict(state.G_out.named_parameters())
    assert state.G_out is not state.G
    for n, p in state.G.named_parameters():
        torch.testing.assert_close(out[n], expect[n])
        assert not torch.equal(out[n], p)


def test_train_exports_the_average_and_a_resumed_run_matches_a_straight_one(prepared, tmp_path):
    ema = ("--set", "train.g_ema=0.9")
    run_cli(*train_args(prepared, tmp_path / "straight", 3, *ema), env=ENV)
    run_cli(*train_args(prepared, tmp_path / "resumed", 2, *ema), env=ENV)
    run_cli(*train_args(prepared, tmp_path / "resumed", 3, *ema), env=ENV)  # extends from epoch 2's checkpoint
    run_cli(*train_args(prepared, tmp_path / "plain", 3, "--set", "train.g_ema=0"), env=ENV)
    weights = {k: torch.load(tmp_path / k / "generator.pt", weights_only=True)["state_dict"]
               for k in ("straight", "resumed", "plain")}
    a, b = weights["straight"], weights["resumed"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "straight" / "checkpoints")[-1])["state"]
    raw, averaged = ckpt["generator"], ckpt["generator_ema"]
    assert all(torch.equal(a[k], averaged[f"module.{k}"]) for k in a)  # the file holds the average...
    assert not all(torch.equal(a[k], raw[k]) for k in a)  # ...not the last iterate
    plain = weights["plain"]  # same seed, no average: the last iterate, as before the option
    assert all(torch.equal(plain[k], raw[k]) for k in plain)


def test_a_decay_of_one_is_a_one_line_error(prepared, tmp_path):
    bad = run_cli(*train_args(prepared, tmp_path / "bad", 1, "--set", "train.g_ema=1.0"), env=ENV, check=False)
    assert bad.returncode != 0 and "g_ema" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
