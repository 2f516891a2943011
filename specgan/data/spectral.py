"""One clip to features (SPEC.md section 2): decode, mono, resample, trim or pad, peak-normalize, log |STFT|."""

from __future__ import annotations

import io
import math
import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from specgan.core.config import FeaturesConfig
from specgan.core.errors import first_line

_OBJECT = re.compile(r"<[^<>]*? at 0x[0-9a-f]+>")  # e.g. libsndfile's "Error opening <_io.BytesIO object at 0x7f..>"


def _stable(reason: str) -> str:
    """A reason as rejects.csv records it: no object addresses, which differ between runs on the same input
    (DVC would see a change where there is none)."""
    return _OBJECT.sub("the file", reason)


class RejectedClip(ValueError):
    """A clip that cannot be featurized; the message is the recorded reason."""


@dataclass(frozen=True)
class ClipInfo:
    sample_rate: int
    channels: int
    duration_s: float


def load_clip(path: str | Path, cfg: FeaturesConfig, data: bytes | None = None,
              out: np.ndarray | None = None) -> tuple[np.ndarray, ClipInfo]:
    """Decode the first ``clip_samples`` (at ``sample_rate``) of a file: mono, resampled, padded, peak 1.

    Everything runs in float64 (decode, mix, resample, peak normalization): float32 there moves near-silent
    log bins by up to 0.4. ``data`` is the file's content when the caller already read it (one read serves
    hash and decode); ``out`` a float64 row of ``clip_samples`` to write the clip into (a batch's row)."""
    clip, peak, meta = decode_clip(path, cfg, data, out)
    clip /= peak
    return clip, meta


def decode_clip(path: str | Path, cfg: FeaturesConfig, data: bytes | None = None,
                out: np.ndarray | None = None) -> tuple[np.ndarray, float, ClipInfo]:
    """:func:`load_clip` before its last step: the clip (mono, resampled, trimmed or padded) and its peak
    ``max|x|``, checked finite and non-zero. The features step folds ``1 / peak`` into the STFT window
    instead of dividing the clip (one pass over the samples fewer)."""
    clip = np.empty(cfg.clip_samples, dtype=np.float64) if out is None else out
    decoded = _decode_pcm16_wav(data, cfg, clip) if data is not None else None
    audio, meta, total, need, direct, peak = decoded or (*_decode_soundfile(path, cfg, data, clip), None)
    if audio.shape[0] < min(need, total):  # integers: 44100 * (7759 / 44100) is 7759.000000000001
        raise RejectedClip(f"truncated: {audio.shape[0]} frames decoded")
    if direct:
        n = audio.shape[0]
    else:
        mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
        if meta.sample_rate != cfg.sample_rate:
            mono = _resample(mono, meta.sample_rate, cfg.sample_rate)
        n = min(cfg.clip_samples, mono.shape[0])
        clip[:n] = mono[:n]
    clip[n:] = 0.0
    if peak is None:
        peak = max(-float(clip.min()), float(clip.max()))
    if not math.isfinite(peak):  # a NaN or Inf sample (float formats) makes the peak non-finite
        raise RejectedClip("non-finite samples (NaN or Inf)")
    if peak == 0.0:
        raise RejectedClip("silent: peak 0")
    return clip, peak, meta


def _frames_needed(cfg: FeaturesConfig, sample_rate: int) -> int:
    """Frames to decode for one clip (plus a resampling margin), so a long file costs no more."""
    if sample_rate == cfg.sample_rate:
        return cfg.clip_samples
    return math.ceil(cfg.clip_samples * sample_rate / cfg.sample_rate) + 64


Decoded = tuple[np.ndarray, ClipInfo, int, int, bool]  # samples [frames, ch], info, total, needed, direct
Pcm16Decoded = tuple[np.ndarray, ClipInfo, int, int, bool, float | None]  # ... and the peak when direct


