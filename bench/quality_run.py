"""Quality over training: train on the synthetic kit and evaluate at several epochs (issue 7's quality run).

Each stage extends the same run (more epochs resume from the last checkpoint), then evaluates the
generator against held-out real clips; the table shows how the metrics move beside their real baselines.
CPU:  python bench/quality_run.py --width 16 --epochs 10 30 60 120
GPU:  python bench/quality_run.py --width 64 --epochs 100 300 1000 --per-class 60
Demo: python bench/quality_run.py --demo --epochs 67 85 100 --set train.seed=1   (the demo's kit and settings,
      without DVC, render or register: two such runs with --threads 1 share 2 cores for comparisons)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ("frechet_distance", "ndb_k", "nn_self", "nn_train", "inception_score")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", action="store_true",
                    help="the demo's settings and kit size (specgan.demo); --width, --batch, --n-generated ignored")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, nargs="+", default=[10, 30, 60, 120])
    ap.add_argument("--per-class", type=int, help="kit clips per class (default 20; the demo's with --demo)")
    ap.add_argument("--n-generated", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--workdir", help="keep outputs here (default: a temporary folder)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="specgan-quality-"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")

    import torch

    from specgan.core.config import load_params
    from specgan.data.download import download
    from specgan.data.features import run_features
    from specgan.data.stats import run_stats
    from specgan.data.synth_kit import make_kit
    from specgan.evaluation.evaluate import run_evaluate
    from specgan.training.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.demo:
        from specgan.demo import DEMO_EXTRA_TEST, DEMO_KIT_PER_CLASS, DEMO_RECIPE

        p = load_params(ROOT / "params.yaml", [f"recipe={DEMO_RECIPE}", *args.set])
        per_class, extra_test = args.per_class or DEMO_KIT_PER_CLASS, DEMO_EXTRA_TEST
    else:
        p = load_params(ROOT / "params.yaml", args.set)
        p = replace(p, model=replace(p.model, model_dim=args.width),
                    train=replace(p.train, batch_size=args.batch, checkpoint_every_epochs=10, grid_every_epochs=10),
                    evaluate=replace(p.evaluate, n_generated=args.n_generated, ndb_bins=10))
        per_class, extra_test = args.per_class or 20, 0
    download(str(make_kit(work / "kit.tar.gz", n_per_class=per_class, extra_test=extra_test)), work / "raw",
             p.download)
    run_features(work / "raw", work / "features", p.features, p.data.split)
    run_stats(work / "features", work / "stats.json", p.features.n_frames)
    rows, t0 = [], time.perf_counter()
    for epochs in args.epochs:
        summary = train(work / "features", work / "stats.json", work / "train",
                        replace(p, train=replace(p.train, epochs=epochs)))
        m = run_evaluate(work / "train" / "generator.pt", work / "raw", work / f"eval_{epochs}.json", p.evaluate,
                         p.data.split, p.render, log_to_mlflow=False)
        rows.append({"epochs": epochs, "iterations": summary["iterations"],
                     "seconds": round(time.perf_counter() - t0, 1), **{k: m[k] for k in SHOWN},
                     **{f"{k}_real": m[f"{k}_real"] for k in SHOWN}, "collapse_flag": m["collapse_flag"],
                     "class_share": m.get("class_share", {})})
        print(json.dumps(rows[-1]), flush=True)
    print("| epochs | iterations | s | " + " | ".join(SHOWN) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in SHOWN) + " |")
    for r in rows:
        print(f"| {r['epochs']} | {r['iterations']} | {r['seconds']} | "
              + " | ".join(f"{r[k]:.3g}" for k in SHOWN) + " |")
    print("| real baseline | | | " + " | ".join(f"{rows[-1][k + '_real']:.3g}" for k in SHOWN) + " |")
    print(f"outputs in {work}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
