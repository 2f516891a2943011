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
from specgan.core.recipes import write_recipe
from specgan.core.yaml_text import replace_scalar
from specgan.data.audio_files import list_audio
from specgan.data.labelled import arrange_labelled
from specgan.data.source import set_source
from specgan.data.synth_kit import CLASSES, make_kit, split_for

DEMO_RECIPE = "demo"  # params.yaml's recipes.demo: the stable recipe at CPU size, class-conditional (BENCHMARKS.md)
DEMO_REAL_RECIPE = "demo_real"  # recipes.demo_real, for --source: demo without the envelope term, D's groups by class
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
    """Set dotted keys in a params.yaml file (comments and layout kept); ``recipe`` first, as --set does."""
    text = params_path.read_text()
    if "recipe" in overrides:
        write_recipe(params_path, str(overrides["recipe"]))
        text = params_path.read_text()
    raw = yaml.safe_load(text)
    for key, value in overrides.items():
        if key != "recipe":
            set_key(raw, key, value)  # a one-line error for an unknown key
            text = replace_scalar(text, key, value)
    params_path.write_text(text)


DEMO_ITERATIONS_PER_S = 20.0  # the demo recipe on 2 cores (BENCHMARKS.md, "The offline demo"): for the estimate
DEMO_OTHER_STAGES_S = 70.0  # download, features, stats, evaluate, render, register and promote together


def same_iterations(params_path: Path, recipe_clips: int, clips: int) -> int:
    """The epochs that give ``clips`` training clips as many iterations as the recipe's epochs give
    ``recipe_clips`` (the demo's kit): a folder of real one-shots trains for the demo's time, small or large."""
    from specgan.core.config import load_params

    t = load_params(params_path).train
    batches = lambda n: max(1, n // t.batch_size // t.optim.d_steps)  # noqa: E731
    return max(1, round(t.epochs * batches(recipe_clips) / batches(clips)))


SCALED_WITH_EPOCHS = ("train.checkpoint_every_epochs", "train.grid_every_epochs")


def folder_schedule(params_path: Path, recipe_clips: int, clips: int, given: dict[str, object]) -> dict:
    """A folder's training schedule: the recipe's iterations (``same_iterations``), and its checkpoints and
    grids as many iterations apart as on the kit. A grid and a checkpoint cost about 0.7 s on 2 cores: every
    10 epochs of a 70-clip folder that was 52 of them and 20% of the training's time. A key in ``given``
    (the user's --set) is kept as given."""
    from specgan.core.config import load_params

    t = load_params(params_path).train
    epochs = int(given.get("train.epochs") or same_iterations(params_path, recipe_clips, clips))
    factor = epochs / t.epochs
    out: dict[str, object] = {"train.epochs": epochs}
    for key in SCALED_WITH_EPOCHS:
        out[key] = max(1, round(getattr(t, key.split(".")[1]) * factor))
    return {k: v for k, v in out.items() if k not in given}


def expected_time(params_path: Path, clips: int) -> str:
    """The demo's plan in one line: clips, iterations and about how long it takes on a 2-core CPU."""
    from specgan.core.config import load_params

    p = load_params(params_path)
    iterations = p.train.epochs * (clips // p.train.batch_size // p.train.optim.d_steps)
    minutes = (iterations * (p.model.model_dim / 8) ** 2 / DEMO_ITERATIONS_PER_S + DEMO_OTHER_STAGES_S) / 60
    return (f"demo: recipe {p.recipe}, {clips} training clips, {iterations:,} iterations: about {minutes:.0f} "
            "minutes on 2 CPU cores (the gallery and the gate's verdict come at the end)")


def _experiment_id(uri: str, name: str) -> str:
    """The MLflow experiment's id, for the URL of its runs page (MLflow 3's UI otherwise opens on its GenAI
    overview)."""
    import mlflow

    experiment = mlflow.MlflowClient(uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else "0"


def _run(cmd: list[str], cwd: Path, env: dict) -> None:
    print(f"$ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SpecganError(f"demo step failed ({proc.returncode}): {' '.join(cmd)}")


def run_demo(workdir: str | Path, overrides: dict[str, object] | None = None,
             kit_per_class: int = DEMO_KIT_PER_CLASS, source: str | Path | None = None) -> dict:
    """Create ``workdir``, run the pipeline end to end, promote, and return where things are. ``source``: a
    folder of real one-shots labelled by folder (or ``hydrogen``) instead of the procedural kit."""
    workdir = Path(workdir).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise SpecganError(f"{workdir} is not empty: choose a new folder for the demo")
    t0 = time.perf_counter()
    root = _project_root()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy(root / name, workdir / name)
    shutil.copytree(Path(specgan.__file__).parent, workdir / "specgan", ignore=shutil.ignore_patterns("__pycache__"))
    write_recipe(workdir / "params.yaml", DEMO_RECIPE if source is None else DEMO_REAL_RECIPE)
    if source is None:
        kit = make_kit(workdir / "kit" / "drums.tar.gz", n_per_class=kit_per_class, seed=0,
                       extra_test=DEMO_EXTRA_TEST)
    kit_clips = len(CLASSES) * sum(split_for(k, kit_per_class) == "train" for k in range(kit_per_class))
    clips = kit_clips
    if source is not None:
        kit = arrange_labelled(source, workdir / "kit" / "drums")
        clips = len(list_audio(kit, "train"))
        overrides = {"data.labels": "folder", **(overrides or {})}
        # the recipe's iterations on the kit, and its checkpoints and grids, whatever the folder's size
        overrides.update(folder_schedule(workdir / "params.yaml", kit_clips, clips, overrides))
    apply_overrides(workdir / "params.yaml", overrides or {})
    set_source(str(kit), root=workdir)
    print(expected_time(workdir / "params.yaml", clips), flush=True)
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
    _run(git + ["add", "-A"], workdir, env)  # the run's lock, params and metrics: `dvc metrics diff`, `dvc exp run`
    _run(git + ["commit", "-qm", "specgan demo: first run"], workdir, env)
    print(f"$ {bindir}/specgan promote", flush=True)
    promoted = subprocess.run([f"{bindir}/specgan", "promote"], cwd=workdir, env=env, capture_output=True, text=True)
    verdict = [line.split("error: refused: ", 1)[-1].removeprefix("promoted: ")
               for line in (promoted.stdout or promoted.stderr).strip().splitlines()]
    registered = yaml.safe_load((workdir / "metrics" / "register.json").read_text())
    result = {"workdir": str(workdir), "gallery": str(workdir / "outputs" / "render" / "index.html"),
              "model": registered["name"], "version": registered["version"], "run_id": registered["run_id"],
              "tracking_uri": env["MLFLOW_TRACKING_URI"], "seconds": round(time.perf_counter() - t0, 1),
              "experiment_id": _experiment_id(env["MLFLOW_TRACKING_URI"], env["MLFLOW_EXPERIMENT_NAME"]),
              "promoted": promoted.returncode == 0, "verdict": verdict[-1] if verdict else "",
              "metrics": json.loads((workdir / "metrics" / "evaluate.json").read_text())}
    return result
