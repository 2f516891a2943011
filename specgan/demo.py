"""The offline demo: the synthetic kit through every stage with `dvc repro`, sized for a laptop CPU.

It builds a small project (dvc.yaml, params.yaml with the demo overrides, data.dvc, the package's
code that the stages list as deps) in a fresh git repository, then runs the real `dvc repro` and
`specgan promote`, so what the demo shows is the main job itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

import specgan
from specgan.core.config import set_key
from specgan.core.errors import SpecganError
from specgan.data.source import set_source
from specgan.data.synth_kit import make_kit

# CPU-sized values (everything else comes from the project's params.yaml). The seed recipe at this size
# stays mode-collapsed for its first thousand iterations (BENCHMARKS.md), so the demo adds two named
# stabilizers: D's minibatch-stddev feature (Karras et al. 2018) and an R1 penalty (Mescheder et al. 2018),
# applied every 4th D step (lazy regularization) and light enough to leave D sharp (gamma 0.3 against 1
# or 3: lower Frechet distances and decay gaps; BENCHMARKS.md, "A lighter R1 penalty"). What decides
# quality at this size is the number of iterations (BENCHMARKS.md, "iterations, not the kit"): batch 8
# runs 1.7x the iterations a second of batch 16 here, and three times the seed's learning rate learns
# faster: 4,200 iterations take about 3.5-4 minutes in all on a fast hour, 5.5 on a slow one
# (BENCHMARKS.md, "Training longer": 4,200 against 2,814 lowered the Frechet distance in five seeds of five).
# A time-envelope term in G's loss (specgan.training.envelope) brings the onset closer to real hits'.
# `specgan demo --set model.minibatch_std=0 --set train.dcgan.r1_weight=0.0 --set train.dcgan.lr=2.0e-4
# --set train.envelope_weight=0 --set train.g_ema=0` is the seed recipe at the demo's size.
DEMO_OVERRIDES: dict[str, object] = {
    "features.shards": 4,
    "model.model_dim": 8,
    "model.minibatch_std": 4,
    "train.dcgan.r1_weight": 0.3,
    "train.dcgan.r1_every": 4,  # lazy R1 (Karras et al. 2020, StyleGAN2): 1.35x the iterations a second here
    "train.dcgan.lr": 6.0e-4,  # three times the seed's 2e-4 (BENCHMARKS.md: it learns the tonal classes sooner)
    "train.envelope_weight": 0.01,  # G matches the data's mean time envelope (BENCHMARKS.md, "Matching the envelope")
    "train.g_ema": 0.998,  # export a moving average of G's weights: more classes at 5%+ (BENCHMARKS.md, "Averaging G")
    "train.epochs": 100,  # 4,200 iterations of batch 8 on 336 clips
    "train.batch_size": 8,
    "train.log_every_iters": 14,
    "train.checkpoint_every_epochs": 10,
    "train.grid_every_epochs": 10,
    "render.n_samples": 8,
    "evaluate.n_generated": 256,
    "evaluate.ndb_bins": 10,
}
DEMO_KIT_PER_CLASS = 60  # 48 a class to train on (336), 6 valid
# ... and 6 + 14 = 20 a class held out (140) for the metrics' real baselines: with 6 a class (42) the Frechet
# baseline's bootstrap standard error exceeded the baseline itself (BENCHMARKS.md)
DEMO_EXTRA_TEST = 14
PROJECT_FILES = ("dvc.yaml", "params.yaml")


def _project_root() -> Path:
    """The folder holding dvc.yaml and params.yaml (a source checkout, or the image's /opt/specgan)."""
    for candidate in (Path.cwd(), Path(specgan.__file__).resolve().parents[1], Path("/opt/specgan")):
        if all((candidate / f).exists() for f in PROJECT_FILES):
            return candidate
    raise SpecganError("cannot find dvc.yaml and params.yaml: run the demo from the project folder")


def apply_overrides(params_path: Path, overrides: dict[str, object]) -> None:
    """Set dotted keys in a params.yaml file."""
    raw = yaml.safe_load(params_path.read_text())
    for key, value in overrides.items():
        set_key(raw, key, value)
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _run(cmd: list[str], cwd: Path, env: dict) -> None:
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SpecganError(f"demo step failed ({proc.returncode}): {' '.join(cmd)}")


def run_demo(workdir: str | Path, overrides: dict[str, object] | None = None,
             kit_per_class: int = DEMO_KIT_PER_CLASS) -> dict:
    """Create ``workdir``, run the pipeline end to end, promote, and return where things are."""
    workdir = Path(workdir).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise SpecganError(f"{workdir} is not empty: choose a new folder for the demo")
    t0 = time.perf_counter()
    root = _project_root()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy(root / name, workdir / name)
    shutil.copytree(Path(specgan.__file__).parent, workdir / "specgan", ignore=shutil.ignore_patterns("__pycache__"))
    kit = make_kit(workdir / "kit" / "drums.tar.gz", n_per_class=kit_per_class, seed=0, extra_test=DEMO_EXTRA_TEST)
    apply_overrides(workdir / "params.yaml", {**DEMO_OVERRIDES, **(overrides or {})})
    set_source(str(kit), root=workdir)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["MLFLOW_TRACKING_URI"] = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workdir / 'mlflow.db'}"
    env["MLFLOW_EXPERIMENT_NAME"] = env.get("MLFLOW_EXPERIMENT_NAME") or "specgan-demo"
    git = ["git", "-c", "user.email=demo@specgan.local", "-c", "user.name=specgan demo"]
    _run(["git", "init", "-q"], workdir, env)
    (workdir / ".gitignore").write_text("/kit/\n/outputs/\n/mlflow.db\n/mlartifacts/\n/mlruns/\n")
    _run([f"{bindir}/dvc", "init", "-q"], workdir, env)
    _run(git + ["add", "-A"], workdir, env)
    _run(git + ["commit", "-qm", "specgan demo"], workdir, env)
    _run([f"{bindir}/dvc", "repro"], workdir, env)
    print(f"$ {bindir}/specgan promote", flush=True)
    promoted = subprocess.run([f"{bindir}/specgan", "promote"], cwd=workdir, env=env, capture_output=True, text=True)
    verdict = (promoted.stdout or promoted.stderr).strip().splitlines()
    registered = yaml.safe_load((workdir / "metrics" / "register.json").read_text())
    result = {"workdir": str(workdir), "gallery": str(workdir / "outputs" / "render" / "index.html"),
              "model": registered["name"], "version": registered["version"], "run_id": registered["run_id"],
              "tracking_uri": env["MLFLOW_TRACKING_URI"], "seconds": round(time.perf_counter() - t0, 1),
              "promoted": promoted.returncode == 0, "verdict": verdict[-1] if verdict else "",
              "metrics": json.loads((workdir / "metrics" / "evaluate.json").read_text())}
    return result
