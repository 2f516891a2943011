"""The latent space of a trained generator: paths between two sounds, and the z of a given sound."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from specgan.audio.synthesis import LATENTS, DrumGenerator, save_latents
from specgan.core.config import RenderConfig
from specgan.core.errors import SpecganError


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a to b at fractions t [N] (linear where the two are nearly parallel);
    the ends are a and b exactly."""
    omega = torch.arccos(torch.clamp(torch.dot(a / a.norm(), b / b.norm()), -1.0, 1.0))
    if float(omega) < 1e-4:
        out = lerp(a, b, t)
    else:
        so = torch.sin(omega)
        out = (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b
    out[0], out[-1] = a, b
    return out


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out = (1 - t)[:, None] * a + t[:, None] * b
    out[0], out[-1] = a, b
    return out


def interpolate(gen: DrumGenerator, out_dir: str | Path, render: RenderConfig, start: torch.Tensor,
                end: torch.Tensor, steps: int, mode: str = "slerp", drum_class: str | None = None) -> list[Path]:
    """``steps`` sounds along the path from z ``start`` to z ``end`` (``slerp`` or ``linear``) as
    ``step_XXX.wav``, with ``interpolation.png`` (every step's waveform and spectrogram) and ``latents.npz``."""
    from specgan.audio.plots import waveforms_and_spectrograms
    from specgan.playback.synthesize import write_wav

    if steps < 2 or steps > 256:
        raise SpecganError(f"--steps must be 2 to 256, got {steps}")
    t = torch.linspace(0, 1, steps)
    z = (slerp if mode == "slerp" else lerp)(start.float(), end.float(), t)
    y = gen.class_ids([drum_class] if drum_class else None, steps)
    if y is not None and not drum_class:  # a conditional path keeps one class: the first
        y = torch.zeros_like(y)
    audio = gen.audio(z, render, y).cpu().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sr = gen.features.sample_rate
    files = [write_wav(out_dir / f"step_{i:03d}.wav", clip, sr) for i, clip in enumerate(audio)]
    waveforms_and_spectrograms(audio, sr, out_dir / "interpolation.png",
                               [f"step {i} (t={float(ti):.2f})" for i, ti in enumerate(t)])
    save_latents(out_dir / LATENTS, z, y, gen.classes)
    return files


@dataclass
class Inversion:
    z: torch.Tensor  # [latent]
    drum_class: str | None
    distance: float  # RMS difference to the target, normalized spectrogram units
    random_distance: float  # the same for the random starting points (median): what no search gives
    nearest_training: float | None  # the nearest training clip's distance to the target, when given
    target_clip: np.ndarray  # the target as decoded (mono, 16 kHz, peak 1): what the distances compare against


def invert(gen: DrumGenerator, target_wav: str | Path, starts: int = 8, steps: int = 200, lr: float = 0.05,
           seed: int = 0, training_features: str | Path | None = None) -> Inversion:
    """The z (and class, for a conditional model) whose sound best matches ``target_wav``: gradient descent
    on z (kept in [-1, 1]) against the target's normalized spectrogram, from ``starts`` random points (every
    class for a conditional model), best of all."""
    from specgan.data.spectral import RejectedClip, load_clip

    try:
        clip, _ = load_clip(target_wav, gen.features)
    except RejectedClip as exc:
        raise SpecganError(f"{target_wav}: {exc}") from None
    target = gen.normalized(clip[None])
    # A file's level is not the generator's (load_clip peak-normalizes): a free gain per start, which in the
    # normalized domain is an offset of gain / (std * scale) on every frequency bin.
    bins = target.shape[-1]
    per_bin = 1.0 / (torch.as_tensor(gen.stats.std[:bins], dtype=torch.float32, device=gen.device)
                     * gen.normalize.scale)
    classes: list[int | None] = list(range(len(gen.classes))) if gen.conditional else [None]
    g = torch.Generator().manual_seed(seed)
    best: tuple[float, torch.Tensor, int | None] | None = None
    random_d = []
    for c in classes:
        z = (torch.rand(starts, gen.model.latent_dim, generator=g) * 2 - 1).to(gen.device).requires_grad_(True)
        y = None if c is None else torch.full((starts,), c, device=gen.device)
        gain = torch.zeros(starts, device=gen.device, requires_grad=True)
        opt = torch.optim.Adam([z, gain], lr=lr)
        gen.G.requires_grad_(False)
        for k in range(steps + 1):
            out = (gen.G(z) if y is None else gen.G(z, y)) + gain.view(-1, 1, 1, 1) * per_bin
            d = (out - target).square().flatten(1).mean(1)
            if k == 0:
                random_d.extend(d.detach().sqrt().tolist())
            if k == steps:
                break
            opt.zero_grad()
            d.sum().backward()
            opt.step()
            with torch.no_grad():
                z.clamp_(-1, 1)
        d = d.detach()
        i = int(d.argmin())
        if best is None or float(d[i]) < best[0]:
            best = (float(d[i]), z[i].detach().clone(), c)
    assert best is not None
    nearest = None
    if training_features is not None:
        from specgan.data.normalize import normalize
        from specgan.data.shards import load_features

        real = normalize(load_features(training_features), gen.stats, gen.normalize, gen.device)
        nearest = float((real - target).square().flatten(1).mean(1).min().sqrt())
    return Inversion(best[1], None if best[2] is None else gen.classes[best[2]], math.sqrt(best[0]),
                     float(np.median(random_d)), nearest, clip)
