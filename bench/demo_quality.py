"""Demo-sized training without DVC or the registry: the demo's kit and settings (``specgan.demo``), one training
seed, any ``--set`` on top; prints the evaluation against the real baselines as one JSON line.

Cheaper than a whole ``specgan demo`` (no dvc, render or register), so two can share the 2 cores
(``--threads 1`` each) when comparing settings; time whole demos with ``specgan demo`` itself.
python bench/demo_quality.py --seed 1 --set train.dcgan.lr=6e-4 --out /tmp/lr6.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="train.seed")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    ap.add_argument("--per-class", type=int, help="kit clips per class (default: the demo's)")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--workdir", help="keep outputs here (default: a temporary folder)")
    ap.add_argument("--out", help="append the result as a JSON line here")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="specgan-demo-quality-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")

    import torch

    from specgan.config import load_params
    from specgan.demo import DEMO_KIT_PER_CLASS, DEMO_OVERRIDES
    from specgan.download import download
    from specgan.evaluate import run_evaluate
    from specgan.features import run_features
    from specgan.stats import run_stats
    from specgan.synth_kit import make_kit
    from specgan.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    sets = [f"{k}={v}" for k, v in DEMO_OVERRIDES.items()] + [f"train.seed={args.seed}"] + args.set
    p = load_params(ROOT / "params.yaml", sets)
    t0 = time.perf_counter()
    kit = make_kit(work / "kit.tar.gz", n_per_class=args.per_class or DEMO_KIT_PER_CLASS)
    download(str(kit), work / "raw", p.download)
    run_features(work / "raw", work / "features", p.features, p.data.split, workers=1)
    run_stats(work / "features", work / "stats.json", p.features.n_frames)
    t1 = time.perf_counter()
    summary = train(work / "features", work / "stats.json", work / "train", p)
    t2 = time.perf_counter()
    m = run_evaluate(work / "train" / "generator.pt", work / "raw", work / "eval.json", p.evaluate, p.data.split,
                     p.render, log_to_mlflow=False)
    shares = m.get("class_share", {})
    row = {"seed": args.seed, "set": args.set, "iterations": summary["iterations"],
           "train_s": round(t2 - t1, 1), "total_s": round(time.perf_counter() - t0, 1),
           "frechet_ratio": round(m["frechet_distance"] / m["frechet_distance_real"], 2),
           "frechet_distance": round(m["frechet_distance"], 1),
           "frechet_distance_real": round(m["frechet_distance_real"], 1),
           "inception_ratio": round(m["inception_score"] / m["inception_score_real"], 2),
           "collapse_flag": m["collapse_flag"], "memorization_flag": m["memorization_flag"],
           "classes_at_5pct": sum(v >= 0.05 for v in shares.values()),
           "class_share": {k: round(v, 3) for k, v in shares.items()}}
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
