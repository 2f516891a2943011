"""Drums by class and the latent space, through the CLI: a conditional model, interpolate, invert, z replay."""

from __future__ import annotations

import json
from collections.abc import Callable
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
    feats = relabelled(prepared, tmp_path, lambda label: "")
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


def relabelled(prepared: tuple[Path, Path], dest: Path, relabel: Callable[[str], str]) -> Path:
    """A copy of the kit's features with each clip's label (in manifest order) replaced by ``relabel(label)``."""
    import shutil

    feats = dest / "features"
    shutil.copytree(prepared[0], feats)
    for manifest in sorted(feats.glob("*.manifest.csv")):
        lines = manifest.read_text().splitlines()
        rows = [f"{head},{relabel(label)}" for head, label in (line.rsplit(",", 1) for line in lines[1:])]
        manifest.write_text("\n".join([lines[0], *rows]) + "\n")
    return feats


def first_claps_to_snares(n: int) -> Callable[[str], str]:
    """A ``relabel`` that makes the first ``n`` claps snares (uneven classes)."""
    left = n

    def relabel(label: str) -> str:
        nonlocal left
        if label == "clap" and left > 0:
            left -= 1
            return "snare"
        return label

    return relabel


def test_class_groups_show_d_one_class_a_group_and_keep_rare_classes_drawn(prepared, tmp_path):
    """``train.class_groups``: every run of ``model.minibatch_std`` clips the loop draws is one class (the std
    feature then sees a class's spread, not the spread between classes), of distinct clips while the class has
    enough, and ``class_balance`` 1 still draws a class of 2 clips as often as one of 10."""
    from collections import Counter

    import torch

    from specgan.core.config import load_params
    from specgan.data.shards import load_labels
    from specgan.training.train import Trainer, epoch_generators
    from tests.tiny import TINY

    feats = relabelled(prepared, tmp_path, first_claps_to_snares(4))
    overrides = [f"{k}={v}" for k, v in TINY.items()] + [
        "model.conditional=true", "train.class_groups=true", "model.minibatch_std=4", "train.class_balance=1.0"]
    p = load_params(ROOT / "params.yaml", overrides)
    trainer = Trainer(feats, prepared[1], tmp_path / "out", p, None, True, None, None, tracking=False)
    labels = load_labels(feats)
    assert Counter(labels)["clap"] == 2 and Counter(labels)["snare"] == 10
    groups: Counter = Counter()
    for epoch in range(60):
        order = trainer._order(epoch_generators(p.train.seed, epoch, 0, torch.device("cpu"))[0]).tolist()
        assert len(order) == len(labels) and set(order) <= set(range(len(labels)))
        for start in range(0, len(order) - 3, 4):
            run = order[start:start + 4]
            classes = {labels[i] for i in run}
            assert len(classes) == 1, f"a group of mixed classes: {[labels[i] for i in run]}"
            (cls,) = classes
            assert len(set(run)) == min(4, Counter(labels)[cls])  # distinct clips, the 2 claps twice each
            groups[cls] += 1
    shares = {c: n / sum(groups.values()) for c, n in groups.items()}
    assert set(shares) == set(labels) and min(shares.values()) > 0.08 and max(shares.values()) < 0.21  # 1/7 each


def test_class_groups_train_a_conditional_model_and_refuse_one_that_cannot_use_them(prepared, tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    grouped = ("--set", "train.class_groups=true", "--set", "model.minibatch_std=4")
    run_cli(*train_args(prepared, tmp_path / "ok", 1, "--set", "model.conditional=true", *grouped), env=env)
    assert (tmp_path / "ok" / "generator.pt").is_file()
    uneven = ("--set", "model.conditional=true", "--set", "model.minibatch_std=3")
    for extra, says in [((), "needs model.conditional: true"), (uneven, "must be 2 or more and divide")]:
        proc = run_cli(*train_args(prepared, tmp_path / "no", 1, *grouped, *extra), env=env, check=False)
        assert proc.returncode == 1 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
