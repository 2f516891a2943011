"""Per-bin mean and population variance, mergeable exactly across shards (Chan et al.)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RunningStats:
    """Count, mean and sum of squared deviations (M2) per frequency bin, in float64."""

    n_bins: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # type: ignore[assignment]
    m2: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.n_bins)
        if self.m2 is None:
            self.m2 = np.zeros(self.n_bins)

    @classmethod
    def of(cls, feats: np.ndarray) -> RunningStats:
        """The statistics of one block [clips, bins, frames]: every frame of every clip counts. Its sums and
        sums of squares accumulate in float64 without a float64 copy of the block; for log magnitudes (|mean|
        and std of a few units) its M2 = sum(x^2) - sum(x) * mean loses about one bit of float64's 52. A
        non-finite value anywhere in the block makes its mean non-finite (float32 values cannot overflow a
        float64 sum)."""
        block = np.asarray(feats)
        n = block.shape[0] * block.shape[2]
        total = np.einsum("ijk->j", block, dtype=np.float64)
        squares = np.einsum("ijk,ijk->j", block, block, dtype=np.float64)
        mean = total / n
        return cls(block.shape[1], n, mean, np.maximum(squares - total * mean, 0.0))

    def merge(self, other: RunningStats) -> None:
        """Fold another partial result into this one."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof = 0)."""
        return np.sqrt(self.m2 / self.count)

    def save(self, path: str | Path) -> None:
        """Write to an .npz file."""
        with open(path, "wb") as fh:
            np.savez(fh, count=self.count, mean=self.mean, m2=self.m2)

    @classmethod
    def load(cls, path: str | Path) -> RunningStats:
        """Read an .npz written by :meth:`save`."""
        with np.load(path) as z:
            return cls(int(z["mean"].shape[0]), int(z["count"]), z["mean"].copy(), z["m2"].copy())
