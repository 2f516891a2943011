"""The stats step: per-bin normalization statistics merged from the feature shards (SPEC.md 3)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgan.core.atomic import write_json
from specgan.core.errors import StatsError
from specgan.data.running_stats import RunningStats


@dataclass(frozen=True)
class NormStats:
    """Per-bin mean and std of the log-magnitude features; part of the model."""

    mean: np.ndarray
    std: np.ndarray
    frames: int
    clips: int
    data_version: str

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "frames": self.frames,
                "clips": self.clips, "data_version": self.data_version}

    @classmethod
    def from_dict(cls, d: dict) -> NormStats:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64),
                   int(d["frames"]), int(d["clips"]), str(d.get("data_version", "")))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> NormStats:
        return cls.from_dict(json.loads(Path(path).read_text()))


def merge_stats(stats_files: Iterable[str | Path], n_frames: int, data_version: str = "") -> NormStats:
    """Merge per-shard sufficient statistics (``*.stats.npz``) into NormStats."""
    total: RunningStats | None = None
    for path in stats_files:
        part = RunningStats.load(path)
        total = part if total is None else (total.merge(part) or total)
    if total is None or total.count == 0:
        raise StatsError("no statistics to merge: no shard held a usable clip")
    std = total.std
    if not np.all(std > 0):
        bad = np.flatnonzero(~(std > 0)).tolist()
        raise StatsError(f"frequency bins {bad} have zero variance: the data cannot be normalized")
    return NormStats(total.mean, std, total.count, total.count // n_frames, data_version)


def run_stats(features_dir: str | Path, out_path: str | Path, n_frames: int, data_version: str = "") -> NormStats:
    """Merge the stats of every shard in ``features_dir`` and write ``out_path`` (JSON)."""
    from specgan.data.shards import shard_stems

    files = [stem.with_suffix(".stats.npz") for stem in shard_stems(features_dir)]
    stats = merge_stats(files, n_frames, data_version)
    stats.save(out_path)
    return stats
