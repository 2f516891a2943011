"""The layout of a features folder: ``shard-XXXXX-of-YYYYY`` stems, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specgan.core.errors import FeaturesError


def shard_stems(features_dir: str | Path) -> list[Path]:
    """The shards of a features folder, in order."""
    stems = sorted(p.with_suffix("") for p in Path(features_dir).glob("shard-*-of-*.npy"))
    if not stems:
        raise FeaturesError(f"no feature shards in {features_dir}")
    return stems


def load_features(features_dir: str | Path) -> np.ndarray:
    """All shards concatenated in order (memory-mapped shards, one copy in memory)."""
    arrays = [np.load(stem.with_suffix(".npy"), mmap_mode="r") for stem in shard_stems(features_dir)]
    return np.concatenate(arrays, axis=0)


def load_labels(features_dir: str | Path) -> list[str]:
    """Each clip's class from the shard manifests, in the order of :func:`load_features` ("" = unlabelled)."""
    import csv

    labels: list[str] = []
    for stem in shard_stems(features_dir):
        with open(stem.with_suffix(".manifest.csv"), newline="") as fh:
            labels.extend(row["label"] for row in csv.DictReader(fh))
    return labels
