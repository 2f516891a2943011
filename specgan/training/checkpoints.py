"""Training checkpoints: atomic, rotated, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple

import torch

from specgan.core.atomic import save_torch

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^ckpt-e(\d{6})\.pt$")


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"ckpt-e{epoch:06d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def save_checkpoint(folder: str | Path, epoch: int, payload: dict, keep: int) -> Path:
    """Write ``ckpt-e<epoch>.pt`` atomically, then delete all but the newest ``keep``."""
    folder = Path(folder)
    dest = checkpoint_path(folder, epoch)
    save_torch(payload, dest)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return dest


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Load safely (tensors and plain containers only)."""
    return torch.load(path, map_location=device, weights_only=True)


TEMP = re.compile(r"^\.ckpt-e\d{6}\.pt\..*\.tmp$")  # atomic_path's temporaries of save_checkpoint


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete half-written checkpoint temporaries a killed run left (only names this module writes)."""
    folder = Path(folder)
    stale = [p for p in folder.iterdir() if TEMP.match(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def newest_loadable(folder: str | Path, device: torch.device | str = "cpu") -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads, skipping (and reporting) truncated or corrupt newer ones."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path, device)
        except Exception as exc:  # noqa: BLE001 -- any unreadable file: fall back to the previous one
            log.warning("checkpoint %s is unreadable (%s): trying the previous one",
                                                path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return None, None


class ResumePoint(NamedTuple):
    """Where a run continues from (``path``, ``ckpt``: None for a fresh start) and, on a fresh start over
    older checkpoints, the MLflow run those belonged to (``abandoned_run_id``)."""

    path: Path | None
    ckpt: dict | None
    abandoned_run_id: str | None = None


def resume_point(folder: Path, resume: str | None, fresh: bool, fingerprint: str, device: torch.device,
                 main: bool) -> ResumePoint:
    """The checkpoint a run continues from: ``resume`` if given (it must match ``fingerprint``), none with
    ``fresh``, else the newest loadable one in ``folder`` that matches. A fresh start owns the folder: rank 0
    removes older checkpoints, which would shadow the new ones, and any half-written temporaries."""
    from specgan.core.errors import TrainError

    if main:
        for stale in remove_stale_temporaries(folder):
            log.warning("removed %s, left half-written by an interrupted run", stale)
    abandoned: str | None = None
    if resume:
        path: Path | None = Path(resume)
        if not path.exists():
            raise TrainError(f"checkpoint not found: {path}")
        try:
            ckpt = load_checkpoint(path, device)
        except Exception as exc:  # noqa: BLE001
            raise TrainError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
    elif fresh:
        # Only its run id is read (on the CPU): the run it belonged to, if killed, is closed by the new run.
        path, ckpt = newest_loadable(folder, "cpu") if main and list_checkpoints(folder) else (None, None)
        abandoned = (ckpt or {}).get("run_id") or None
        ckpt = None
    else:
        path, ckpt = newest_loadable(folder, device)
    if ckpt is not None and ckpt.get("fingerprint") != fingerprint:
        if resume:
            raise TrainError(f"{path} was trained with other model/train params or data; pass --fresh to start over")
        log.warning("not resuming from %s: it was trained with other model/train params or data", path)
        abandoned = ckpt.get("run_id") or None
        ckpt = None
    if ckpt is None:
        if main:
            for old in list_checkpoints(folder):
                log.warning("removing stale checkpoint %s", old)
                old.unlink()
        return ResumePoint(None, None, abandoned)
    return ResumePoint(path, ckpt)
