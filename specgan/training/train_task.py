"""Training from a Kubeflow task's params artifact, on one device or one process per GPU through torchrun.

``python -m specgan.training.train_task FEATURES STATS OUT PARAMS SUMMARY`` is what torchrun starts on every rank;
:func:`train_in_task` is what the train component calls."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from specgan.core.errors import TrainError


def train_in_task(features: str, stats: str, out: Path, params_path: str, procs: int = 1) -> dict:
    """Train with the sections in ``params_path`` (``load_sections``); with ``procs > 1``, as a torchrun job of
    ``procs`` processes on this node (the DDP path: NCCL on GPUs, gloo on the CPU). Returns rank 0's summary."""
    from specgan.core.pipeline_params import load_sections
    from specgan.training.train import train

    if procs <= 1:
        return train(features, stats, out, load_sections(params_path))
    summary = out.parent / f".{out.name}-summary.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "specgan.training.train_task", features, stats, str(out), params_path, str(summary)]
    print(f"$ {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd).returncode  # the ranks' output goes to the task's log
    if code != 0 or not summary.exists():
        raise TrainError(f"torchrun with {procs} processes exited with code {code}: see the task's log above")
    result = json.loads(summary.read_text())
    summary.unlink()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun rank: train, and rank 0 writes the summary JSON."""
    from specgan.core.atomic import write_json
    from specgan.core.pipeline_params import load_sections
    from specgan.training.distributed import Dist
    from specgan.training.train import train

    features, stats, out, params_path, summary_path = argv if argv is not None else sys.argv[1:]
    result = train(features, stats, out, load_sections(params_path))
    if Dist.from_env().main:
        write_json(summary_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