def _decode_soundfile(path: str | Path, cfg: FeaturesConfig, data: bytes | None, clip: np.ndarray) -> Decoded:
    """Any format libsndfile reads, as float64 [frames, channels]; mono at the features' rate decodes straight
    into ``clip`` (``direct``)."""
    try:
        snd = sf.SoundFile(io.BytesIO(data) if data is not None else str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise RejectedClip(f"unreadable audio: {_stable(first_line(exc))}") from None
    with snd:
        if snd.frames <= 0:
            raise RejectedClip("empty: 0 samples")
        if snd.format == "WAV":
            if data is not None:
                _check_wav_complete(data)
            else:  # the chunk headers sit at the start: read those, not the whole (maybe huge) file
                with open(path, "rb") as fh:
                    _check_wav_complete(fh.read(WAV_HEAD_BYTES), size=os.fstat(fh.fileno()).st_size)
        meta = ClipInfo(snd.samplerate, snd.channels, snd.frames / snd.samplerate)
        need = _frames_needed(cfg, snd.samplerate)
        direct = snd.channels == 1 and snd.samplerate == cfg.sample_rate
        try:
            audio = snd.read(frames=need, dtype="float64", always_2d=True, out=clip[:, None] if direct else None)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise RejectedClip(f"unreadable audio: {_stable(first_line(exc))}") from None
    return audio, meta, snd.frames, need, direct


WAV_HEAD_BYTES = 1 << 20  # a WAV's chunk headers are read from its first MiB when the file is not in memory
PCM16_SCALE = 2.0**-15  # libsndfile's int16 -> float64 (x / 32768): a power of two, so both agree bit for bit
WAVE_FORMAT_PCM = 1


def _wav_chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The RIFF chunks of a WAV up to its first ``data`` chunk: id -> (offset of the body, declared length)."""
    chunks: dict[bytes, tuple[int, int]] = {}
    pos = 12
    while pos + 8 <= len(data):
        chunk, length = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        chunks.setdefault(chunk, (pos + 8, length))
        if chunk == b"data":
            break
        pos += 8 + length + (length & 1)
    return chunks


def _check_wav_complete(data: bytes, chunks: dict[bytes, tuple[int, int]] | None = None,
                        size: int | None = None) -> None:
    """libsndfile silently shortens a WAV whose data chunk was cut off; reject it instead. ``chunks``: the
    WAV's :func:`_wav_chunks` when the caller has parsed them already; ``data`` may be the file's first bytes
    only, with ``size`` the whole file's (chunk headers beyond those bytes go unchecked)."""
    if data[8:12] != b"WAVE":
        return
    size = len(data) if size is None else size
    start, length = (chunks if chunks is not None else _wav_chunks(data)).get(b"data", (0, 0))
    if start + length > size:
        raise RejectedClip(f"truncated: data chunk promises {length} bytes, {size - start} present")


def _decode_pcm16_wav(data: bytes, cfg: FeaturesConfig, clip: np.ndarray) -> Pcm16Decoded | None:
    """16-bit PCM WAV (plain ``fmt `` chunk), the usual drum one-shot, straight from its bytes: the same
    float64 samples as :func:`_decode_soundfile`, bit for bit (tested), at a tenth of its cost (libsndfile's
    Python binding spends about 90 us a file, which made the features step no faster than a plain loop).
    None for every other WAV (extensible, float, 8/24/32-bit, a fmt chunk it cannot trust): libsndfile
    decides those. A mono clip at the features' rate also gets its peak, from the integers (exact: the
    scale is a power of two)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    chunks = _wav_chunks(data)
    if b"fmt " not in chunks or b"data" not in chunks or chunks[b"fmt "][1] < 16:
        return None
    tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", data, chunks[b"fmt "][0])
    if tag != WAVE_FORMAT_PCM or bits != 16 or channels < 1 or block != 2 * channels or rate <= 0:
        return None
    _check_wav_complete(data, chunks)
    start, length = chunks[b"data"]
    total = length // block
    if total <= 0:
        raise RejectedClip("empty: 0 samples")
    need = _frames_needed(cfg, rate)
    n = min(need, total)
    pcm = np.frombuffer(data, dtype="<i2", count=n * channels, offset=start).reshape(n, channels)
    direct = channels == 1 and rate == cfg.sample_rate
    peak = None
    if direct:
        audio = clip[:n, None]
        np.multiply(pcm, PCM16_SCALE, out=audio)
        flat = pcm.reshape(-1)  # 1-D: its min and max run at twice the speed of the [n, 1] view's
        peak = max(-int(flat.min()), int(flat.max())) * PCM16_SCALE
    else:
        audio = pcm * PCM16_SCALE
    return audio, ClipInfo(rate, channels, total / rate), total, need, direct, peak


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int):  # -> torchaudio.transforms.Resample
    """torchaudio's default windowed-sinc filter (Hann window, 6 zero crossings, rolloff 0.99), in float64.
    torch is imported here, on the first clip that needs resampling: the usual 16 kHz kit never pays its
    second of import time, and the features step's worker processes fork from a smaller parent."""
    import torch
    import torchaudio

    return torchaudio.transforms.Resample(orig, new, dtype=torch.float64)


def _resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


STFT_GROUP = 8  # clips per FFT call: their float64 frames (about 2 MB) stay in the CPU's cache


@lru_cache(maxsize=4)
def _window(cfg: FeaturesConfig) -> np.ndarray:
    """The periodic Hann window (SPEC.md) in float64, zero-padded to ``n_fft`` and centred, as torch.stft does
    when ``win_length < n_fft``. A float32 window alone moves near-silent log bins past the 1e-4 parity."""
    n = np.arange(cfg.win_length)
    window = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    window[left:left + cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)
    window.flags.writeable = False
    return window


class LogSpectrogram:
    """[B, clip_samples] peak-normalized clips -> float32 [B, n_bins, n_frames] log-magnitude (SPEC.md 2).

    The transform runs in float64 (NumPy's pocketfft, ``STFT_GROUP`` clips at a time so the frames stay in
    cache, in work buffers kept between calls: fresh ones cost as much again in page faults): log(|S| + 1e-6)
    magnifies float32 rounding in near-silent bins by up to 1e-3, and the features must match the reference to
    1e-4 everywhere. Only the FFT needs float64 (its rounding is relative to the frame's energy, not to the
    bin's): the spectrum is then rounded to complex64 (relative error 6e-8 per bin, 1e-6 in the log at most),
    and magnitude and log run in float32, half the memory traffic. One instance per thread (its buffers are
    its own)."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        self.cfg, self.window, self.eps = cfg, _window(cfg), np.float32(cfg.log_eps)
        self.n_frames, self.n_bins = cfg.n_frames, cfg.n_bins
        self.row_samples = cfg.clip_samples + cfg.tail_pad
        g, t, n = STFT_GROUP, self.n_frames, self.n_bins
        self.padded = np.zeros((g, self.row_samples))
        self.scaled = np.empty((g, 1, cfg.n_fft))
        self.frames = np.empty((g, t, cfg.n_fft))
        self.spec = np.empty((g, t, n), dtype=np.complex128)
        self.spec32 = np.empty((g, t, n), dtype=np.complex64)
        self.mag = np.empty((g, t, n), dtype=np.float32)

    def __call__(self, clips: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        cfg = self.cfg
        x = np.asarray(clips, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != cfg.clip_samples:
            raise ValueError(f"expected clips of shape [B, {cfg.clip_samples}], got {list(x.shape)}")
        out = self._out(x.shape[0], out)
        views = self._frames_of(self.padded)
        for start in range(0, x.shape[0], STFT_GROUP):
            g = min(STFT_GROUP, x.shape[0] - start)
            self.padded[:g, :cfg.clip_samples] = x[start:start + g]
            self._group(views[:g], None, out[start:start + g])
        return out

    def padded_rows(self, rows: np.ndarray, peaks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The same features from rows that are not yet peak-normalized and already carry the STFT's zero
        tail: [B, clip_samples + tail_pad] float64 (tails zero) and each row's ``peaks`` [B]. ``1 / peak``
        scales the window instead of the samples, which saves the features step a copy and a division of
        every clip (the result moves by float64 rounding only)."""
        if rows.ndim != 2 or rows.shape[1] != self.row_samples or peaks.shape != rows.shape[:1]:
            raise ValueError(f"expected rows [B, {self.row_samples}] and peaks [B], got {list(rows.shape)} "
                             f"and {list(peaks.shape)}")
        out = self._out(rows.shape[0], out)
        views = self._frames_of(rows)
        for start in range(0, rows.shape[0], STFT_GROUP):
            stop = min(start + STFT_GROUP, rows.shape[0])
            self._group(views[start:stop], peaks[start:stop], out[start:stop])
        return out

    def _out(self, n_clips: int, out: np.ndarray | None) -> np.ndarray:
        return np.empty((n_clips, self.n_bins, self.n_frames), dtype=np.float32) if out is None else out

    def _frames_of(self, rows: np.ndarray) -> np.ndarray:
        """[B, row_samples] -> a [B, frames, n_fft] view of overlapping frames (no copy; built once a call,
        not once a group: sliding_window_view costs tens of microseconds)."""
        from numpy.lib.stride_tricks import sliding_window_view

        cfg = self.cfg
        return sliding_window_view(rows, cfg.n_fft, axis=-1)[:, ::cfg.hop_length][:, :self.n_frames]

    def _group(self, view: np.ndarray, peaks: np.ndarray | None, out: np.ndarray) -> None:
        """Up to ``STFT_GROUP`` clips' frame views [g, frames, n_fft] -> ``out`` [g, bins, frames]."""
        g = view.shape[0]
        frames, spec, spec32, mag = (b[:g] for b in (self.frames, self.spec, self.spec32, self.mag))
        if peaks is None:
            np.multiply(view, self.window, out=frames)
        else:
            window = np.divide(self.window, peaks[:, None, None], out=self.scaled[:g])
            np.multiply(view, window, out=frames)
        np.fft.rfft(frames, axis=-1, out=spec)  # [g, frames, bins] complex128
        np.copyto(spec32, spec, casting="same_kind")
        np.abs(spec32, out=mag)
        np.add(mag, self.eps, out=mag)
        np.log(mag, out=mag)  # in place, then one transposing copy: a log into the transposed view is slower
        out[:] = mag.transpose(0, 2, 1)


def log_spectrogram(clips: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """[B, clip_samples] peak-normalized clips -> float32 [B, n_bins, n_frames] log-magnitude (``LogSpectrogram``)."""
    return LogSpectrogram(cfg)(clips)
