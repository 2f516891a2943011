"""Features and stats: parity with an independent NumPy reference, shard invariance, bad input, real samples."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from specgan.core.errors import FeaturesError
from specgan.data.features import load_manifest, read_summary, run_features
from specgan.data.shards import load_features
from specgan.data.stats import NormStats, run_stats
from tests.services import ROOT, run_cli

HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")


def reference_features(path: Path) -> np.ndarray:
    """SPEC.md section 2 written independently: numpy FFT and a hand-built periodic Hann window."""
    audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    x = audio.mean(axis=1)
    if sr != 16000:
        g = math.gcd(sr, 16000)
        x = resample_poly(x, 16000 // g, sr // g)
    clip = np.zeros(16384)
    clip[: min(16384, len(x))] = x[:16384]
    clip = clip / np.abs(clip).max()
    clip = np.concatenate([clip, np.zeros(128)])
    n = np.arange(256)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 256)  # periodic Hann
    frames = np.stack([clip[i * 128:i * 128 + 256] * window for i in range(128)], axis=1)
    return np.log(np.abs(np.fft.rfft(frames, axis=0)) + 1e-6)


def _hit(n: int, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    return (np.sin(2 * np.pi * 180 * t) + 0.3 * rng.standard_normal(n)) * np.exp(-t / 0.2)


@pytest.fixture(scope="module")
def parity_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("parity")
    sf.write(d / "a_exact.wav", _hit(16384, 16000, 0), 16000, subtype="FLOAT")
    sf.write(d / "b_short.wav", _hit(5000, 16000, 1), 16000, subtype="FLOAT")
    sf.write(d / "c_long.wav", _hit(40000, 16000, 2), 16000, subtype="FLOAT")
    sf.write(d / "d_stereo.wav", np.stack([_hit(20000, 16000, 3), _hit(20000, 16000, 4)], 1), 16000,
             subtype="FLOAT")
    t = np.arange(44100) / 44100  # band-limited, so two different resamplers must agree on it
    sf.write(d / "e_44k.wav", (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 1500 * t)) * np.exp(-t / 0.3),
             44100, subtype="FLOAT")
    sf.write(d / "f_pcm16.flac", 0.5 * _hit(16000, 16000, 6) / 2, 16000, subtype="PCM_16")
    # Quiet 16 kHz clips in every format the kits use: float32 preparation missed 1e-4 on these.
    for i, (ext, subtype) in enumerate((("wav", "PCM_24"), ("aiff", "PCM_16"), ("wav", "PCM_U8"),
                                        ("wav", "DOUBLE"), ("flac", "PCM_24"))):
        sf.write(d / f"g_quiet_{i}.{ext}", 0.05 * _hit(9000 + 1111 * i, 16000, 10 + i) / 2, 16000, subtype=subtype)
    # 16-bit PCM WAV, the usual one-shot, is decoded from its bytes, not by libsndfile (see the next test).
    sf.write(d / "h_pcm16_quiet.wav", 0.05 * _hit(16007, 16000, 20), 16000, subtype="PCM_16")
    sf.write(d / "i_pcm16_stereo.wav", np.stack([_hit(12001, 16000, 21), 0.3 * _hit(12001, 16000, 22)], 1), 16000,
             subtype="PCM_16")
    sf.write(d / "j_pcm16_wavex.wav", 0.05 * _hit(7001, 16000, 23), 16000, format="WAVEX", subtype="PCM_16")
    return d


PCM16_CASES = [(16007, 16000, 1, "WAV"), (40000, 16000, 1, "WAV"), (9000, 16000, 2, "WAV"), (7759, 44100, 1, "WAV"),
               (4001, 48000, 2, "WAV"), (5000, 16000, 1, "WAVEX"), (5000, 16000, 3, "WAV"), (3, 16000, 1, "WAV"),
               (12345, 16000, 1, "WAV+LIST"), (2001, 22050, 2, "WAV+LIST")]


def _with_list_chunk(wav: bytes) -> bytes:
    """A WAV with an odd-length LIST chunk (and its pad byte) between ``fmt `` and ``data``, as editors write."""
    import struct

    at = wav.index(b"data")
    chunk = b"LIST" + struct.pack("<I", 5) + b"INFOx\0"
    out = wav[:at] + chunk + wav[at:]
    return out[:4] + struct.pack("<I", len(out) - 8) + out[8:]


@pytest.mark.parametrize("frames,rate,channels,fmt", PCM16_CASES)
def test_pcm16_wav_fast_path_decodes_exactly_what_libsndfile_decodes(tmp_path, params, frames, rate, channels, fmt):
    """Bytes handed to load_clip (the features step's path) take the fast path for 16-bit PCM WAV; a path
    alone goes through libsndfile. Both must give the same float64 clip, bit for bit."""
    from specgan.data import spectral
    from specgan.data.spectral import load_clip

    audio = np.stack([_hit(frames, rate, c) * (0.9 - 0.2 * c) for c in range(channels)], 1)
    path = tmp_path / "hit.wav"
    sf.write(path, audio, rate, format=fmt.removesuffix("+LIST"), subtype="PCM_16")
    if fmt.endswith("+LIST"):
        path.write_bytes(_with_list_chunk(path.read_bytes()))
    by_libsndfile, info = load_clip(path, params.features)
    by_bytes, info_bytes = load_clip("hit.wav", params.features, path.read_bytes())
    np.testing.assert_array_equal(by_bytes, by_libsndfile)
    assert info_bytes == info and info.channels == channels and info.sample_rate == rate
    fast = spectral._decode_pcm16_wav(path.read_bytes(), params.features, np.empty(params.features.clip_samples))
    assert (fast is not None) == (fmt != "WAVEX")  # extensible WAVs are libsndfile's


def test_features_match_independent_numpy_reference(parity_dir, tmp_path, params):
    run_features(parity_dir, tmp_path / "f", params.features, "all", workers=1)
    feats = load_features(tmp_path / "f")
    rows = load_manifest(tmp_path / "f")
    assert feats.shape == (14, 129, 128) and feats.dtype == np.float32
    for i, row in enumerate(rows):
        ref = reference_features(parity_dir / row["path"])
        err = np.abs(feats[i] - ref)
        if row["path"] == "e_44k.wav":
            # Resamplers differ (torchaudio's windowed sinc, scipy's polyphase): judge the bins that hold
            # the signal's energy (within 40 dB of the peak), where both filters are transparent.
            err = err[ref > ref.max() - np.log(100)]
            assert err.max() < 0.01, float(err.max())
        else:
            assert err.max() < 1e-4, (row["path"], float(err.max()))


def test_stats_are_population_mean_and_std(parity_dir, tmp_path, params):
    run_features(parity_dir, tmp_path / "f", params.features, "all", workers=1)
    stats = run_stats(tmp_path / "f", tmp_path / "stats.json", params.features.n_frames)
    feats = load_features(tmp_path / "f").astype(np.float64)
    np.testing.assert_allclose(stats.mean, feats.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(stats.std, feats.std(axis=(0, 2), ddof=0), rtol=1e-9)
    assert (stats.frames, stats.clips) == (14 * 128, 14)
    assert NormStats.load(tmp_path / "stats.json").to_dict() == stats.to_dict()


@pytest.mark.numerics
@pytest.mark.parametrize("shards,workers", [(1, 1), (2, 2), (7, 2), (7, 1)])
def test_features_and_stats_do_not_depend_on_shards_or_workers(kit_dir, tmp_path, params, shards, workers):
    from dataclasses import replace

    base = tmp_path / "base"
    run_features(kit_dir, base, replace(params.features, shards=3), "all", workers=1)
    ref_stats = run_stats(base, tmp_path / "base.json", 128)
    cfg = replace(params.features, shards=shards)
    run_features(kit_dir, tmp_path / "f", cfg, "all", workers=workers)
    # Each clip's features come from its own samples (a chunk's clips are batched only for speed): equal to
    # float32 rounding, not bit for bit, since a batched kernel may round differently on another machine.
    np.testing.assert_allclose(load_features(tmp_path / "f"), load_features(base), rtol=0, atol=1e-5)
    assert [r["path"] for r in load_manifest(tmp_path / "f")] == [r["path"] for r in load_manifest(base)]
    stats = run_stats(tmp_path / "f", tmp_path / "s.json", 128)
    mine = load_features(tmp_path / "f").astype(np.float64)  # the stats are exact for the features they read
    np.testing.assert_allclose(stats.mean, mine.mean(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, mine.std(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(stats.std, ref_stats.std, rtol=1e-6)  # and as near the other split's as those


def test_manifest_records_provenance_and_labels(kit_dir, tmp_path, params):
    run_features(kit_dir, tmp_path / "f", params.features, "train", workers=1)
    rows = load_manifest(tmp_path / "f")
    assert rows and all("/train/" in r["path"] for r in rows)
    assert {r["label"] for r in rows} == {"kick", "snare", "clap", "closed_hat", "open_hat", "tom", "cymbal"}
    assert {int(r["sample_rate"]) for r in rows} >= {16000, 44100} and all(len(r["sha256"]) == 64 for r in rows)


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    good = _hit(16000, 16000, 9)
    sf.write(d / "good.wav", good, 16000)
    sf.write(d / "full.wav", good, 16000)
    (d / "truncated.wav").write_bytes((d / "full.wav").read_bytes()[:2000])
    (d / "full.wav").unlink()
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "silent.wav", np.zeros(16000), 16000)
    nan = good.copy()
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    (d / "text.wav").write_text("this is not audio\n" * 50)
    sf.write(d / "eight_bit.wav", good, 16000, subtype="PCM_U8")
    sf.write(d / "pcm24.wav", good, 16000, subtype="PCM_24")
    sf.write(d / "hires_stereo.wav", np.stack([_hit(96000, 96000, 1)] * 2, 1), 96000, subtype="PCM_24")
    sf.write(d / "ten_minutes.wav", np.tile(good, 600).astype(np.float32), 16000, subtype="PCM_16")
    return d


def test_awkward_real_lengths_are_never_called_truncated(tmp_path):
    """Frame counts whose duration does not round-trip through floats (7759 / 44100 * 44100 > 7759)."""
    data = tmp_path / "d"
    data.mkdir()
    cases = [(7759, 44100), (16007, 16000), (4004, 22050), (4001, 48000), (7759, 96000)]
    for n, sr in cases:
        assert sr * (n / sr) != n  # the rounding that used to reject them
        sf.write(data / f"hit_{n}_{sr}.wav", _hit(n, sr, n), sr, subtype="PCM_16")
    sf.write(data / "hit_16007.aiff", _hit(16007, 16000, 1), 16000, subtype="PCM_16")
    proc = run_cli("features", "--data", str(data), "--out", str(tmp_path / "f"), "--split", "all")
    assert proc.returncode == 0
    assert read_summary(tmp_path / "f")["clips"] == len(cases) + 1
    assert not (tmp_path / "f" / "rejects.csv").exists() or len(
        (tmp_path / "f" / "rejects.csv").read_text().splitlines()) <= 1


def test_bad_files_are_rejected_with_reasons_and_never_stop_the_stage(bad_dir, tmp_path, params):
    summary = run_features(bad_dir, tmp_path / "f", params.features, "all", workers=2,
                           metrics=tmp_path / "metrics.json")
    with open(tmp_path / "f" / "rejects.csv") as fh:
        rejects = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    assert set(rejects) == {"truncated.wav", "empty.wav", "silent.wav", "nan.wav", "text.wav"}
    assert rejects["silent.wav"].startswith("silent")
    assert rejects["nan.wav"].startswith("non-finite")
    assert rejects["text.wav"].startswith("unreadable")
    assert rejects["empty.wav"].startswith(("unreadable", "empty"))
    assert rejects["truncated.wav"].startswith(("truncated", "unreadable"))
    feats = load_features(tmp_path / "f")
    assert feats.shape[0] == summary["clips"] == 5 and np.isfinite(feats).all()
    assert read_summary(tmp_path / "f") == summary
    assert sum(summary["rejects_by_reason"].values()) == 5


def test_all_bad_dataset_is_a_clear_error(tmp_path, params):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.wav").write_text("nope")
    sf.write(tmp_path / "d" / "b.wav", np.zeros(100), 16000)
    with pytest.raises(FeaturesError, match="every one of the 2 files was rejected"):
        run_features(tmp_path / "d", tmp_path / "f", params.features, "all", workers=1)
    assert not (tmp_path / "f").exists()
    proc = run_cli("features", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "f"), "--split", "all",
                   check=False)
    assert proc.returncode == 1 and "every one of the 2 files was rejected" in proc.stderr


@pytest.mark.skipif(not HYDROGEN.is_dir(), reason="apt-get install hydrogen-data (CI installs it)")
def test_real_hydrogen_drumkits_featurize(tmp_path, params):
    """Every real drum hit is accepted, whatever its length and rate (the package's kit count varies by release).
    Some releases ship kits with an ``emptySample.flac`` of digital silence: those, and only those, are rejects."""
    audio = [p for p in HYDROGEN.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".aif", ".aiff"}]
    silent = {p.relative_to(HYDROGEN).as_posix() for p in audio if not np.abs(sf.read(p)[0]).max() > 0}
    summary = run_features(HYDROGEN, tmp_path / "f", params.features, "all")
    assert len(audio) >= 50 and summary["files"] == len(audio)
    with open(tmp_path / "f" / "rejects.csv", newline="") as fh:
        rejects = {r["path"]: r["reason"] for r in csv.DictReader(fh)}
    assert set(rejects) == silent and all(reason.startswith("silent") for reason in rejects.values())
    assert summary["clips"] == len(audio) - len(silent)
    assert np.isfinite(load_features(tmp_path / "f")).all()


def test_odd_files_become_rejects_with_reasons_and_linked_folders_are_followed(tmp_path):
    """MP3 decodes; an M4A, a FIFO and a non-UTF-8 name are rejects with a reason (a FIFO once hung the step,
    a bad name once killed it); a symlinked folder inside the data root is followed."""
    import os

    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    tone = 0.5 * np.sin(np.linspace(0, 400 * np.pi, 16000))
    sf.write(data / "good.wav", tone, 16000)
    sf.write(data / "good.mp3", tone, 16000, format="MP3")
    sf.write(elsewhere / "linked.wav", tone, 16000)
    (data / "kit").symlink_to(elsewhere, target_is_directory=True)
    (data / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    os.mkfifo(data / "pipe.wav")
    sf.write(data / "good.wav", tone, 16000)
    with open(bytes(data) + b"/caf\xe9.wav", "wb") as fh:  # a Latin-1 name, as old kits have
        fh.write((data / "good.wav").read_bytes())
    proc = run_cli("features", "--data", str(data), "--out", str(tmp_path / "f"), "--split", "all",
                   "--params", str(ROOT / "params.yaml"), "--workers", "1", timeout=120)
    assert "3 clips featurized in " in proc.stdout and "; 3 rejected (" in proc.stdout, proc.stdout + proc.stderr
    rejects = (tmp_path / "f" / "rejects.csv").read_text()
    assert "song.m4a,\"unsupported format .m4a" in rejects
    assert "pipe.wav,not a regular file" in rejects
    assert "caf\\xe9.wav,file name is not valid UTF-8" in rejects
    manifest = "".join(p.read_text() for p in (tmp_path / "f").glob("*.manifest.csv"))
    assert "good.mp3" in manifest and "kit/linked.wav" in manifest


@pytest.mark.parametrize("mode,expected", [("folder", {"kick/a.wav": "kick", "snare/b.wav": "snare",
                                                       "train/tom/c.wav": "tom", "train/d.wav": ""}),
                                           ("manifest", {"kick/a.wav": "", "snare/b.wav": "",
                                                         "train/tom/c.wav": "", "train/d.wav": "x"}),
                                           ("none", {"kick/a.wav": "", "snare/b.wav": "", "train/tom/c.wav": "",
                                                     "train/d.wav": ""})])
def test_data_labels_decides_the_classes_in_the_manifest(tmp_path, mode, expected):
    """data.labels: the folder a clip sits in (never a split folder), the labels.csv manifest, or none."""
    tone = 0.5 * np.sin(np.linspace(0, 400 * np.pi, 16000))
    for rel in expected:
        (tmp_path / "d" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "d" / rel, tone, 16000)
    (tmp_path / "d" / "train" / "labels.csv").write_text("path,label\nd.wav,x\n")
    run_cli("features", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "f"), "--split", "all",
            "--params", str(ROOT / "params.yaml"), "--set", f"data.labels={mode}", "--workers", "1")
    rows = [r for p in sorted((tmp_path / "f").glob("*.manifest.csv")) for r in csv.DictReader(p.open())]
    assert {r["path"]: r["label"] for r in rows} == expected


def test_a_huge_clip_file_is_hashed_in_pieces_and_decoded_from_disk(tmp_path, params):
    """A 9-minute WAV (17 MB, over features.WHOLE_READ_BYTES) gives the same features as its first second
    and the sha256 of the whole file, without the file in memory; a huge WAV whose data chunk was cut off is
    still a truncation reject."""
    import hashlib
    import struct
    import tracemalloc

    from specgan.data.features import WHOLE_READ_BYTES, featurize_shard

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    long = (0.4 * rng.standard_normal(16000 * 540)).clip(-1, 1)
    sf.write(data / "long.wav", long, 16000, subtype="PCM_16")
    sf.write(data / "short.wav", sf.read(data / "long.wav")[0][:20000], 16000, subtype="PCM_16")
    raw = (data / "long.wav").read_bytes()
    assert len(raw) > WHOLE_READ_BYTES
    pos = raw.index(b"data")  # promise 4 bytes more than the file holds
    (data / "cut.wav").write_bytes(raw[:pos + 4] + struct.pack("<I", struct.unpack_from("<I", raw, pos + 4)[0] + 4)
                                   + raw[pos + 8:])
    del raw
    peaks = []
    for files in (["short.wav"], ["cut.wav", "long.wav", "short.wav"]):
        tracemalloc.start()
        result = featurize_shard(data, tmp_path / f"f{len(files)}", 0, 1, "all", params.features, files, {})
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < 4 << 20, peaks  # the work buffers' peak (about 20 MB) plus 1 MiB pieces
    assert result.rejects == [("cut.wav", f"truncated: data chunk promises {16000 * 540 * 2 + 4} bytes, "
                                          f"{16000 * 540 * 2} present")]
    feats = load_features(tmp_path / "f3")
    np.testing.assert_array_equal(feats[0], feats[1])
    rows = load_manifest(tmp_path / "f3")
    assert rows[0]["sha256"] == hashlib.sha256((data / "long.wav").read_bytes()).hexdigest()
    assert float(rows[0]["duration_s"]) == 540.0


@pytest.mark.parametrize("content,message", [
    (b"file,class\na.wav,kick\n", "a labels file needs the columns path and label; its header is file,class"),
    (b"path,label\nkick\xff.wav,kick\n", "not UTF-8 text (byte 15); save it as UTF-8"),
])
def test_a_bad_labels_file_is_one_line(tmp_path, content, message):
    data = tmp_path / "data"
    data.mkdir()
    sf.write(data / "a.wav", np.sin(np.arange(16000) / 5.0), 16000)
    (data / "labels.csv").write_bytes(content)
    proc = run_cli("features", "--data", str(data), "--out", str(tmp_path / "f"), "--split", "all",
                   "--params", str(ROOT / "params.yaml"), "--workers", "1", check=False, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"specgan features: error: {data}/labels.csv: "
                                                                        f"{message}"]
    assert not (tmp_path / "f").exists()


def test_sigterm_removes_the_temporary_output_and_says_so(tmp_path):
    """SIGTERM (a pod's eviction, `kill`) unwinds like Ctrl-C: rc 143, one line, and the half-written
    temporary folder beside --out is removed; the rerun succeeds."""
    import os
    import signal
    import subprocess
    import time

    from specgan.data.synth_kit import make_kit
    from tests.services import BIN

    data = make_kit(tmp_path / "kit", n_per_class=150, seed=1)
    out = tmp_path / "f"
    proc = subprocess.Popen([str(BIN / "specgan"), "features", "--data", str(data), "--out", str(out), "--split",
                             "all", "--params", str(ROOT / "params.yaml")], cwd=tmp_path, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".f.*")):  # the step's temporary folder exists: it is writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    time.sleep(0.3)  # its workers started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-1500:]
    assert err.strip().splitlines()[-1].startswith("specgan features: terminated"), err[-1500:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit"]  # no `.f.XXXX` left, no half-written `f`
    run_cli("features", "--data", str(data), "--out", str(out), "--split", "all")
    assert read_summary(out)["clips"] == 1050
