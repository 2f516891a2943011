"""The one reader and writer of ``generator.pt``, the trained model's file.

It holds what defines the model and nothing a user sets at the time of use: the weights, the model,
feature and normalization configs, the normalization stats, the class names of a conditional model,
provenance and a format version. Render,
evaluate, synthesize and serving settings come from params (or the command line) when they run.
Files are read with ``torch.load(weights_only=True)``: no code runs from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from specgan.core.atomic import save_torch
from specgan.core.errors import SpecganError

FORMAT = "specgan-generator"
VERSION = 2  # 1: the first files, which had no format key and carried the render settings
KEYS = ("state_dict", "model", "features", "normalize", "stats", "provenance", "classes")


class GeneratorFileError(SpecganError):
    """A file that is not a generator of this format version (one line, no traceback)."""


def write_generator(dest: str | Path, state_dict: dict[str, torch.Tensor], model: Any, features: Any,
                    normalize: Any, stats: dict, provenance: dict, classes: tuple[str, ...] = ()) -> Path:
    """Write the generator atomically (configs are the params dataclasses; tensors go to the CPU)."""
    payload = {"format": FORMAT, "format_version": VERSION,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
               "model": dataclasses.asdict(model), "features": dataclasses.asdict(features),
               "normalize": dataclasses.asdict(normalize), "stats": stats, "provenance": dict(provenance),
               "classes": [str(c) for c in classes]}
    dest = Path(dest)
    return save_torch(payload, dest)


def read_generator(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checked payload of a generator file; a missing file is FileNotFoundError, anything else that is
    not a generator of this version is a one-line GeneratorFileError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- whatever torch cannot read safely is not our file
        raise GeneratorFileError(f"{path} is not a generator file from `specgan train` ({type(exc).__name__}; "
                                 "it is never loaded with weights_only=False)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and "state_dict" in payload and "render" in payload:
            raise GeneratorFileError(f"{path} is a generator file of format version 1 (an older specgan); "
                                     "re-export it with `specgan train` (it resumes from its checkpoints)")
        raise GeneratorFileError(f"{path} is not a generator file from `specgan train` (no {FORMAT!r} format key)")
    version = payload.get("format_version")
    if version != VERSION:
        raise GeneratorFileError(f"{path} is a generator file of format version {version}; this specgan reads "
                                 f"version {VERSION}")
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise GeneratorFileError(f"{path} is a damaged generator file (missing {', '.join(missing)})")
    return payload
