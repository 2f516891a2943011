"""Serving under load: `mlflow models serve` answering many concurrent one-seed requests.

The generator is logged as the project's pyfunc model into a throwaway sqlite store, then served with
`--env-manager local` in each configuration in turn on this machine: the float samples of today's default
answer (the baseline), the base64 WAV answer (`params.format=wav`), and the WAV answer with more uvicorn
workers (each with one torch thread, so that the workers do not fight over the cores). For each: a burst of
`--requests` concurrent requests after a warm-up, their latency percentiles, the burst's throughput and the
bytes of one answer.

    python bench/serve_load.py outputs/train/generator.pt --requests 200 [--json bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = (("float", 1), ("wav", 1), ("wav", 2))  # (answer format, uvicorn workers)


def log_model(generator: Path, store: Path) -> tuple[str, dict]:
    """Log ``generator`` as the pyfunc model; returns its runs:/ URI and the environment that finds it."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    code = ("import mlflow, sys\n"
            "from specgan.core.config import load_params\n"
            "from specgan.registry.mlflow_model import log_generator_model\n"
            f"p = load_params({str(ROOT / 'params.yaml')!r})\n"
            "with mlflow.start_run() as run:\n"
            f"    log_generator_model({str(generator)!r}, p.render, p.synthesize)\n"
            "print(run.info.run_id)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=store, capture_output=True, text=True,
                         check=True)
    return f"runs:/{out.stdout.split()[-1]}/generator", env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(uri: str, env: dict, workers: int, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"} if workers > 1 else {}
    proc = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local", "-h",
                             "127.0.0.1", "-p", str(port), "-w", str(workers)], cwd=cwd,
                            env={**env, **threads, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ping", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the scoring server did not start within 180 s")


def one(url: str, seed: int, fmt: str) -> tuple[float, int, int]:
    body = {"dataframe_split": {"columns": ["seed"], "data": [[seed]]}, "params": {"format": fmt}}
    t0 = time.perf_counter()
    resp = requests.post(url + "/invocations", json=body, timeout=300)
    return time.perf_counter() - t0, resp.status_code, len(resp.content)


def burst(url: str, n: int, fmt: str) -> dict:
    for seed in range(4):  # warm-up: every worker loads the model on its first requests
        one(url, seed, fmt)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda s: one(url, 1000 + s, fmt), range(n)))
    wall = time.perf_counter() - t0
    lat = np.array([r[0] for r in results])
    return {"requests": n, "ok": sum(r[1] == 200 for r in results), "wall_s": round(wall, 2),
            "requests_per_s": round(n / wall, 2), "p50_s": round(float(np.percentile(lat, 50)), 2),
            "p95_s": round(float(np.percentile(lat, 95)), 2), "answer_bytes": results[0][2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("generator", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri, env = log_model(args.generator.resolve(), Path(tmp))
        rows = []
        for fmt, workers in CONFIGS:
            proc, url = serve(uri, env, workers, Path(tmp))
            try:
                rows.append({"format": fmt, "workers": workers, **burst(url, args.requests, fmt)})
            finally:
                proc.terminate()
                proc.wait(30)
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["requests_per_s"]
    print("\n| answer | workers | requests/s | x float, 1 worker | p50 s | p95 s | bytes of one answer |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['format']} | {r['workers']} | {r['requests_per_s']} | {r['requests_per_s'] / base:.2f}x | "
              f"{r['p50_s']} | {r['p95_s']} | {r['answer_bytes']:,} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                         "generator": str(args.generator), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
