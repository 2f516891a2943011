"""Figures: a grid of generated spectrograms, waveforms with their spectrograms."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from specgan.atomic import atomic_path  # noqa: E402


def spectrogram_grid(specs: np.ndarray, dest: str | Path, title: str = "") -> Path:
    """[N, 128, 128] normalized generator outputs (time x frequency) -> one PNG grid (frequency up)."""
    n = specs.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(specs[i].T, origin="lower", aspect="auto", cmap="magma", vmin=-1, vmax=1)
    if title:
        fig.suptitle(title)
    return _save(fig, dest)


def _save(fig: plt.Figure, dest: str | Path) -> Path:
    fig.tight_layout()
    dest = Path(dest)
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return dest


def waveforms_and_spectrograms(audio: np.ndarray, sample_rate: int, dest: str | Path,
                               names: list[str] | None = None) -> Path:
    """[N, samples] audio -> a PNG with each clip's waveform and STFT magnitude (dB)."""
    n = audio.shape[0]
    fig, axes = plt.subplots(n, 2, figsize=(10, 1.8 * n), squeeze=False)
    t = np.arange(audio.shape[1]) / sample_rate
    for i in range(n):
        axes[i, 0].plot(t, audio[i], linewidth=0.5)
        axes[i, 0].set_ylim(-1.05, 1.05)
        axes[i, 0].set_ylabel(names[i] if names else f"#{i}", fontsize=7)
        with np.errstate(divide="ignore"):  # silent frames are -inf dB, drawn as the floor
            axes[i, 1].specgram(audio[i], NFFT=256, Fs=sample_rate, noverlap=128, cmap="magma")
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (s)")
    return _save(fig, dest)
