"""Real one-shots into the layout the pipeline trains on: ``train/`` and ``test/`` folders, one folder a class.

A user's folder is labelled by folder (``DIR/kick/*.wav``, ``DIR/snare/...``; any depth: the nearest folder
that is not a split names the class). Debian's ``hydrogen-data`` kits (``hydrogen``) are labelled by keywords
in their file names (``Kick-Hard.wav``, ``808_Hat_Open.flac``). Each class is split by a hash of its file
names (stable when files are added): a quarter held out for the metrics, at least one clip of a class with
two or more, the rest to train on. Files are linked, not copied, where the file system allows.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from specgan.core.errors import SpecganError
from specgan.data.audio_files import SPLITS, list_audio, printable_name
from specgan.data.synth_kit import CLASSES  # the seven drum classes, as the procedural kit has them

HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")
# File-name keywords, first match wins (so `cowbell` is skipped before `bell` makes it a cymbal).
KEYWORDS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("cowbell", "clave", "shaker", "conga", "tamb", "perc")),
    ("closed_hat", ("closed_hat", "hatclosed", "hat_closed", "closedhat", "hatpedal", "hat_pedal", "chh")),
    ("open_hat", ("open_hat", "hatopen", "hat_open", "openhat", "semiopen", "ohh")),
    ("kick", ("kick", "bassdrum", "bass_drum")),
    ("snare", ("snare", "sidestick", "rimshot")),
    ("clap", ("clap",)),
    ("tom", ("tom",)),
    ("cymbal", ("cymbal", "crash", "ride", "splash", "china", "bell")),
)
HELD_OUT = 0.25


def class_by_keyword(rel: str) -> str | None:
    """A clip's drum class from its folder (when that names one of CLASSES) or its file name; None if neither."""
    parts = Path(rel).parts
    for folder in reversed(parts[:-1]):
        if folder.lower() in CLASSES:
            return folder.lower()
    name = Path(rel).stem.lower().replace("-", "_").replace(" ", "_")
    for label, words in KEYWORDS:
        if any(w in name for w in words):
            return label
    return None


def class_by_folder(rel: str) -> str | None:
    """The nearest folder above a clip that is not a split folder; None for a clip at the top."""
    folders = [p for p in Path(rel).parts[:-1] if p not in SPLITS]
    return folders[-1] if folders else None


def labelled_clips(source: str | Path) -> dict[str, list[Path]]:
    """Each class's files under ``source`` (``hydrogen``: the Hydrogen kits by keyword; else by folder)."""
    by_keyword = str(source) == "hydrogen"
    root = HYDROGEN if by_keyword else Path(source)
    if not root.is_dir():
        hint = " (apt-get install hydrogen-data)" if by_keyword else ""
        raise SpecganError(f"{root}: not a folder of one-shots{hint}")
    out: dict[str, list[Path]] = {}
    for rel in list_audio(root):
        label = class_by_keyword(rel) if by_keyword else class_by_folder(rel)
        if label:
            out.setdefault(label, []).append(root / rel)
    if len(out) < 2:
        raise SpecganError(f"{root}: found {len(out)} class folder(s) holding audio; expected DIR/<class>/<clip> "
                           "for two classes or more")
    return out


def _split(files: list[Path]) -> dict[Path, str]:
    ranked = sorted(files, key=lambda f: hashlib.sha256(f.name.encode("utf-8", "surrogateescape")).hexdigest())
    n_held = max(1, round(len(files) * HELD_OUT)) if len(files) >= 2 else 0
    return {f: "test" if i < n_held else "train" for i, f in enumerate(ranked)}


def arrange_labelled(source: str | Path, out: str | Path) -> Path:
    """Link (or copy) the labelled clips of ``source`` into ``out/{train,test}/<class>/``; returns ``out``."""
    out = Path(out)
    if out.exists():
        raise SpecganError(f"{out} exists: choose a new folder")
    for label, files in sorted(labelled_clips(source).items()):
        for f, split in _split(files).items():
            dest = out / split / label / printable_name(f.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():  # two kits with the same file name: keep both
                dest = dest.with_name(f"{f.parent.name}-{dest.name}")
            try:
                os.link(f, dest)
            except OSError:
                shutil.copyfile(f, dest)
    return out
