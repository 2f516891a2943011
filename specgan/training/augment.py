"""Augmentation of the discriminator's inputs, real and generated alike (DiffAugment, Zhao et al. 2020).

``train.cutout``: each clip D sees has one rectangle, this fraction of the frames by this fraction of the bins
at a random place, set to 0 (each bin's training mean in the normalized domain). D sees real and generated
clips masked the same way and the generator's gradient passes through the mask, so G is not asked to make
holes; what changes is that D cannot lean on any one region of a few hundred training clips (BENCHMARKS.md,
"The kit again": within the seeds' noise on the kit, no change on Hydrogen; off in every recipe)."""

from __future__ import annotations

import torch


def cutout(x: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """[B, C, T, F] -> the same with one ``ratio * T`` by ``ratio * F`` rectangle per clip set to 0."""
    if ratio <= 0:
        return x
    b, _, t, f = x.shape
    ht, hf = int(t * ratio), int(f * ratio)
    t0 = torch.randint(0, t + 1 - ht, (b, 1, 1), generator=gen, device=x.device)
    f0 = torch.randint(0, f + 1 - hf, (b, 1, 1), generator=gen, device=x.device)
    frames = torch.arange(t, device=x.device)[None, :, None]
    bins = torch.arange(f, device=x.device)[None, None, :]
    hole = (frames >= t0) & (frames < t0 + ht) & (bins >= f0) & (bins < f0 + hf)
    return x * (~hole)[:, None].to(x.dtype)
