"""Drums by class and the latent space, through the CLI: a conditional model, interpolate, invert, z replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.services import ROOT, run_cli
from tests.tiny import train_args

PARAMS = ["--params", str(ROOT / "params.yaml")]


@pytest.fixture(scope="module")
def models(prepared, tmp_path_factory) -> dict[str, Path]:
    """A tiny unconditional and a tiny conditional model of the labelled synthetic kit."""
    out = tmp_path_factory.mktemp("explore")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"}
    run_cli(*train_args(prepared, out / "plain", 1), env=env)
    run_cli(*train_args(prepared, out / "cond", 1, "--set", "model.conditional=true"), env=env)
    return {"plain": out / "plain" / "generator.pt", "cond": out / "cond" / "generator.pt"}


def test_conditional_model_knows_its_classes_and_makes_the_one_asked(models, kit_dir, tmp_path):
    import torch

    payload = torch.load(models["cond"], weights_only=True)
    assert payload["classes"] == ["clap", "closed_hat", "cymbal", "kick", "open_hat", "snare", "tom"]
    kick, snare = tmp_path / "kick", tmp_path / "snare"
    run_cli("synthesize", "--model", str(models["cond"]), "--out", str(kick), "--count", "2", "--class", "kick")
    run_cli("synthesize", "--model", str(models["cond"]), "--out", str(snare), "--count", "2", "--class", "snare")
    a, _ = sf.read(kick / "drum_000.wav")
    b, _ = sf.read(snare / "drum_000.wav")
    assert not np.allclose(a, b, atol=1e-3)  # the same z, another class: another sound
    with np.load(kick / "latents.npz") as saved:
        assert list(saved["classes"]) == ["kick", "kick"]
    bad = run_cli("synthesize", "--model", str(models["cond"]), "--out", str(tmp_path / "x"), "--class", "cowbell",
                  check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "unknown class cowbell; this model knows clap, closed_hat, cymbal, kick" in bad.stderr
    plain = run_cli("synthesize", "--model", str(models["plain"]), "--out", str(tmp_path / "y"), "--class", "kick",
                    check=False)
    assert plain.returncode == 1 and "unconditional" in plain.stderr

    metrics = tmp_path / "m.json"
    run_cli("evaluate", "--generator", str(models["cond"]), "--data", str(kit_dir), "--out", str(metrics),
            "--set", "evaluate.n_generated=14", "--set", "evaluate.min_heldout=4", "--set", "evaluate.bootstrap=0",
            env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    m = json.loads(metrics.read_text())
    assert set(m["conditional_accuracy_by_class"]) == set(payload["classes"])
    assert 0.0 <= m["conditional_accuracy"] <= 1.0 and m["conditional_chance"] == pytest.approx(1 / 7)
    assert m["classifier_accuracy_real"] > 0.5  # the yardstick itself hears the real classes


def test_conditional_training_needs_labels(prepared, tmp_path):
    import shutil

    feats = tmp_path / "features"
    shutil.copytree(prepared[0], feats)
    for manifest in feats.glob("*.manifest.csv"):
        lines = manifest.read_text().splitlines()
        manifest.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] + "," for line in lines[1:]]) + "\n")
    proc = run_cli(*train_args((feats, prepared[1]), tmp_path / "t", 1, "--set", "model.conditional=true"),
                   env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}, check=False)
    assert proc.returncode == 1 and "needs a class for every clip" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_interpolate_ends_are_the_two_seeds_sounds(models, tmp_path):
    out, a, b = tmp_path / "path", tmp_path / "a", tmp_path / "b"
    proc = run_cli("interpolate", "--model", str(models["plain"]), "--from-seed", "3", "--to-seed", "9",
                   "--steps", "5", "--out", str(out))
    assert "5 sounds" in proc.stdout
    assert sorted(p.name for p in out.glob("step_*.wav")) == [f"step_{i:03d}.wav" for i in range(5)]
    assert (out / "interpolation.png").stat().st_size > 10_000
    run_cli("synthesize", "--model", str(models["plain"]), "--out", str(a), "--count", "1", "--seed", "3")
    run_cli("synthesize", "--model", str(models["plain"]), "--out", str(b), "--count", "1", "--seed", "9")
    first, last, mid = (sf.read(out / f"step_{i:03d}.wav")[0] for i in (0, 4, 2))
    # Equal up to batch-size float noise (a batch of 5 against one sound alone; a wrong z differs by far more).
    np.testing.assert_allclose(first, sf.read(a / "drum_000.wav")[0], atol=2e-3)
    np.testing.assert_allclose(last, sf.read(b / "drum_000.wav")[0], atol=2e-3)
    assert not np.allclose(mid, first, atol=1e-3) and not np.allclose(mid, last, atol=1e-3)
    # A saved z replays: the path's own latents reproduce its sounds.
    replay = tmp_path / "replay"
    run_cli("synthesize", "--model", str(models["plain"]), "--out", str(replay), "--z", str(out / "latents.npz"))
    np.testing.assert_allclose(sf.read(replay / "drum_002.wav")[0], mid, atol=2e-3)
    both = run_cli("interpolate", "--model", str(models["plain"]), "--from-seed", "3", "--from-z",
                   str(out / "latents.npz"), "--to-seed", "1", "--out", str(tmp_path / "z"), check=False)
    assert both.returncode == 1 and "give one of --from-seed and --from-z" in both.stderr


def test_invert_finds_a_z_closer_than_random(models, prepared, tmp_path):
    target = tmp_path / "target"
    run_cli("synthesize", "--model", str(models["plain"]), "--out", str(target), "--count", "1", "--seed", "42")
    out = tmp_path / "inv"
    proc = run_cli("invert", str(target / "drum_000.wav"), "--model", str(models["plain"]), "--out", str(out),
                   "--starts", "4", "--steps", "150", "--features", str(prepared[0]))
    report = json.loads((out / "inversion.json").read_text())
    assert (out / "inversion.png").stat().st_size > 10_000  # the target beside its resynthesis
    assert report["distance"] < 0.6 * report["random_z_distance"], report  # measured: 0.2 against 0.39
    assert report["nearest_training_clip_distance"] > 0 and "found z at distance" in proc.stdout
    assert (out / "resynthesized.wav").is_file() and (out / "latents.npz").is_file()
