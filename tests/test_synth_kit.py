"""The procedural drum kit: deterministic, labelled, shaped like the real archive, varied formats."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import soundfile as sf

from specgan.data.audio_files import read_labels
from specgan.data.synth_kit import CLASSES, make_kit
from tests.services import ROOT


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


HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")
CALIBRATED_ON = ("GMRockKit", "TR808EmulationKit")


@pytest.mark.skipif(not all((HYDROGEN / k).is_dir() for k in CALIBRATED_ON),
                    reason="apt-get install hydrogen-data (CI installs it)")
def test_the_kit_sounds_like_recorded_drums(tmp_path):
    """bench/kit_calibration.py, as a user runs it: the demo's kit (60 a class) against the two recorded kits it
    was calibrated on (GM Rock and TR-808, Debian's hydrogen-data; hydrogen-drumkits adds 14 more, against
    which the kit's kicks ring longer: BENCHMARKS.md); every class's decay, attack and centroid
    percentiles within 25% (or a few analysis hops)."""
    kit = make_kit(tmp_path / "kit", n_per_class=60, seed=0)
    real = tmp_path / "recorded"
    real.mkdir()
    for name in CALIBRATED_ON:
        (real / name).symlink_to(HYDROGEN / name, target_is_directory=True)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "kit_calibration.py"), str(kit), str(real),
                           "--json", str(tmp_path / "cal.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0 of 63 percentiles outside 25%" in proc.stdout
    cal = json.loads((tmp_path / "cal.json").read_text())
    assert cal["misses"] == [] and set(cal["ratios"]) == set(CLASSES)
    # The old kit's flaws stay fixed: a kick falls 30 dB within half a second, a clap within 0.2 s.
    assert cal["kit"]["kick"]["decay_s"][1] < 0.5 and cal["kit"]["clap"]["decay_s"][1] < 0.2


def test_the_calibration_check_fails_on_a_kit_that_rings_too_long(tmp_path):
    """The same script exits 1 and names the class when a voice's decay is off (kicks stretched 3x)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import kit_calibration as cal
    finally:
        sys.path.pop(0)
    kit = cal.summary(cal.measure(make_kit(tmp_path / "kit", n_per_class=20, seed=0)))
    real = json.loads(json.dumps(kit))
    real["kick"]["decay_s"] = [v / 3 for v in real["kick"]["decay_s"]]
    assert cal.misses(kit, kit) == []
    assert {m.split()[0] for m in cal.misses(kit, real)} == {"kick"}
