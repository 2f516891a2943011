"""The demo's training iteration on the CPU: the project's step against the same step as it was written
before the CPU work of 2026-12-04 (contiguous layout, ``torch.var`` in the minibatch-std feature), same run.

Both run the demo's settings (params.yaml's ``recipes.demo``: width 8, batch 8, minibatch std 4, lazy
R1 every 4 D updates, the weights' moving average) on random data, in alternating blocks so that a
machine whose speed drifts slows both alike. Prints iterations a second for each and their ratio.

    python bench/bench_demo_step.py [--threads 2] [--blocks 6] [--iters 96]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from specgan.core.config import load_params
from specgan.demo import DEMO_RECIPE
from specgan.model import networks as models
from specgan.training.gan import GanState, GanStep, fast_step

ROOT = Path(__file__).resolve().parents[1]
PROJECT_MINIBATCH_STD = models.minibatch_std


def var_minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """The feature as it was: ``torch.var`` over the group (the baseline)."""
    b, c, h, w = x.shape
    g = min(group, b)
    y = x.float().view(b // g, g, c, h, w)
    std = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))
    return std.repeat_interleave(g).view(b, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)


def parse_args(doc: str) -> argparse.Namespace:
    """The options every demo-step benchmark takes (this one and ``bench_cpu_bf16.py``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=6, help="alternating timed blocks of each")
    ap.add_argument("--iters", type=int, default=96, help="iterations per block")
    ap.add_argument("--out", help="also write the results as JSON here")
    return ap.parse_args()


def demo_params(threads: int):
    """The demo recipe's params, with torch on ``threads`` threads."""
    torch.set_num_threads(threads)
    return load_params(ROOT / "params.yaml", [f"recipe={DEMO_RECIPE}"])


def alternate(runs: dict[str, tuple[Callable, torch.Tensor, Callable[[], None]]], batch: int,
              args: argparse.Namespace) -> dict[str, float]:
    """Seconds each run's step took over ``args.blocks`` timed blocks of ``args.iters`` iterations, the runs
    taking turns block by block (a drifting machine slows all alike; block 0 warms up). A run is its step, its
    data and what to set before each of its blocks."""
    seconds = dict.fromkeys(runs, 0.0)
    for block in range(args.blocks + 1):
        for name, (step, real, before) in runs.items():
            before()
            gen = torch.Generator().manual_seed(block)
            t0 = time.perf_counter()
            for i in range(args.iters):
                start = (i % 42) * batch
                step([real[start:start + batch]], gen)
            if block:
                seconds[name] += time.perf_counter() - t0
    return seconds


def report(seconds: dict[str, float], baseline: str, project: str, args: argparse.Namespace) -> None:
    """Iterations a second of each run and their ratio, printed (and written to ``args.out``) as JSON."""
    n = args.blocks * args.iters
    result = {"threads": args.threads, "iterations": n,
              **{f"{name}_it_per_s": round(n / s, 2) for name, s in seconds.items()},
              "speedup": round(seconds[baseline] / seconds[project], 3), "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


def main() -> None:
    args = parse_args(__doc__)
    p = demo_params(args.threads)
    b = p.train.batch_size
    data = torch.rand(42 * b, 1, 128, 128) * 2 - 1
    runs = {}
    for name in ("baseline", "project"):
        state = GanState.create(p.model, p.train, torch.device("cpu"))
        if name == "project":
            runs[name] = (fast_step(state, p.train, p.model.latent_dim),
                          data.contiguous(memory_format=torch.channels_last),
                          lambda: setattr(models, "minibatch_std", PROJECT_MINIBATCH_STD))
        else:
            runs[name] = (GanStep(state, p.train, p.model.latent_dim), data,
                          lambda: setattr(models, "minibatch_std", var_minibatch_std))
    seconds = alternate(runs, b, args)
    models.minibatch_std = PROJECT_MINIBATCH_STD
    report(seconds, "baseline", "project", args)


if __name__ == "__main__":
    main()
