"""Audio file discovery and the label manifest, shared by download, features, evaluate and tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".aif", ".aiff", ".ogg"})
LABEL_MANIFEST = "labels.csv"  # class labels of a labelled kit; kept beside the audio by download


def is_audio_name(name: str) -> bool:
    """True for file names with an audio extension (case-insensitive)."""
    return Path(name).suffix.lower() in AUDIO_EXTENSIONS


def is_kept_name(name: str) -> bool:
    """Files the download step keeps: audio plus label manifests."""
    return is_audio_name(name) or Path(name).name == LABEL_MANIFEST


def list_audio(root: str | Path, split: str = "all") -> list[str]:
    """Sorted relative POSIX paths of the audio files under ``root``.

    ``split`` keeps the files below a folder of that name (``train``, ``valid``, ``test``);
    ``all`` keeps every file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    rels = []
    for folder, _, names in os.walk(root):  # os.walk: several times faster than Path.rglob on big sets
        parts = Path(folder).relative_to(root).parts
        if split != "all" and split not in parts:
            continue
        rels.extend("/".join((*parts, n)) for n in names if is_audio_name(n))
    return sorted(rels)


def read_labels(data_dir: str | Path) -> dict[str, str]:
    """Map each labelled clip's path (relative to ``data_dir``) to its class, from every ``labels.csv``."""
    data_dir = Path(data_dir)
    labels: dict[str, str] = {}
    for manifest in sorted(data_dir.rglob(LABEL_MANIFEST)):
        base = manifest.parent.relative_to(data_dir)
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                labels[(base / row["path"]).as_posix()] = row["label"]
    return labels
