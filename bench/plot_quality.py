"""Time to quality: plot and tabulate `bench/quality_run.py --out` results of several configurations.

python bench/plot_quality.py --run "seed recipe=/tmp/a.json" --run "demo settings=/tmp/f.json" --out docs/q.png
Prints a Markdown table (metrics beside their real baselines at every stage) and writes one figure with
the Frechet distance, inception score and nn_self against iterations and against wall time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("frechet_distance", "Frechet distance (lower is better)"),
          ("inception_score", "inception score (higher is better)"),
          ("nn_self", "nn_self (below half the real: collapse)"))


def table(runs: dict[str, list[dict]]) -> str:
    lines = ["| configuration | epochs | iterations | seconds | frechet_distance | inception_score | nn_self | "
             "collapse | classes >= 5% |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in runs.items():
        for r in rows:
            classes = sum(v >= 0.05 for v in r.get("class_share", {}).values())
            lines.append(f"| {name} | {r['epochs']} | {r['iterations']} | {r['seconds']:.0f} | "
                         f"{r['frechet_distance']:.0f} (real {r['frechet_distance_real']:.0f}) | "
                         f"{r['inception_score']:.2f} (real {r['inception_score_real']:.2f}) | "
                         f"{r['nn_self']:.2f} (real {r['nn_self_real']:.2f}) | "
                         f"{'yes' if r['collapse_flag'] else 'no'} | {classes} of {len(r.get('class_share', {}))} |")
    return "\n".join(lines)


def figure(runs: dict[str, list[dict]], dest: Path) -> None:
    fig, axes = plt.subplots(2, len(PANELS), figsize=(4.2 * len(PANELS), 6.5), squeeze=False)
    for col, (key, label) in enumerate(PANELS):
        for row, x_key in enumerate(("iterations", "seconds")):
            ax = axes[row, col]
            for name, rows in runs.items():
                ax.plot([r[x_key] for r in rows], [r[key] for r in rows], marker="o", label=name)
            real = next(iter(runs.values()))[-1][key + "_real"]
            ax.axhline(real, color="grey", linestyle="--", linewidth=1, label="real baseline")
            ax.set_xlabel("iterations" if x_key == "iterations" else "wall time (s)")
            ax.set_title(label, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="NAME=JSON")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()
    runs = {name: json.loads(Path(path).read_text()) for name, path in (r.split("=", 1) for r in args.run)}
    figure(runs, Path(args.out))
    print(table(runs))


if __name__ == "__main__":
    main()
