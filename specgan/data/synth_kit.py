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


def _coloured_noise(rng: np.random.Generator, n: int, colour: float, low: float = 0.0) -> np.ndarray:
    """Noise with a 1/f**colour power spectrum (0 white, 1 pink, -1 blue), flat below ``low`` (a fraction of
    the sample rate): a drum's noise has little energy under its shell's or metal's lowest mode."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.arange(spec.size), max(1.0, low * n))
    noise = np.fft.irfft(spec / freqs ** (colour / 2), n)
    return noise / (np.abs(noise).max() + 1e-12)


def _env(t: np.ndarray, tau: float, attack: float = 0.0) -> np.ndarray:
    """An exponential decay with time constant ``tau`` (falls 30 dB in about 3.45 tau) after a linear rise
    over ``attack`` seconds."""
    rise = np.clip(t / attack, 0.0, 1.0) if attack > 0 else 1.0
    return rise * np.exp(-t / tau)


def _tau(rng: np.random.Generator, decay_lo: float, decay_hi: float) -> float:
    """A time constant whose -30 dB decay time is log-uniform in [decay_lo, decay_hi] seconds."""
    return float(np.exp(rng.uniform(np.log(decay_lo), np.log(decay_hi)))) / np.log(10 ** 1.5)


# Each voice's ranges are calibrated against recorded kits (Hydrogen's GM Rock and TR-808 kits; see
# bench/kit_calibration.py and BENCHMARKS.md, "The procedural kit against recorded drums"): the -30 dB decay
# time, the attack and the spectral centroid of every class sit within 25% of the recordings' percentiles.
def _kick(rng, t, sr):
    f0 = rng.uniform(42, 58)
    attack = rng.uniform(0.014, 0.019) if rng.uniform() < 0.7 else rng.uniform(0.004, 0.008)  # beater or 808
    sweep = f0 * (1 + rng.uniform(0.5, 1.5) * np.exp(-t / 0.02))
    phase = 2 * np.pi * np.cumsum(sweep) / sr
    return np.sin(phase) * _env(t, _tau(rng, 0.27, 0.47), attack)


def _snare(rng, t, sr):
    tau = _tau(rng, 0.07, 0.33)
    tone = np.sin(2 * np.pi * rng.uniform(150, 220) * t) * _env(t, 0.5 * tau)
    noise = _coloured_noise(rng, t.size, rng.uniform(0.9, 1.2), 150 / sr) * _env(t, tau)
    return rng.uniform(0.3, 1.0) * tone + noise


def _clap(rng, t, sr):
    noise = _coloured_noise(rng, t.size, rng.uniform(1.1, 1.25), 400 / sr)
    bursts = sum(w * _env(np.clip(t - k * 0.011, 0, None), 0.006) * (t >= k * 0.011)
                 for k, w in enumerate((1.0, 0.7, 0.5)))
    return noise * (0.6 * bursts + _env(t, _tau(rng, 0.115, 0.145)))


def _closed_hat(rng, t, sr):
    attack = 0.06 * rng.uniform(0, 1) ** 3
    return _coloured_noise(rng, t.size, rng.uniform(-0.1, 1.75), 300 / sr) * _env(t, _tau(rng, 0.12, 0.24), attack)


def _open_hat(rng, t, sr):
    return _coloured_noise(rng, t.size, rng.uniform(0.05, 0.35)) * _env(t, _tau(rng, 0.36, 0.72))


def _tom(rng, t, sr):
    f0 = rng.uniform(85, 165)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.3 * np.exp(-t / 0.05))) / sr
    decay = (0.07, 0.25) if rng.uniform() < 0.4 else (1.0, 2.5)  # electronic toms stop short; acoustic ones ring
    return np.sin(phase) * _env(t, _tau(rng, *decay))


def _cymbal(rng, t, sr):
    partials = sum(np.sin(2 * np.pi * rng.uniform(2000, 6000) * t + rng.uniform(0, 6)) for _ in range(6))
    noise = _coloured_noise(rng, t.size, rng.uniform(0.2, 0.9))
    return (0.3 * partials / 6 + noise) * _env(t, _tau(rng, 1.0, 4.0), 0.012 * rng.uniform(0, 1) ** 4)


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


def trim_tail(x: np.ndarray, sr: int, floor_db: float = -60.0, min_seconds: float = 0.25) -> np.ndarray:
    """Cut a hit where its 10-ms peak envelope stays ``floor_db`` under the loudest sample, with a 5-ms fade,
    as a sample library trims its one-shots (so clip lengths follow the sound, not a fixed grid)."""
    win = max(1, sr // 100)
    n = x.size // win
    peaks = np.abs(x[: n * win]).reshape(n, win).max(axis=1)
    loud = np.flatnonzero(peaks >= np.abs(x).max() * 10 ** (floor_db / 20))
    end = max(int(min_seconds * sr), (int(loud[-1]) + 1) * win if loud.size else x.size)
    y = x[:end].copy()
    fade = min(y.size, sr // 200)
    y[-fade:] *= np.linspace(1.0, 0.0, fade)
    return y


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
            x = trim_tail(synth_hit(label, rng, sr, 1.5), sr)
            if channels == 2:
                x = np.stack([x, x * rng.uniform(0.6, 1.0)], axis=1)
            split = split_for(k, n_per_class) if k < n_per_class else "test"
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


def split_for(k: int, n: int) -> str:
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
