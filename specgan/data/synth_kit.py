"""A procedural, seeded drum kit written as an archive shaped like the WaveGAN drums set.

Used by the tests and the offline demo, so that no third-party audio is ever committed.
Formats vary on purpose (sample rate, bit depth, channels, length) to exercise every loader path.
"""

from __future__ import annotations

import csv
import gzip
import io
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from specgan.core.atomic import atomic_path
from specgan.data.audio_files import LABEL_MANIFEST as MANIFEST

CLASSES = ("kick", "snare", "clap", "closed_hat", "open_hat", "tom", "cymbal")
SPLITS = {"train": 0.8, "valid": 0.1, "test": 0.1}  # valid and test are equal in size
# (sample rate, soundfile subtype, channels), cycled so every loader path is exercised.
FORMATS = (
    (16000, "PCM_16", 1),
    (16000, "PCM_16", 1),
    (22050, "PCM_24", 1),
    (44100, "PCM_16", 2),
    (48000, "FLOAT", 1),
    (16000, "PCM_U8", 1),
    (32000, "PCM_32", 2),
)


def _coloured_noise(rng: np.random.Generator, n: int, colour: float) -> np.ndarray:
    """Noise with a 1/f**colour power spectrum (0 white, 1 pink, -1 blue)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.arange(spec.size), 1.0)
    noise = np.fft.irfft(spec / freqs ** (colour / 2), n)
    return noise / (np.abs(noise).max() + 1e-12)


def _env(t: np.ndarray, decay: float) -> np.ndarray:
    return np.exp(-t / decay)


def _kick(rng, t, sr):
    f0 = rng.uniform(45, 70)
    sweep = f0 * (1 + rng.uniform(2, 5) * np.exp(-t / 0.03))
    phase = 2 * np.pi * np.cumsum(sweep) / sr
    return np.sin(phase) * _env(t, rng.uniform(0.15, 0.45))


def _snare(rng, t, sr):
    tone = np.sin(2 * np.pi * rng.uniform(160, 240) * t) * _env(t, 0.08)
    noise = _coloured_noise(rng, t.size, rng.uniform(-0.5, 0.5)) * _env(t, rng.uniform(0.1, 0.25))
    return 0.5 * tone + noise


def _clap(rng, t, sr):
    noise = _coloured_noise(rng, t.size, rng.uniform(-0.3, 0.3))
    bursts = sum(_env(np.clip(t - k * 0.011, 0, None), 0.008) * (t >= k * 0.011) for k in range(3))
    return noise * (bursts + _env(t, rng.uniform(0.08, 0.2)))


def _closed_hat(rng, t, sr):
    return _coloured_noise(rng, t.size, rng.uniform(-1.5, -0.8)) * _env(t, rng.uniform(0.02, 0.06))


def _open_hat(rng, t, sr):
    return _coloured_noise(rng, t.size, rng.uniform(-1.5, -0.8)) * _env(t, rng.uniform(0.2, 0.5))


def _tom(rng, t, sr):
    f0 = rng.uniform(90, 220)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.5 * np.exp(-t / 0.05))) / sr
    return np.sin(phase) * _env(t, rng.uniform(0.2, 0.5))


def _cymbal(rng, t, sr):
    partials = sum(np.sin(2 * np.pi * rng.uniform(3000, 9000) * t + rng.uniform(0, 6)) for _ in range(6))
    noise = _coloured_noise(rng, t.size, rng.uniform(-1.2, -0.5))
    return (0.3 * partials / 6 + noise) * _env(t, rng.uniform(0.5, 1.2))


VOICES: dict[str, Callable] = {
    "kick": _kick, "snare": _snare, "clap": _clap, "closed_hat": _closed_hat,
    "open_hat": _open_hat, "tom": _tom, "cymbal": _cymbal,
}


def synth_hit(label: str, rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """One drum hit as float64 mono in [-1, 1], with randomized velocity."""
    t = np.arange(int(sr * seconds)) / sr
    x = VOICES[label](rng, t, sr)
    x = x / (np.abs(x).max() + 1e-12)
    return x * rng.uniform(0.3, 0.95)


def make_kit(out: str | Path, n_per_class: int = 8, seed: int = 0, root: str = "drums",
             extra_test: int = 0) -> Path:
    """Write ``out`` (.tar.gz or .zip, or a folder when no such suffix) holding
    ``root/{train,valid,test}/<label>_<i>.wav`` plus ``root/labels.csv``; returns ``out``. ``extra_test``
    more held-out clips per class join the test split (the metrics' real baselines) without taking any
    from training."""
    import soundfile as sf  # here, so GPU benchmarks can use the voices without soundfile installed

    out = Path(out)
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    rows = []
    i = 0
    for label in CLASSES:
        for k in range(n_per_class + extra_test):
            sr, subtype, channels = FORMATS[i % len(FORMATS)]
            seconds = float(rng.choice([0.4, 0.8, 1.0, 1.0, 1.5]))
            x = synth_hit(label, rng, sr, seconds)
            if channels == 2:
                x = np.stack([x, x * rng.uniform(0.6, 1.0)], axis=1)
            split = _split_for(k, n_per_class) if k < n_per_class else "test"
            rel = f"{root}/{split}/{label}_{k:03d}.wav"
            buf = io.BytesIO()
            sf.write(buf, x.astype(np.float32), sr, subtype=subtype, format="WAV")
            files[rel] = _strip_peak_chunk(buf.getvalue())
            rows.append((f"{split}/{label}_{k:03d}.wav", label, split, sr, subtype, channels))
            i += 1
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "label", "split", "sample_rate", "subtype", "channels"])
    writer.writerows(rows)
    files[f"{root}/{MANIFEST}"] = text.getvalue().encode()
    _write(out, files)
    return out


def _strip_peak_chunk(wav: bytes) -> bytes:
    """Drop libsndfile's PEAK chunk (float WAVs): it holds a timestamp, which would make the kit differ
    from one second to the next."""
    out, pos = [wav[:12]], 12
    while pos + 8 <= len(wav):
        size = struct.unpack("<I", wav[pos + 4:pos + 8])[0]
        end = pos + 8 + size + (size & 1)
        if wav[pos:pos + 4] != b"PEAK":
            out.append(wav[pos:end])
        pos = end
    body = b"".join(out)
    return body[:4] + struct.pack("<I", len(body) - 8) + body[8:]


def _split_for(k: int, n: int) -> str:
    """Per class: about 10% valid and 10% test (at least one each from 3 clips on), the rest train."""
    n_held = max(1, round(n * SPLITS["test"])) if n >= 3 else 0
    if k >= n - n_held:
        return "test"
    if k >= n - 2 * n_held:
        return "valid"
    return "train"


def _write(out: Path, files: dict[str, bytes]) -> None:
    name = out.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with atomic_path(out) as tmp, open(tmp, "wb") as raw:
            # mtime 0 in the gzip header keeps the archive byte-for-byte deterministic.
            gz = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if not name.endswith(".tar") else None
            with tarfile.open(fileobj=gz or raw, mode="w") as tf:
                for rel, data in sorted(files.items()):
                    info = tarfile.TarInfo(rel)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
            if gz is not None:
                gz.close()
    elif name.endswith(".zip"):
        import zipfile

        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as zf:
            for rel, data in sorted(files.items()):
                zf.writestr(zipfile.ZipInfo(rel, (1980, 1, 1, 0, 0, 0)), data)
    else:
        for rel, data in files.items():
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
