"""The procedural drum kit: deterministic, labelled, shaped like the real archive, varied formats."""

from __future__ import annotations

import csv
import hashlib
import tarfile
import time

import soundfile as sf

from specgan.data.audio_files import read_labels
from specgan.data.synth_kit import CLASSES, make_kit


def test_kit_is_deterministic_and_seeded(tmp_path):
    a = make_kit(tmp_path / "a.tar.gz", n_per_class=3, seed=7)
    time.sleep(1.1)  # nothing time-dependent (such as a float WAV's PEAK chunk) may enter the archive
    b = make_kit(tmp_path / "b.tar.gz", n_per_class=3, seed=7)
    c = make_kit(tmp_path / "c.tar.gz", n_per_class=3, seed=8)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]


def test_kit_layout_labels_and_formats(kit_dir):
    root = kit_dir / "drums"
    with open(root / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} == set(CLASSES) and len(rows) == 6 * len(CLASSES)
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    infos = [sf.info(str(root / r["path"])) for r in rows]
    assert {i.samplerate for i in infos} >= {16000, 22050, 44100, 48000}
    assert {i.channels for i in infos} == {1, 2}
    assert {i.subtype for i in infos} >= {"PCM_16", "PCM_24", "FLOAT", "PCM_U8"}
    assert len({round(i.duration, 2) for i in infos}) >= 3
    labels = read_labels(kit_dir)
    assert labels["drums/" + rows[0]["path"]] == rows[0]["label"]


def test_archive_is_shaped_like_the_real_one(kit_archive):
    with tarfile.open(kit_archive) as tf:
        names = tf.getnames()
    assert all(n.startswith("drums/") for n in names)
    assert any(n.startswith("drums/train/") and n.endswith(".wav") for n in names)


def test_extra_test_clips_join_the_held_out_split_and_leave_training_alone(tmp_path):
    from collections import Counter

    def splits(kit) -> Counter:
        with open(kit / "drums" / "labels.csv") as fh:
            return Counter(r["split"] for r in csv.DictReader(fh))

    plain = splits(make_kit(tmp_path / "plain", n_per_class=10, seed=1))
    more = splits(make_kit(tmp_path / "more", n_per_class=10, seed=1, extra_test=4))
    assert more["train"] == plain["train"] == 8 * len(CLASSES) and more["valid"] == plain["valid"]
    assert more["test"] == plain["test"] + 4 * len(CLASSES)
