"""One clip to features (SPEC.md section 2): decode, mono, resample, trim or pad, peak-normalize, log |STFT|."""

from __future__ import annotations

import io
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
from specgan.errors import first_line


class RejectedClip(ValueError):
    """A clip that cannot be featurized; the message is the recorded reason."""


@dataclass(frozen=True)
class ClipInfo:
    sample_rate: int
    channels: int
    duration_s: float


def load_clip(path: str | Path, cfg: FeaturesConfig, data: bytes | None = None) -> tuple[np.ndarray, ClipInfo]:
    """Decode the first ``clip_samples`` (at ``sample_rate``) of a file: mono, resampled, padded, peak 1.

    Everything runs in float64 (decode, mix, resample, peak normalization): float32 there moves near-silent
    log bins by up to 0.4. ``data`` is the file's content when the caller already read it (one read serves
    hash and decode)."""
    try:
        snd = sf.SoundFile(io.BytesIO(data) if data is not None else str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise RejectedClip(f"unreadable audio: {first_line(exc)}") from None
    with snd:
        if snd.frames <= 0:
            raise RejectedClip("empty: 0 samples")
        if snd.format == "WAV":
            _check_wav_complete(data if data is not None else Path(path).read_bytes())
        total = snd.frames
        meta = ClipInfo(snd.samplerate, snd.channels, total / snd.samplerate)
        # Read only what the clip needs (plus a resampling margin), so a long file costs no more.
        need = cfg.clip_samples if snd.samplerate == cfg.sample_rate else (
            math.ceil(cfg.clip_samples * snd.samplerate / cfg.sample_rate) + 64)
        try:
            audio = snd.read(frames=need, dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise RejectedClip(f"unreadable audio: {first_line(exc)}") from None
    if audio.shape[0] < min(need, total):  # integers: 44100 * (7759 / 44100) is 7759.000000000001
        raise RejectedClip(f"truncated: {audio.shape[0]} frames decoded")
    if not np.isfinite(audio).all():
        raise RejectedClip("non-finite samples (NaN or Inf)")
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if meta.sample_rate != cfg.sample_rate:
        mono = _resample(mono, meta.sample_rate, cfg.sample_rate)
    clip = np.zeros(cfg.clip_samples, dtype=np.float64)
    n = min(cfg.clip_samples, mono.shape[0])
    clip[:n] = mono[:n]
    peak = float(np.abs(clip).max())
    if peak == 0.0:
        raise RejectedClip("silent: peak 0")
    return clip / peak, meta


def _check_wav_complete(data: bytes) -> None:
    """libsndfile silently shortens a WAV whose data chunk was cut off; reject it instead."""
    if data[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(data):
        chunk, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        pos += 8
        if chunk == b"data":
            if pos + length > len(data):
                raise RejectedClip(f"truncated: data chunk promises {length} bytes, {len(data) - pos} present")
            return
        pos += length + (length & 1)


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    # torchaudio's default windowed-sinc filter (Hann window, 6 zero crossings, rolloff 0.99), in float64.
    return torchaudio.transforms.Resample(orig, new, dtype=torch.float64)


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    with torch.inference_mode():
        return _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


@lru_cache(maxsize=4)
def _spectrogram(cfg: FeaturesConfig) -> torchaudio.transforms.Spectrogram:
    # torch.hann_window is periodic by default, as SPEC.md asks; built in float64 (a float32 window
    # alone moves near-silent log bins past the 1e-4 parity).
    return torchaudio.transforms.Spectrogram(
        n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        pad=0, power=None, center=False, window_fn=torch.hann_window, wkwargs={"dtype": torch.float64})


def log_spectrogram(clips: np.ndarray | torch.Tensor, cfg: FeaturesConfig) -> torch.Tensor:
    """[B, clip_samples] peak-normalized clips -> float32 [B, n_bins, n_frames] log-magnitude.

    The transform runs in float64: log(|S| + 1e-6) magnifies float32 rounding in near-silent bins
    by up to 1e-3, and the features must match the reference to 1e-4 everywhere. The squared
    magnitude is formed in float64 (complex abs is slow on the CPU); sqrt and log run in float32."""
    x = torch.as_tensor(clips).to(torch.float64)
    x = torch.nn.functional.pad(x, (0, cfg.tail_pad))
    with torch.inference_mode():
        spec = torch.view_as_real(_spectrogram(cfg).to(x.device, torch.float64)(x))
        power = (spec[..., 0].square() + spec[..., 1].square()).to(torch.float32)
        return torch.log(power.sqrt_().add_(cfg.log_eps))
