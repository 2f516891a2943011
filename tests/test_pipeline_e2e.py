"""The whole pipeline with the real DVC: repro, a param change reruns only what depends on it, a
`dvc exp run -S` experiment lands in MLflow beside the baseline, and `specgan promote` keeps the better one."""

from __future__ import annotations

import json
import re
import subprocess

import mlflow
import pytest
import torch
import yaml

from specgan.core.config import load_params
from specgan.demo import apply_overrides
from tests.browser import CHROMIUM, probe
from tests.services import ROOT, copy_project, run_cli, run_dvc
from tests.tiny import NO_RULES, TINY, sets

pytestmark = pytest.mark.slow

E2E = {**TINY, **NO_RULES, "registry.model_name": "drums-e2e"}
STAGES = ["download", "features", "stats", "train", "render", "evaluate", "register"]


def ran(stdout: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in stdout]


def test_repro_rerun_experiments_and_promotion(tmp_path, kit_archive, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "e2e")
    repo = copy_project(tmp_path / "repo")
    run_cli("set-source", str(kit_archive), cwd=repo)
    apply_overrides(repo / "params.yaml", E2E)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git + ["commit", "-qam", "tiny"], cwd=repo, check=True)

    first = run_dvc("repro", cwd=repo)
    assert ran(first.stdout) == STAGES
    for name in ("features", "train", "evaluate", "register"):
        assert json.loads((repo / "metrics" / f"{name}.json").read_text())
    assert (repo / "outputs" / "render" / "index.html").exists()
    assert "up to date" in run_dvc("status", cwd=repo).stdout
    assert "train_log.png" in run_dvc("plots", "show", "--json", cwd=repo).stdout  # an image: offline
    run_dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=repo)
    if CHROMIUM:  # the page `dvc plots show` writes draws its image with nothing fetched
        seen = probe(tmp_path / "plots" / "index.html")
        assert seen["external"] == [] and [i["width"] > 300 for i in seen["images"]] == [True]

    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "first run"], cwd=repo, check=True)  # experiments start from a commit

    # The baseline's version, then an experiment's: the first becomes champion, the second only if better.
    versions = [json.loads((repo / "metrics" / "register.json").read_text())["version"]]
    run_cli("promote", cwd=repo, check=False)
    exp = run_dvc("exp", "run", "-S", "train.seed=11", cwd=repo)
    assert ran(exp.stdout) == ["train", "render", "evaluate", "register"]  # data stages: from the cache
    versions.append(json.loads((repo / "metrics" / "register.json").read_text())["version"])
    assert versions[1] != versions[0]
    run_cli("promote", cwd=repo, check=False)
    shown = run_dvc("exp", "show", "--json", cwd=repo).stdout
    assert "frechet_distance" in shown

    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("e2e")
    every = client.search_runs([exp.experiment_id])
    runs = {r.data.params["train.seed"]: r for r in every if "train.seed" in r.data.params}
    evals = {r.data.tags["specgan.training_run_id"]: r for r in every if r.data.tags.get("specgan.step") == "evaluate"}
    base_seed = str(yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["seed"])
    assert {base_seed, "11"} <= set(runs)
    for seed in (base_seed, "11"):  # the evaluation is its own run, linked to its training run
        assert "loss/d" in runs[seed].data.metrics and "quality/frechet_distance" not in runs[seed].data.metrics
        assert "quality/frechet_distance" in evals[runs[seed].info.run_id].data.metrics
    fd = {v: float(client.get_model_version("drums-e2e", v).tags["metric.frechet_distance"]) for v in versions}
    champion = client.get_model_version_by_alias("drums-e2e", "champion").version
    assert champion == min(fd, key=fd.get)
    # dvc exp run works in the workspace: it holds the last experiment, as DVC documents.
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["seed"] == 11
    # The training run is named after its recipe, and the label says what differs from it.
    assert runs["11"].info.run_name.startswith("train stable, ") and "(seed 11)" in runs["11"].info.run_name
    assert runs["11"].data.params["recipe"].startswith("stable, ")

    # Fewer epochs than the finished run holds: the experiment is that many epochs, in a run of its own,
    # exactly the model a 1-epoch run trains (not the longer run's generator under a 1-epoch label).
    epochs = yaml.safe_load((repo / "params.yaml").read_text())["train"]["epochs"]
    assert epochs == 2
    short = run_dvc("exp", "run", "-S", "train.epochs=1", cwd=repo)
    assert "resuming from" in short.stdout + short.stderr and "ckpt-e000001.pt" in short.stdout + short.stderr
    trained = json.loads((repo / "metrics" / "train.json").read_text())
    assert trained["epochs"] == 1 and trained["run_id"] != runs["11"].info.run_id
    shown = json.loads(run_dvc("exp", "show", "--json", cwd=repo).stdout)
    assert '"epochs": 1' in json.dumps(shown)


def test_demo_command_runs_every_stage_and_prints_where_things_are(tmp_path):
    work = tmp_path / "demo"
    proc = run_cli("demo", "--workdir", str(work), "--kit-per-class", "6",
                   *sets({**E2E, "registry.model_name": "drums-demo"}), cwd=tmp_path,
                   env={"MLFLOW_TRACKING_URI": ""})
    assert f"gallery:  {work}/outputs/render/index.html" in proc.stdout
    assert "drums-demo version 1 (@challenger, promoted to @champion)" in proc.stdout
    assert "gate:     PASSES" in proc.stdout and "quality:  frechet_distance" in proc.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{work}/mlflow.db" in proc.stdout
    assert "then open http://127.0.0.1:5000/#/experiments/1/runs" in proc.stdout
    assert "hit timing against held-out clips: attack" in proc.stdout
    # Comparing runs with DVC's own commands works in the demo folder: its first run is committed.
    diff = run_dvc("metrics", "diff", cwd=work)
    assert "failed to load" not in diff.stdout + diff.stderr
    readme = (ROOT / "README.md").read_text()
    keep = re.search(r"dvc exp show --drop '\.\*' --keep '(.*?)'", readme).group(1)
    header = run_dvc("exp", "show", "--csv", "--drop", ".*", "--keep", keep, cwd=work).stdout.splitlines()[0]
    columns = header.split(",")
    assert {"recipe", "train.seed", "frechet_distance", "inception_score"} <= set(columns)
    assert len(columns) <= 14  # fits a terminal (the plain `dvc exp show` has about 200)
    # No silent minute: the plan and its time up front, and each long step says what it is doing.
    assert "demo: recipe demo, " in proc.stdout and "minutes on 2 CPU cores" in proc.stdout
    assert "evaluate: metrics on " in proc.stdout + proc.stderr
    page = (work / "outputs" / "render" / "index.html").read_text()
    assert "<td>decay_time_w1</td>" in page and "<td>attack_time_w1</td>" in page
    # the demo trains with its own stabilizers: the exported generator is G's weights' moving average
    demo = load_params(ROOT / "params.yaml", ["recipe=demo"])
    assert yaml.safe_load((work / "params.yaml").read_text())["train"]["g_ema"] == demo.train.g_ema > 0
    assert load_params(work / "params.yaml").recipe.startswith("demo, ")  # the recipe and the test's changes
    newest = sorted((work / "outputs" / "train" / "checkpoints").glob("ckpt-*.pt"))[-1]
    assert "generator_ema" in torch.load(newest, map_location="cpu", weights_only=False)["state"]
    client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
    assert str(client.get_model_version_by_alias("drums-demo", "champion").version) == "1"
    again = run_cli("demo", "--workdir", str(work), check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr
