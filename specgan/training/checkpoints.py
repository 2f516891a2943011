"""Training checkpoints: atomic, rotated, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import contextlib
import hashlib
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


DIGEST = "digest"
CORRUPT = ".corrupt"  # an unreadable checkpoint is renamed with this suffix: kept for inspection, never deleted


def content_digest(payload: dict) -> str:
    """sha256 over every value of a checkpoint (tensors by dtype, shape and bytes), in a fixed order: a flipped
    byte inside a tensor, which the zip container does not notice, changes it."""
    h = hashlib.sha256()

    def walk(value) -> None:
        if isinstance(value, dict):
            for k in sorted(value, key=str):
                if k != DIGEST:
                    h.update(repr(k).encode())
                    walk(value[k])
        elif isinstance(value, (list, tuple)):
            h.update(f"[{len(value)}".encode())
            for v in value:
                walk(v)
        elif isinstance(value, torch.Tensor):
            v = value.detach().cpu().contiguous()
            h.update(f"{v.dtype}{tuple(v.shape)}".encode())
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
        else:
            h.update(repr(value).encode())

    walk(payload)
    return h.hexdigest()


def save_checkpoint(folder: str | Path, epoch: int, payload: dict, keep: int) -> Path:
    """Write ``ckpt-e<epoch>.pt`` atomically, with the digest of its content, then delete all but the newest
    ``keep``."""
    folder = Path(folder)
    dest = checkpoint_path(folder, epoch)
    save_torch({**payload, DIGEST: content_digest(payload)}, dest)
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return dest


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Load safely (tensors and plain containers only) and check the content against its digest; a mismatch is
    a ValueError (a checkpoint written before digests has none to check)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if DIGEST in ckpt and content_digest(ckpt) != ckpt[DIGEST]:
        raise ValueError("its content does not match its digest (damaged on disk)")
    return ckpt


TEMP = re.compile(r"^\.ckpt-e\d{6}\.pt\..*\.tmp$")  # atomic_path's temporaries of save_checkpoint


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete half-written checkpoint temporaries a killed run left (only names this module writes)."""
    folder = Path(folder)
    stale = [p for p in folder.iterdir() if TEMP.match(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def checkpoint_epoch(path: Path) -> int:
    """The completed epochs a checkpoint holds, from its name (``ckpt-e000003.pt``: 3)."""
    m = PATTERN.match(path.name)
    return int(m.group(1)) if m else -1


def newest_loadable(folder: str | Path, device: torch.device | str = "cpu",
                    max_epoch: int | None = None) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads (of those holding at most ``max_epoch`` epochs), skipping (and
    reporting) truncated or corrupt newer ones."""
    paths = [p for p in list_checkpoints(folder) if max_epoch is None or checkpoint_epoch(p) <= max_epoch]
    for path in reversed(paths):
        try:
            return path, load_checkpoint(path, device)
        except Exception as exc:  # noqa: BLE001 -- any unreadable file: fall back to the previous one
            aside = path.with_name(path.name + CORRUPT)
            with contextlib.suppress(OSError):  # another rank may have moved it already
                path.rename(aside)
            log.warning("checkpoint %s is unreadable (%s): moved aside to %s; trying the previous one",
                        path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, aside.name)
    return None, None


class ResumePoint(NamedTuple):
    """Where a run continues from (``path``, ``ckpt``: None for a fresh start) and, on a fresh start over
    older checkpoints, the MLflow run those belonged to (``abandoned_run_id``)."""

    path: Path | None
    ckpt: dict | None
    abandoned_run_id: str | None = None


def resume_point(folder: Path, resume: str | None, fresh: bool, fingerprint: str, device: torch.device,
                 main: bool, epochs: int | None = None) -> ResumePoint:
    """The checkpoint a run continues from: ``resume`` if given (it must match ``fingerprint`` and hold no
    more than ``epochs`` epochs), none with ``fresh``, else the newest loadable one in ``folder`` that
    matches and holds no more than ``epochs`` (a run asked for fewer epochs than a finished one trained is
    that many epochs, not the longer model). A fresh start owns the folder: rank 0 removes older
    checkpoints, which would shadow the new ones, and any half-written temporaries."""
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
        had = bool(list_checkpoints(folder))
        path, ckpt = newest_loadable(folder, device, epochs)
        if had and ckpt is None and not list_checkpoints(folder):
            raise TrainError(f"every checkpoint in {folder} is unreadable (moved aside as *{CORRUPT}, not deleted): "
                             "pass --fresh to start over")
        longer = [p for p in list_checkpoints(folder) if epochs is not None and checkpoint_epoch(p) > epochs]
        if ckpt is None and longer:
            log.warning("not resuming from %s: it holds %d epochs, more than train.epochs=%d; starting fresh",
                        longer[-1], checkpoint_epoch(longer[-1]), epochs)
    if resume and ckpt is not None and epochs is not None and int(ckpt["state"]["epoch"]) > epochs:
        raise TrainError(f"{path} holds {int(ckpt['state']['epoch'])} epochs, more than train.epochs={epochs}: "
                         "raise train.epochs, or pass --fresh to start over")
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
