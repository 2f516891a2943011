"""Figures: a grid of generated spectrograms, waveforms with their spectrograms."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from specgan.core.atomic import atomic_path  # noqa: E402


def spectrogram_grid(db: np.ndarray, dest: str | Path, title: str = "", labels: list[str] | None = None,
                     sample_rate: int = 16000, hop_length: int = 128, n_fft: int = 256) -> Path:
    """[N, frequency, time] magnitudes in dB -> one PNG grid: time (s) and frequency (kHz) axes, one colour
    bar in dB, each tile titled with its label (the WAV name where there is one)."""
    n = db.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols + 1, 2.2 * rows), squeeze=False)
    extent = (0, db.shape[2] * hop_length / sample_rate, 0, (db.shape[1] - 1) * sample_rate / n_fft / 1000)
    lo, hi = np.percentile(db, 1), db.max()
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        image = ax.imshow(db[i], origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=hi, extent=extent)
        ax.set_title(labels[i] if labels else f"#{i}", fontsize=7)
        ax.tick_params(labelsize=6)
        if i % cols == 0:
            ax.set_ylabel("kHz", fontsize=7)
        if i // cols == rows - 1:
            ax.set_xlabel("s", fontsize=7)
    fig.subplots_adjust(hspace=0.45)  # room for each tile's title below the time axis of the tile above
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title)
    return _save(fig, dest, tight=False)


def _save(fig: plt.Figure, dest: str | Path, tight: bool = True) -> Path:
    if tight:
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
        with np.errstate(divide="ignore"):  # silent frames are -inf dB (masked): the background is the floor
            axes[i, 1].specgram(audio[i], NFFT=256, Fs=sample_rate, noverlap=128, cmap="magma")
        axes[i, 1].set_facecolor(plt.get_cmap("magma")(0.0))
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 1].set_xlabel("time (s)")
    return _save(fig, dest)


def sample_card(audio: np.ndarray, sample_rate: int, dest: str | Path) -> Path:
    """One clip's waveform over its spectrogram (dB), small enough to sit beside its player."""
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(3.6, 2.6), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 2], "hspace": 0.05})
    t = np.arange(audio.shape[0]) / sample_rate
    wave.plot(t, audio, linewidth=0.4, color="#2b6cb0")
    wave.set_ylim(-1.05, 1.05)
    wave.set_yticks([])
    with np.errstate(divide="ignore"):
        spec.specgram(audio, NFFT=256, Fs=sample_rate, noverlap=128, cmap="magma")
    spec.set_facecolor(plt.get_cmap("magma")(0.0))
    spec.set_ylabel("kHz", fontsize=7)
    spec.set_yticks([0, 2000, 4000, 6000, 8000], ["0", "2", "4", "6", "8"], fontsize=6)
    spec.tick_params(axis="x", labelsize=6)
    spec.set_xlabel("s", fontsize=7, labelpad=1)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.98, bottom=0.14)
    return _save(fig, dest, tight=False)


def loss_curves(rows: list[list[float]], dest: str | Path) -> Path:
    """The training log (iteration, epoch, d_loss, g_loss, d_real, d_fake rows) as one PNG: the two losses
    over iterations, and D's mean outputs on real and generated clips. What `dvc plots show` shows offline."""
    data = np.asarray(rows, dtype=float).reshape(-1, 6)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for col, name in ((2, "D loss"), (3, "G loss")):
        top.plot(data[:, 0], data[:, col], label=name, lw=1)
    top.set_ylabel("loss")
    top.legend(loc="upper right")
    top.set_title("GAN losses")
    for col, name in ((4, "D(real)"), (5, "D(generated)")):
        bottom.plot(data[:, 0], data[:, col], label=name, lw=1)
    bottom.set_ylabel("D output")
    bottom.set_xlabel("iteration")
    bottom.legend(loc="upper right")
    return _save(fig, dest)
