"""Features throughput: the project's sharded parallel step against a plain single-process loop.

Writes N 16 kHz, 1-second WAV files, then times (a) soundfile + numpy STFT file by file, (b) the same
loop in two processes on halves of the files (how far this machine's two cores scale) and (c)
``run_features`` with all cores. Prints clips/s, the ratio and peak RSS of each, and how far the two
disagree on the same files (the plain loop decodes and normalizes in float32, so its near-silent bins move).
Usage: python bench/bench_features.py [N] [ROUNDS]
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def make_clips(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for i in range(n):
        x = np.sin(2 * np.pi * rng.uniform(50, 400) * t) * np.exp(-t / rng.uniform(0.05, 0.5))
        sf.write(folder / f"clip_{i:05d}.wav", (x + 0.01 * rng.standard_normal(t.size)) * 0.8, 16000)


def plain_loop(paths: list[Path]) -> list[np.ndarray]:
    """The baseline: soundfile + numpy STFT, one file at a time, one process; its features, in file order."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)
    idx = np.arange(256)[None, :] + 128 * np.arange(128)[:, None]
    out = []
    for path in paths:
        x, _ = sf.read(path, dtype="float32")
        clip = np.zeros(16384 + 128, dtype=np.float32)
        clip[: min(16384, len(x))] = x[:16384]
        clip[:16384] /= np.abs(clip).max()
        out.append(np.log(np.abs(np.fft.rfft(clip[idx] * window, axis=1)).T + 1e-6).astype(np.float32))
    return out


def _count_plain(paths: list[Path]) -> int:
    return len(plain_loop(paths))


def child(mode: str, folder: str, out: str) -> None:
    from specgan.core.config import load_params
    from specgan.data.features import run_features  # imports stay outside the timed region

    if mode.startswith("plain"):
        # The plain loop runs about 1.5x faster in a process that has imported torch (measured here: mostly
        # in soundfile's reads; the cause is not known). The features step no longer imports torch, so
        # give the baseline that advantage rather than time it in its slower state.
        import torch  # noqa: F401

    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    t0 = time.perf_counter()
    if mode == "plain":
        feats = plain_loop(sorted(Path(folder).glob("*.wav")))
        n = len(feats)
    elif mode == "plain_x2":  # the machine's own scaling: the same loop on each half, in two processes
        from concurrent.futures import ProcessPoolExecutor

        paths = sorted(Path(folder).glob("*.wav"))
        with ProcessPoolExecutor(2) as pool:
            n = sum(pool.map(_count_plain, (paths[: len(paths) // 2], paths[len(paths) // 2:])))
    else:
        n = run_features(folder, out, p.features, "all")["clips"]
    dt = time.perf_counter() - t0
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    if mode == "plain":  # outside the timed region: kept for the parity check
        np.save(Path(out).with_suffix(".npy"), np.stack(feats))
    print(json.dumps({"mode": mode, "clips": n, "seconds": dt, "clips_per_s": n / dt, "peak_rss_mb": rss / 1024}))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        make_clips(folder, n)
        # Rounds alternate the three modes, so a slow spell of a shared machine hits them alike.
        runs: list[dict[str, dict]] = []
        for _ in range(rounds):
            results = {}
            for mode in ("plain", "plain_x2", "project"):
                out = Path(tmp) / mode
                if out.exists():
                    shutil.rmtree(out)
                # Flush what earlier steps wrote (the clips, the other mode's 260 MB of features): the kernel's
                # writeback would otherwise run on these two cores during the next timed run.
                os.sync()
                proc = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), str(out)],
                                      capture_output=True, text=True, check=True)
                results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.append(results)
        from specgan.data.shards import load_features

        err = np.abs(load_features(Path(tmp) / "project") - np.load(Path(tmp) / "plain.npy"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, n={n}, rounds={rounds}")
    ratios, ceilings = [], []
    for i, results in enumerate(runs, 1):
        ratio = results["project"]["clips_per_s"] / results["plain"]["clips_per_s"]
        ratios.append(ratio)
        ceilings.append(results["plain_x2"]["clips_per_s"] / results["plain"]["clips_per_s"])
        line = "  ".join(f"{r['mode']} {r['clips_per_s']:.0f} clips/s (peak RSS {r['peak_rss_mb']:.0f} MB)"
                         for r in results.values())
        print(f"round {i}: {line}  ratio {ratio:.2f}x")
    print(f"ratio project/plain: median {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"the plain loop on both cores (plain_x2/plain): median {statistics.median(ceilings):.2f}x "
          f"(range {min(ceilings):.2f}-{max(ceilings):.2f}): what two processes get from this machine")
    print(f"parity on the same files: max |difference| {err.max():.2g} (log domain), "
          f"{(err < 1e-4).mean():.4%} of values within 1e-4")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
