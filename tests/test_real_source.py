"""Real one-shots: a folder labelled by folder (or Debian's Hydrogen kits) becomes a train/test layout, and
`specgan demo --source` trains and judges on it end to end, a class of two clips included."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from specgan.core.errors import SpecganError
from specgan.data.audio_files import list_audio, read_labels
from specgan.data.labelled import HYDROGEN, arrange_labelled, class_by_keyword
from tests.services import run_cli
from tests.tiny import TINY, sets

needs_hydrogen = pytest.mark.skipif(not HYDROGEN.is_dir(), reason="apt-get install hydrogen-data (CI installs it)")


def test_hydrogen_file_names_map_to_the_seven_classes():
    assert class_by_keyword("GMRockKit/Kick-Hard.wav") == "kick"
    assert class_by_keyword("TR808EmulationKit/808_Hat_Open.flac") == "open_hat"
    assert class_by_keyword("GMRockKit/HatPedal-Soft.wav") == "closed_hat"
    assert class_by_keyword("GMRockKit/Cowbell-Hard.wav") is None  # not `bell`, a cymbal
    assert class_by_keyword("mine/snare/take 3.wav") == "snare"  # a class folder wins


def test_a_user_folder_is_split_per_class_and_labelled_by_folder(tmp_path):
    src = tmp_path / "mine"
    for rel in ("kick/a.wav", "kick/b.wav", "kick/c.wav", "kick/d.wav", "deep/nested/snare/x.wav",
                "deep/nested/snare/y.wav", "clap/only.wav", "train/tom/t1.wav", "loose.wav"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"RIFF")  # the layout is what is tested here; decoding is the features step's
    out = arrange_labelled(src, tmp_path / "kit")
    rels = list_audio(out)
    assert sum(r.startswith("test/kick/") for r in rels) == 1 and sum(r.startswith("train/kick/") for r in rels) == 3
    assert sum(r.startswith("test/snare/") for r in rels) == 1  # a class of two: one held out
    assert rels.count("train/clap/only.wav") == 1  # a class of one: trained on, nothing to hold out
    assert "train/tom/t1.wav" in rels  # a split folder in the source is not a class
    assert not any("loose" in r for r in rels)  # a clip in no class folder is not guessed
    labels = read_labels(out, "folder")
    assert set(labels.values()) == {"kick", "snare", "clap", "tom"}
    assert arrange_labelled(src, tmp_path / "again") and list_audio(tmp_path / "again") == rels  # stable split


def test_a_folder_with_no_class_folders_is_one_line(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(SpecganError, match="expected DIR/<class>/<clip> for two classes or more"):
        arrange_labelled(tmp_path / "flat", tmp_path / "kit")


@needs_hydrogen
@pytest.mark.slow
def test_demo_on_real_hydrogen_kits_end_to_end(tmp_path):
    """22.05-48 kHz WAV and FLAC, 7 classes as uneven as the installed kits make them (Debian's hydrogen-data:
    2 kits with 2 claps; with hydrogen-drumkits, 16 kits with 17): every stage runs, every class is trained,
    asked for in the training clips' proportions and judged, and the gate says in one line why it refuses the
    2-epoch model."""
    work = tmp_path / "demo"
    tiny = {**{k: v for k, v in TINY.items() if k != "evaluate.min_heldout"}, "evaluate.n_generated": 64}
    proc = run_cli("demo", "--workdir", str(work), "--source", "hydrogen", *sets(tiny), cwd=tmp_path,
                   env={"MLFLOW_TRACKING_URI": ""})
    kit = work / "kit" / "drums"
    classes = {"kick", "snare", "clap", "closed_hat", "open_hat", "tom", "cymbal"}
    assert {p.name for p in (kit / "train").iterdir()} == classes
    assert all(any((kit / "test" / c).iterdir()) for c in classes)  # a quarter held out, at least one clip
    counts = {c: len(list((kit / "train" / c).iterdir())) for c in classes}
    assert "class share:" in proc.stdout and "clap" in proc.stdout
    params = (work / "params.yaml").read_text()  # the demo_real recipe: one G, told the class, no envelope term
    assert re.search(r"^recipe: demo_real\b", params, re.M) and "conditional: true" in params
    assert re.search(r"^  envelope_weight: 0\.0\b", params, re.M)
    assert re.search(r"^  class_groups: true\b", params, re.M)  # D's minibatch-std groups hold one class each
    metrics = json.loads((work / "metrics" / "evaluate.json").read_text())
    assert set(metrics["conditional_accuracy_by_class"]) == classes
    # asked for as the training clips are mixed (the held-out clips' mix), every class at least once
    asked = metrics["class_asked"]
    assert set(asked) == classes and min(asked.values()) > 0 and sum(asked.values()) == pytest.approx(1)
    assert metrics["class_expected"] == pytest.approx(asked)  # what the gate holds each class to
    rare, common = min(counts, key=counts.get), max(counts, key=counts.get)
    assert asked[common] > asked[rare] and asked[common] == pytest.approx(counts[common] / sum(counts.values()),
                                                                          abs=0.08)  # exact duplicates skipped
    # each class's spread against its training clips, where both sides hold two clips or more
    assert common in metrics["nn_self_by_class"]
    if counts[rare] < 2:
        assert rare not in metrics["nn_self_by_class"]
    assert "spread within each class" in proc.stdout
    assert "spread within each class" in (work / "outputs" / "render" / "index.html").read_text()
    gate = next(line for line in proc.stdout.splitlines() if line.strip().startswith("gate:"))
    assert gate.strip().startswith("gate:     REFUSED: specgan-drums version 1: ")
    assert "error:" not in gate and len(gate.split("version 1: ", 1)[1]) > 10


@needs_hydrogen
def test_hydrogen_is_arranged_without_copying_a_byte_twice(tmp_path):
    out = arrange_labelled("hydrogen", tmp_path / "kit")
    rels = list_audio(out)
    assert len(rels) >= 90 and {r.split("/")[0] for r in rels} == {"train", "test"}
    assert sum(r.startswith("test/") for r in rels) >= 20  # evaluate.min_heldout
    src = next(HYDROGEN.rglob("Kick-Hard.wav"))
    dest = next(p for p in out.rglob("Kick-Hard.wav"))
    assert dest.stat().st_ino == src.stat().st_ino or dest.read_bytes() == src.read_bytes()
    shutil.rmtree(out)
    assert src.exists()  # never delete what the program did not write


def test_a_folder_of_any_size_trains_for_the_demos_iterations(tmp_path):
    """`specgan demo --source` keeps the demo recipe's 4,200 iterations (its time), not its 100 epochs: 70
    clips train 525 epochs, 3,000 clips 11; its checkpoints and grids stay as many iterations apart as on the
    kit (a grid every 10 epochs of 70 clips cost a fifth of the training's time); an explicit --set wins."""
    from specgan.core.recipes import write_recipe
    from specgan.demo import folder_schedule, same_iterations

    params = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).parents[1] / "params.yaml", params)
    write_recipe(params, "demo")
    assert same_iterations(params, 336, 336) == 100
    assert same_iterations(params, 336, 70) == 525 and same_iterations(params, 336, 3000) == 11
    assert same_iterations(params, 336, 3) == 4200  # fewer clips than a batch: one batch an epoch
    assert folder_schedule(params, 336, 70, {}) == {"train.epochs": 525, "train.checkpoint_every_epochs": 52,
                                                    "train.grid_every_epochs": 52}
    assert folder_schedule(params, 336, 3000, {})["train.grid_every_epochs"] == 1
    assert folder_schedule(params, 336, 70, {"train.epochs": 750, "train.grid_every_epochs": 5}) == {
        "train.checkpoint_every_epochs": 75}
