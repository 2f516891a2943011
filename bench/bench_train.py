"""Training-step throughput: the project's GanStep against a plain eager fp32 PyTorch step, same run.

Effective TFLOP/s = the FLOPs of one plain dcgan iteration (counted with torch's FlopCounterMode;
1.41 TFLOP at width 64, batch 64) divided by the measured seconds per iteration.

CPU (this machine):  python bench/bench_train.py --width 8 --batch 16 --iters 10
GPU:                 python bench/bench_train.py --device cuda --width 64 --batch 64 --iters 50 --compile
Needs only torch and numpy (no MLflow, DVC, kfp or soundfile), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce
from torch.utils.flop_counter import FlopCounterMode

from specgan.core.config import load_params
from specgan.training.gan import GanState, fast_step

ROOT = Path(__file__).resolve().parents[1]


def plain_networks(width: int, latent: int) -> tuple[nn.Module, nn.Module]:
    """The same architecture written as a textbook would, with no project code."""
    d = width

    class Reshape(nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], 16 * d, 4, 4)

    ups = []
    chans = [16 * d, 8 * d, 4 * d, 2 * d, d, 1]
    for i in range(5):
        ups += [nn.ConvTranspose2d(chans[i], chans[i + 1], 5, 2, 2, output_padding=1),
                nn.Tanh() if i == 4 else nn.ReLU()]
    G = nn.Sequential(nn.Linear(latent, 256 * d), Reshape(), nn.ReLU(), *ups)
    convs = []
    chans = [1, d, 2 * d, 4 * d, 8 * d, 16 * d]
    for i in range(5):
        convs += [nn.Conv2d(chans[i], chans[i + 1], 5, 2, 2), nn.LeakyReLU(0.2)]
    D = nn.Sequential(*convs, nn.Flatten(), nn.Linear(256 * d, 1))
    return G, D


def plain_step(G, D, opt_g, opt_d, real, latent):
    """One eager fp32 dcgan iteration: separate real and fake forwards, D gradients in the G update."""
    n = real.shape[0]
    z = torch.rand(n, latent, device=real.device) * 2 - 1
    fake = G(z).detach()
    zeros, ones = torch.zeros(n, 1, device=real.device), torch.ones(n, 1, device=real.device)
    d_loss = (bce(D(fake), zeros) + bce(D(real), ones)) / 2
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    z = torch.rand(n, latent, device=real.device) * 2 - 1
    g_loss = bce(D(G(z)), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return d_loss.detach(), g_loss.detach()


def timed(fn, iters: int, device: torch.device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the project's networks (CUDA)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    device = torch.device(args.device)
    p = load_params(ROOT / "params.yaml")
    model = replace(p.model, model_dim=args.width)
    train = replace(p.train, batch_size=args.batch, compile=args.compile, device=device.type)
    real = torch.rand(args.batch, 1, 128, 128, device=device) * 2 - 1
    cuda = device.type == "cuda"

    # Baseline: plain eager fp32 (TF32 off).
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    G, D = (m.to(device) for m in plain_networks(args.width, model.latent_dim))
    kw = {"lr": 2e-4, "betas": (0.5, 0.999)}
    opt_g, opt_d = torch.optim.Adam(G.parameters(), **kw), torch.optim.Adam(D.parameters(), **kw)
    with FlopCounterMode(display=False) as counter:
        plain_step(G, D, opt_g, opt_d, real, model.latent_dim)
    flops = counter.get_total_flops()
    base_s = timed(lambda: plain_step(G, D, opt_g, opt_d, real, model.latent_dim), args.iters, device)

    # The project's step with its fastest settings for the device.
    state = GanState.create(model, train, device)
    step = fast_step(state, train, model.latent_dim)
    real = real.contiguous(memory_format=torch.channels_last)  # as the trainer holds its data (train.py)
    gen = torch.Generator(device=device).manual_seed(0)
    proj_s = timed(lambda: step([real], gen), args.iters, device, warmup=5 if args.compile else 3)

    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if cuda else f"{platform.machine()} CPU, {threads} threads"
    result = {"device": name, "width": args.width, "batch": args.batch, "flops_per_iter": flops,
              "baseline_s_per_iter": base_s, "project_s_per_iter": proj_s,
              "baseline_tflops": flops / base_s / 1e12, "project_tflops": flops / proj_s / 1e12,
              "speedup": base_s / proj_s, "torch": torch.__version__, "compile": args.compile}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
