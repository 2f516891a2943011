"""Griffin-Lim throughput: the project's batched 20-iteration inversion against librosa clip by clip.

Both run fast Griffin-Lim (momentum 0.99, 20 iterations, zero initial phase) on the same padded
129 x 328 magnitudes of procedural drum hits; the spectral convergence of both is reported.
CPU:  python bench/bench_griffinlim.py --clips 256 --librosa-clips 16   (also the project's inversion in
      one batch of all clips, as before its CPU chunks)
GPU:  python bench/bench_griffinlim.py --device cuda --clips 4096   (librosa is skipped when absent)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from specgan.audio import synthesis
from specgan.audio.synthesis import invert, spectral_convergence
from specgan.core.config import load_params
from specgan.data.synth_kit import CLASSES, synth_hit

ROOT = Path(__file__).resolve().parents[1]


def magnitudes(n: int, params) -> torch.Tensor:
    rng = np.random.default_rng(0)
    f = params.features
    clips = np.stack([synth_hit(CLASSES[i % len(CLASSES)], rng, f.sample_rate, 1.0)[: f.clip_samples]
                      for i in range(min(n, 64))])
    x = torch.tensor(clips, dtype=torch.float32)
    mag = torch.stft(x, f.n_fft, f.hop_length, f.win_length, torch.hann_window(f.win_length), center=True,
                     pad_mode="reflect", return_complex=True).abs()
    return mag.repeat((n + mag.shape[0] - 1) // mag.shape[0], 1, 1)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--librosa-clips", type=int, default=16)
    ap.add_argument("--out")
    args = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    f, r = p.features, p.render
    device = torch.device(args.device)
    mag = magnitudes(args.clips, p).to(device)
    padded = torch.nn.functional.pad(mag, (r.pad_frames, r.pad_frames))

    invert(mag[:8], f, r)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    wave = invert(mag, f, r, return_padded=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours_s = time.perf_counter() - t0
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
              "clips": args.clips, "project_clips_per_s": args.clips / ours_s,
              "project_sc": float(spectral_convergence(padded, wave, f).mean())}
    if device.type == "cpu":  # the same inversion in one batch of every clip, as it ran before 2026-12-04
        chunk, synthesis.CPU_CHUNK = synthesis.CPU_CHUNK, args.clips
        t0 = time.perf_counter()
        whole = invert(mag, f, r, return_padded=True)
        synthesis.CPU_CHUNK = chunk
        result.update(one_batch_clips_per_s=args.clips / (time.perf_counter() - t0),
                      one_batch_same_audio=bool(torch.equal(whole, wave)))
    try:
        import librosa
    except ImportError:
        librosa = None
    if librosa is not None and args.librosa_clips:
        n = min(args.librosa_clips, args.clips)
        target = padded[:n].cpu().numpy()
        run = lambda m: librosa.griffinlim(m, n_iter=r.griffin_lim_iters, hop_length=f.hop_length,  # noqa: E731
                                           win_length=f.win_length, n_fft=f.n_fft, window="hann", center=True,
                                           momentum=r.momentum, init=None)
        run(target[0])  # warm-up: the first call pays for imports and caches
        t0 = time.perf_counter()
        ys = [run(m) for m in target]
        lib_s = (time.perf_counter() - t0) / n
        y = torch.tensor(np.stack(ys), dtype=torch.float32)
        result.update(librosa_clips_per_s=1 / lib_s,
                      librosa_sc=float(spectral_convergence(torch.tensor(target), y, f).mean()),
                      speedup=result["project_clips_per_s"] * lib_s)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
