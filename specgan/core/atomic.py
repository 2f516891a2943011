"""Atomic writes: a failure never leaves a half-written file or folder where readers look."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from specgan.core.errors import OutputRefused

MARKER = ".specgan-output"  # in every folder a step replaces: which step wrote it


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600: the result gets the user's umask
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_torch(payload: Any, dest: str | Path) -> Path:
    """``torch.save`` to ``dest`` atomically. A failed write (a full disk, a file size limit) is a one-line
    error naming the file and the free space: torch reports it as a cryptic RuntimeError."""
    import torch

    from specgan.core.errors import SpecganError, first_line

    dest = Path(dest)
    try:
        with atomic_path(dest) as tmp:
            torch.save(payload, tmp)
    except (RuntimeError, OSError) as exc:
        free = shutil.disk_usage(dest.parent).free / 2**20
        raise SpecganError(f"cannot write {dest} ({free:.0f} MB free on its disk): {first_line(exc, 200)}") from None
    return dest


def check_out_dir(dest: str | Path, step: str, inputs: tuple[str | Path, ...] = ()) -> None:
    """Refuse (one line) an ``--out`` folder that replacing would destroy data: the current folder or one above
    it, a folder overlapping an input, a file, or a non-empty folder that this same step did not write."""
    d = Path(dest).resolve()
    cwd = Path.cwd().resolve()
    if d == cwd or d in cwd.parents:
        raise OutputRefused(f"--out {dest}: refusing to replace the current folder or one above it")
    for given in inputs:
        src = Path(given).resolve()
        if d == src or d in src.parents or src in d.parents:
            raise OutputRefused(f"--out {dest}: overlaps the input {given}; choose a folder apart from the inputs")
    if d.exists() and not d.is_dir():
        raise OutputRefused(f"--out {dest}: exists and is not a folder")
    if d.is_dir() and any(d.iterdir()):
        marker = d / MARKER
        owner = marker.read_text().strip() if marker.is_file() else ""
        if owner != step:
            wrote = f"`specgan {owner}` wrote it" if owner else f"it has no {MARKER} marker"
            raise OutputRefused(f"--out {dest}: refusing to replace a folder that `specgan {step}` did not write "
                                f"({wrote}); choose a new or empty folder")


@contextlib.contextmanager
def atomic_dir(dest: str | Path, step: str, inputs: tuple[str | Path, ...] = ()) -> Iterator[Path]:
    """Yield an empty temporary sibling folder; it replaces ``dest`` only if the block succeeds, and only when
    ``dest`` is new, empty or written before by the same ``step`` (see :func:`check_out_dir`)."""
    check_out_dir(dest, step, inputs)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: the result gets the user's umask
    try:
        yield tmp
        (tmp / MARKER).write_text(step + "\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            try:
                os.replace(dest, old / "x")
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(dest: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
