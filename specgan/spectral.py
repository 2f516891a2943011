"""One clip to features (SPEC.md section 2): decode, mono, resample, trim or pad, peak-normalize, log |STFT|."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from specgan.config import FeaturesConfig


class RejectedClip(ValueError):
    """A clip that cannot be featurized; the message is the recorded reason."""


@dataclass(frozen=True)
class ClipInfo:
    sample_rate: int
    channels: int
    duration_s: float


def load_clip(path: str | Path, cfg: FeaturesConfig) -> tuple[np.ndarray, ClipInfo]:
    """Decode the first ``clip_samples`` (at ``sample_rate``) of a file: mono, resampled, padded, peak 1."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise RejectedClip(f"unreadable audio: {_first_line(exc)}") from None
    if info.frames <= 0:
        raise RejectedClip("empty: 0 samples")
    if info.format == "WAV":
        _check_wav_complete(Path(path))
    meta = ClipInfo(info.samplerate, info.channels, info.frames / info.samplerate)
    # Read only what the clip needs (plus a resampling margin), so a long file costs no more.
    need = cfg.clip_samples if info.samplerate == cfg.sample_rate else (
        math.ceil(cfg.clip_samples * info.samplerate / cfg.sample_rate) + 64)
    try:
        audio, _ = sf.read(str(path), frames=need, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise RejectedClip(f"unreadable audio: {_first_line(exc)}") from None
    if audio.shape[0] < min(need, info.frames):
        raise RejectedClip(f"truncated: header promises {info.frames} frames, {audio.shape[0]} decoded")
    if not np.isfinite(audio).all():
        raise RejectedClip("non-finite samples (NaN or Inf)")
    mono = audio.mean(axis=1)
    if info.samplerate != cfg.sample_rate:
        mono = _resample(mono, info.samplerate, cfg.sample_rate)
    clip = np.zeros(cfg.clip_samples, dtype=np.float32)
    n = min(cfg.clip_samples, mono.shape[0])
    clip[:n] = mono[:n]
    peak = float(np.abs(clip).max())
    if peak == 0.0:
        raise RejectedClip("silent: peak 0")
    return clip / peak, meta


def _check_wav_complete(path: Path) -> None:
    """libsndfile silently shortens a WAV whose data chunk was cut off; reject it instead."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(12)[8:12] != b"WAVE":
            return
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return
            chunk, length = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"data":
                if fh.tell() + length > size:
                    raise RejectedClip(f"truncated: data chunk promises {length} bytes, "
                                       f"{size - fh.tell()} present")
                return
            fh.seek(length + (length & 1), 1)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig, new)


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    with torch.inference_mode():
        return _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(x))).numpy()


@lru_cache(maxsize=4)
def _spectrogram(cfg: FeaturesConfig) -> torchaudio.transforms.Spectrogram:
    # torch.hann_window is periodic by default, as SPEC.md asks.
    return torchaudio.transforms.Spectrogram(
        n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        pad=0, power=1.0, center=False, window_fn=torch.hann_window)


def log_spectrogram(clips: np.ndarray | torch.Tensor, cfg: FeaturesConfig) -> torch.Tensor:
    """[B, clip_samples] peak-normalized clips -> float32 [B, n_bins, n_frames] log-magnitude.

    The transform runs in float64: log(|S| + 1e-6) magnifies float32 rounding in near-silent bins
    by up to 1e-3, and the features must match the reference to 1e-4 everywhere."""
    x = torch.as_tensor(clips).to(torch.float64)
    x = torch.nn.functional.pad(x, (0, cfg.tail_pad))
    with torch.inference_mode():
        mag = _spectrogram(cfg).to(x.device, torch.float64)(x)
        return torch.log(mag + cfg.log_eps).to(torch.float32)
