"""The demo's training iteration on the CPU in float32 against the same step under bf16 autocast, same run.

On CUDA the project trains under bf16 autocast (``train.bf16``); on the CPU it does not yet. This measures what
autocast would buy on a CPU with native bf16 (AVX512-BF16 or AMX), in alternating blocks so that a machine whose
speed drifts slows both alike. Speed only: what bf16 does to the demo's quality is not measured here.

    python bench/bench_cpu_bf16.py [--threads 2] [--blocks 6] [--iters 96] [--out FILE]
"""

from __future__ import annotations

import torch
from bench_demo_step import alternate, demo_params, parse_args, report  # bench/ is the script's folder

from specgan.training.gan import GanState, fast_step


def main() -> None:
    args = parse_args(__doc__)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        raise SystemExit("this CPU has no native bf16: autocast would be emulated, nothing to measure")
    p = demo_params(args.threads)
    b = p.train.batch_size
    data = (torch.rand(42 * b, 1, 128, 128) * 2 - 1).contiguous(memory_format=torch.channels_last)
    runs = {}
    for name in ("float32", "bf16"):
        step = fast_step(GanState.create(p.model, p.train, torch.device("cpu")), p.train, p.model.latent_dim)
        if name == "bf16":
            step.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        runs[name] = (step, data, lambda: None)  # nothing to set between blocks
    report(alternate(runs, b, args), "float32", "bf16", args)


if __name__ == "__main__":
    main()
