"""The demo's training iteration on the CPU in float32 against the same step under bf16 autocast, same run.

On CUDA the project trains under bf16 autocast (``train.bf16``); on the CPU it does not yet. This measures what
autocast would buy on a CPU with native bf16 (AVX512-BF16 or AMX), in alternating blocks so that a machine whose
speed drifts slows both alike. Speed only: what bf16 does to the demo's quality is not measured here.

    python bench/bench_cpu_bf16.py [--threads 2] [--blocks 6] [--iters 96] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from specgan.core.config import load_params
from specgan.demo import DEMO_RECIPE
from specgan.training.gan import GanState, fast_step

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=6, help="alternating timed blocks of each")
    ap.add_argument("--iters", type=int, default=96, help="iterations per block")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit("this CPU has no native bf16: autocast would be emulated, nothing to measure")
    torch.set_num_threads(args.threads)
    p = load_params(ROOT / "params.yaml", [f"recipe={DEMO_RECIPE}"])
    b = p.train.batch_size
    data = (torch.rand(42 * b, 1, 128, 128) * 2 - 1).contiguous(memory_format=torch.channels_last)
    steps = {}
    for name in ("float32", "bf16"):
        step = fast_step(GanState.create(p.model, p.train, torch.device("cpu")), p.train, p.model.latent_dim)
        if name == "bf16":
            step.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        steps[name] = step
    seconds = dict.fromkeys(steps, 0.0)
    for block in range(args.blocks + 1):  # block 0 warms up
        for name, step in steps.items():
            gen = torch.Generator().manual_seed(block)
            t0 = time.perf_counter()
            for i in range(args.iters):
                start = (i % 42) * b
                step([data[start:start + b]], gen)
            if block:
                seconds[name] += time.perf_counter() - t0
    n = args.blocks * args.iters
    result = {"threads": args.threads, "iterations": n,
              **{f"{name}_it_per_s": round(n / s, 2) for name, s in seconds.items()},
              "speedup": round(seconds["float32"] / seconds["bf16"], 3), "torch": torch.__version__}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
