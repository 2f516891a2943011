"""The Kubeflow pipeline: compiled YAML, the Dockerfile, a full kfp.local run, parity with `dvc repro`."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from specgan.core.config import get_key, params_from_dict
from specgan.core.pipeline_params import EXPOSED
from specgan.data.shards import load_features
from specgan.data.stats import NormStats
from specgan.data.storage import s3_client
from specgan.demo import apply_overrides
from tests.services import ROOT, copy_project, run_cli, run_dvc, run_kfp, start_mlflow_server
from tests.tiny import NO_RULES, TINY

# Three feature shards: the ParallelFor fans out over more than two tasks.
TINY_PARAMS = {**TINY, "data.split": "all", "features.shards": 3, "registry.model_name": "drums-kfp"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    run_kfp("compile", "--out", str(out), cwd=ROOT,
            env={"AWS_SECRET_ACCESS_KEY": "do-not-leak-3f9a", "MLFLOW_TRACKING_URI": "http://secret-host:5000"})
    text = out.read_text()
    docs = list(yaml.safe_load_all(text))
    return text, {"spec": docs[0], "platform": docs[1]}


def test_compiled_yaml_loads_and_defaults_equal_params(compiled, params):
    _, d = compiled
    inputs = d["spec"]["root"]["inputDefinitions"]["parameters"]
    p = params.to_dict()
    for name, key in EXPOSED.items():
        assert inputs[name]["defaultValue"] == get_key(p, key), name
    assert json.loads(inputs["params_yaml"]["defaultValue"]) == p


def test_compile_set_changes_the_compiled_defaults(tmp_path):
    out = tmp_path / "p.yaml"
    run_kfp("compile", "--out", str(out), "--set", "train.epochs=5", "--set", "render.griffin_lim_iters=60",
            cwd=ROOT)
    inputs = yaml.safe_load(out.read_text().split("\n---\n")[0])["root"]["inputDefinitions"]["parameters"]
    assert inputs["train_epochs"]["defaultValue"] == 5
    assert json.loads(inputs["params_yaml"]["defaultValue"])["render"]["griffin_lim_iters"] == 60


@pytest.mark.parametrize("arg,message", [("train_epochs=five", "--arg train_epochs: expected int, got 'five'"),
                                         ("no_such=1", "--arg no_such: not a pipeline parameter"),
                                         ("train_epochs", "expected NAME=VALUE")])
def test_bad_run_arguments_are_one_line(arg, message, tmp_path):
    proc = run_kfp("run", "--local", "--workdir", str(tmp_path), "--arg", arg, cwd=ROOT, check=False)
    assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_failed_local_run_names_the_task_and_its_error(tmp_path):
    proc = run_kfp("run", "--local", "--workdir", str(tmp_path), "--set", f"data.source={tmp_path}/none.tar.gz",
                   cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^  download-dataset +FAILURE", proc.stdout, re.M), proc.stdout
    assert "DownloadError: dataset source not found" in proc.stdout  # the task's error, once: no local retries
    assert proc.stdout.count("FAILURE") == 1 and re.search(r"^  train-gan +SKIPPED", proc.stdout, re.M)
    assert proc.stderr.strip().splitlines() == [
        f"specgan-kfp run: error: Pipeline 'specgan-drums' finished with status FAILURE. Inner task failed: "
        f"'download-dataset'. (the full log: {tmp_path / 'kfp-local.log'})"]


def _producers(task: dict) -> list[str]:
    return [v["taskOutputArtifact"]["producerTask"] for v in task.get("inputs", {}).get("artifacts", {}).values()
            if "taskOutputArtifact" in v]


def test_cached_tasks_depend_only_on_cached_artifacts_and_the_params_they_read(compiled, params):
    """The backend's cache key includes input artifact ids: a cached task fed by an uncached task's artifact
    would rerun every time. Each task's params artifact holds only the sections it reads."""
    from specgan.core.pipeline_params import TASK_SECTIONS, resolve, section_text

    _, d = compiled
    tasks = d["spec"]["root"]["dag"]["tasks"]
    cached = {n for n, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
    assert "resolve-params" not in cached and "register-generator" not in cached
    loops = {n for n in tasks if n.startswith("for-loop")}  # a DAG node: its inner tasks are cached tasks
    for name, task in tasks.items():
        if name in cached or name in loops:
            for producer in _producers(task):
                assert producer in cached | loops, f"{name} is cached but reads an artifact of uncached {producer}"
    expect = {"download-dataset": "data", "shard-indices": "data", "for-loop-1": "data", "merge-stats": "data",
              "train-gan": "train", "evaluate-generator": "quality", "render-samples": "quality"}
    for name, group in expect.items():
        arts = tasks[name]["inputs"]["artifacts"]
        (param_art,) = [v for k, v in arts.items() if k.endswith("params")]
        writer = tasks[param_art["taskOutputArtifact"]["producerTask"]]
        assert writer["inputs"]["parameters"]["sections"]["taskOutputParameter"] == {
            "producerTask": "resolve-params", "outputParameterKey": group}, name
    # What a run that changes only train.* gives: the same data and quality sections (cache hits), a new
    # train section.
    text = json.dumps(params.to_dict())
    base = yaml.safe_load(resolve(text, {}))
    more = yaml.safe_load(resolve(text, {"train_epochs": params.train.epochs + 1}))
    assert section_text(base, "data") == section_text(more, "data")
    assert section_text(base, "quality") == section_text(more, "quality")
    assert section_text(base, "train") != section_text(more, "train")
    assert set(TASK_SECTIONS["data"]) == {"data", "download", "features"}


def test_retries_back_off_and_tasks_have_limits_from_cluster_yaml(compiled):
    _, d = compiled
    tasks = d["spec"]["root"]["dag"]["tasks"]
    for name in ("download-dataset", "train-gan", "evaluate-generator"):
        policy = tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 2 and policy["backoffDuration"] == "30s"
        assert policy["backoffFactor"] == 2.0 and policy["backoffMaxDuration"] == "600s"
    executors = d["spec"]["deploymentSpec"]["executors"]
    for name, cpu, mem in (("exec-train-gan", 16, 64), ("exec-download-dataset", 4, 16)):
        res = executors[name]["container"]["resources"]
        assert float(res["cpuLimit"]) == cpu and res["resourceMemoryLimit"] == f"{mem}G", (name, res)
        assert float(res["cpuRequest"]) <= cpu


def test_cluster_tasks_require_a_tracking_server_and_local_runs_do_not(compiled, tmp_path, monkeypatch):
    from kfp import dsl

    from components import make_components
    from specgan.core.tracking import REQUIRE_ENV, TrackingError

    _, d = compiled
    executors = d["spec"]["deploymentSpec"]["executors"]
    for name in ("exec-train-gan", "exec-evaluate-generator", "exec-render-samples", "exec-register-generator"):
        env = {e["name"]: e["value"] for e in executors[name]["container"].get("env", [])}
        assert env.get(REQUIRE_ENV) == "1", name
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    evaluate_fn = make_components("unused").evaluate.python_func
    with pytest.raises(TrackingError, match="MLFLOW_TRACKING_URI is not set: on a cluster"):
        evaluate_fn(params=dsl.Artifact(uri=str(tmp_path / "p")), generator=dsl.Model(uri=str(tmp_path / "g")),
                    dataset=dsl.Dataset(uri=str(tmp_path / "d")), metrics=dsl.Metrics(uri=str(tmp_path / "m")),
                    report=dsl.Artifact(uri=str(tmp_path / "r")))
    from pipeline.specgan_pipeline import pipeline_from_files

    assert REQUIRE_ENV in str(pipeline_from_files(ROOT / "params.yaml").pipeline_spec)
    assert REQUIRE_ENV not in str(pipeline_from_files(ROOT / "params.yaml", local=True).pipeline_spec)


def test_core_package_never_imports_kfp():
    import subprocess

    found = subprocess.run(["git", "grep", "-nE", "import kfp|from kfp", "--", "specgan/"], cwd=ROOT,
                           capture_output=True, text=True)
    assert found.returncode == 1 and not found.stdout, found.stdout
    code = "import sys, specgan.cli, specgan.training.train, specgan.evaluation.render; print('kfp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    assert run_cli("kfp", check=False).returncode == 2  # not a specgan command any more


def test_run_against_a_closed_port_is_one_line():
    from tests.services import free_port

    proc = run_kfp("run", "--host", f"http://user:secret@127.0.0.1:{free_port()}", "--namespace", "team-a",
                   cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Kubeflow Pipelines at http://127.0.0.1:" in proc.stderr and "secret" not in proc.stderr


def test_python_m_pipeline_is_the_same_command():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "compile" in proc.stdout and "run" in proc.stdout


def test_run_arguments_are_typed_from_the_signature(params):
    from specgan.core.pipeline_params import typed_arguments

    typed = typed_arguments(["train_epochs=5", "data_source=/x", "model_dim=8", "registry_model_name=123"],
                            params.to_dict())
    assert typed == {"train_epochs": 5, "data_source": "/x", "model_dim": 8, "registry_model_name": "123"}


def test_train_task_is_a_gpu_task_and_shards_fan_out(compiled):
    _, d = compiled
    executors = d["spec"]["deploymentSpec"]["executors"]
    train = executors["exec-train-gan"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] in ("1", 1)
    loop = d["spec"]["root"]["dag"]["tasks"]["for-loop-1"]
    assert "parameterIterator" in loop
    stats_inputs = d["spec"]["root"]["dag"]["tasks"]["merge-stats"]["inputs"]["artifacts"]["shards"]
    assert stats_inputs["taskOutputArtifact"]["producerTask"] == "for-loop-1"  # dsl.Collected fan-in
    k8s = d["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-gan"]
    assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and k8s["emptyDirMounts"][0]["medium"] == "Memory"
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {s["secretName"] for s in k8s["secretAsEnv"]} == {"specgan-s3", "specgan-mlflow"}
    assert k8s["configMapAsEnv"][0]["configMapName"] == "specgan-config"


def test_no_credential_or_environment_value_reaches_the_yaml(compiled):
    text, _ = compiled
    assert "do-not-leak-3f9a" not in text and "secret-host" not in text
    assert not re.search(r"AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S+[A-Za-z0-9]{8}", text.replace("secretKey", ""))


def test_dockerfile_is_complete():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    assert lines[0] == "ARG BASE=python:3.11-slim-bookworm" and lines[1] == "FROM ${BASE}"
    for line in lines:
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src
    assert any("pip install -c constraints.txt -r" in ln for ln in lines)  # the dependencies layer
    assert any("pip install --no-deps -c constraints.txt ." in ln for ln in lines)  # then the project
    assert lines[-2] == 'ENTRYPOINT ["specgan"]'
    cluster = yaml.safe_load((ROOT / "pipeline" / "cluster.yaml").read_text())
    assert cluster["base_image"]


@pytest.fixture(scope="module")
def mlflow_s3(s3_server, tmp_path_factory):
    """A real MLflow server whose artifacts live in moto's S3."""
    s3_client().create_bucket(Bucket="mlflow-artifacts")
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-s3"), "s3://mlflow-artifacts") as url:
        yield url


def _tiny_repo(tmp_path: Path, kit_archive: Path) -> Path:
    repo = copy_project(tmp_path / "repo", extra=("pyproject.toml",))
    shutil.copytree(ROOT / "components", repo / "components", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "pipeline", repo / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    run_cli("set-source", str(kit_archive), cwd=repo)
    apply_overrides(repo / "params.yaml", TINY_PARAMS)
    return repo


def test_checkpoint_volume_is_mounted_on_the_train_task(tmp_path):
    cluster = yaml.safe_load((ROOT / "pipeline" / "cluster.yaml").read_text())
    cluster["train"]["checkpoint_pvc"] = "specgan-checkpoints"
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    out = tmp_path / "pipeline.yaml"
    run_kfp("compile", "--out", str(out), "--cluster", str(tmp_path / "cluster.yaml"), cwd=ROOT)
    spec, platform = yaml.safe_load_all(out.read_text())
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-gan"]
    assert k8s["pvcMount"][0]["mountPath"] == "/checkpoints"
    assert "specgan-checkpoints" in json.dumps(k8s["pvcMount"][0])
    train_inputs = spec["root"]["dag"]["tasks"]["train-gan"]["inputs"]["parameters"]
    assert train_inputs["checkpoint_root"]["runtimeValue"]["constant"] == "/checkpoints"


@pytest.mark.slow
def test_train_component_resumes_from_the_checkpoint_volume(prepared, tmp_path, params, monkeypatch):
    """The component's own function (.python_func): a retried task finds its run's checkpoints."""

    from kfp import dsl

    from components import make_components

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    train_fn = make_components("unused").train.python_func
    feats, stats = prepared
    from specgan.core.pipeline_params import section_text

    tiny = params_from_dict(params.to_dict(), [f"{k}={v}" for k, v in TINY.items()])
    (tmp_path / "params.yaml").write_text(section_text(tiny.to_dict(), "train"))  # what params-sections writes

    def attempt(n: int) -> None:
        train_fn(params=dsl.Artifact(uri=str(tmp_path / "params.yaml")), features=dsl.Dataset(uri=str(feats)),
                 stats=dsl.Artifact(uri=str(stats)), generator=dsl.Model(uri=str(tmp_path / f"gen{n}")),
                 checkpoints=dsl.Artifact(uri=str(tmp_path / f"ckpt{n}")),
                 metrics=dsl.Metrics(uri=str(tmp_path / f"metrics{n}")), checkpoint_root=str(tmp_path / "vol"))

    attempt(1)
    (folder,) = (tmp_path / "vol").iterdir()  # keyed by the train sections' hash, not the run's id (cacheable)
    ckpts = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert ckpts == ["ckpt-e000001.pt", "ckpt-e000002.pt"]
    last = folder / "checkpoints" / "ckpt-e000002.pt"
    stamp = last.stat().st_mtime_ns
    attempt(2)  # the retry resumes at epoch 2 of 2: nothing left to train, the same generator
    a = torch.load(tmp_path / "gen1" / "generator.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "gen2" / "generator.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert last.stat().st_mtime_ns == stamp  # resumed: no epoch was trained again


def test_train_task_runs_one_process_per_gpu_through_torchrun(prepared, tmp_path, params, monkeypatch):
    """accelerator_count 2: the train task is a torchrun job of 2 ranks (gloo on the CPU here), through the
    component's own function; the compiled task asks for 2 GPUs and passes 2 processes."""
    from kfp import dsl

    from components import make_components
    from specgan.core.pipeline_params import section_text

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ddp-task")
    monkeypatch.setenv("SPECGAN_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # wgan_gp: its gradient penalty takes the explicit all-reduce path (the pytorchjob test runs dcgan's DDP).
    tiny = params_from_dict(params.to_dict(), [f"{k}={v}" for k, v in {**TINY, "train.loss": "wgan_gp"}.items()])
    (tmp_path / "params.yaml").write_text(section_text(tiny.to_dict(), "train"))
    feats, stats = prepared
    make_components("unused").train.python_func(
        params=dsl.Artifact(uri=str(tmp_path / "params.yaml")), features=dsl.Dataset(uri=str(feats)),
        stats=dsl.Artifact(uri=str(stats)), generator=dsl.Model(uri=str(tmp_path / "gen")),
        checkpoints=dsl.Artifact(uri=str(tmp_path / "ckpt")), metrics=dsl.Metrics(uri=str(tmp_path / "m")),
        procs_per_node=2)
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["generator.pt"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoints", "generator.pt", "grids"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = mlflow.search_runs(experiment_names=["ddp-task"], output_format="list")
    assert run.data.params["train.world_size"] == "2"

    cluster = yaml.safe_load((ROOT / "pipeline" / "cluster.yaml").read_text())
    cluster["train"]["accelerator_count"] = 2
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    out = tmp_path / "pipeline.yaml"
    run_kfp("compile", "--out", str(out), "--cluster", str(tmp_path / "cluster.yaml"), cwd=ROOT)
    spec = next(yaml.safe_load_all(out.read_text()))
    task = spec["root"]["dag"]["tasks"]["train-gan"]
    assert task["inputs"]["parameters"]["procs_per_node"]["runtimeValue"]["constant"] == 2
    assert spec["deploymentSpec"]["executors"]["exec-train-gan"]["container"]["resources"]["accelerator"][
        "resourceCount"] == "2"


def test_pytorchjob_command_trains_across_two_nodes(prepared, params, tmp_path):
    """`specgan-kfp pytorchjob`: a Master and a Worker with cluster.yaml's GPUs, limits and volume. Its torchrun
    command, with the variables the training operator sets filled in, runs here as two 'nodes' (gloo)."""
    import socket
    import subprocess

    out = tmp_path / "job.yaml"
    run_kfp("pytorchjob", "--nodes", "2", "--data-pvc", "specgan-data", "--out", str(out), cwd=ROOT)
    job = yaml.safe_load(out.read_text())
    assert job["kind"] == "PyTorchJob" and "&id" not in out.read_text()
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 1
    pod = specs["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and "memory" in container["resources"]["limits"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "specgan-data"

    feats, stats = prepared
    work = tmp_path / "workspace"
    work.mkdir()
    (work / "features").symlink_to(feats)
    (work / "stats.json").symlink_to(stats)
    tiny = params_from_dict(params.to_dict(), [f"{k}={v}" for k, v in {**TINY, "train.epochs": 1}.items()])
    (work / "params.yaml").write_text(yaml.safe_dump(tiny.to_dict()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        cmd = [a.replace("$(RANK)", str(rank)).replace("$(MASTER_ADDR)", "127.0.0.1")
               .replace("$(MASTER_PORT)", str(port)).replace("/workspace", str(work)) for a in container["command"]]
        cmd[0] = str(Path(sys.executable).parent / cmd[0])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SPECGAN_DEVICE": "cpu",
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert (work / "train" / "generator.pt").exists()


@pytest.mark.slow
def test_local_sweep_registers_the_best_nests_the_runs_and_matches_dvc_repro(tmp_path, kit_archive, mlflow_s3,
                                                                           monkeypatch):
    """`specgan-kfp run --local --sweep`: the whole pipeline through kfp.local with a two-trial grid, tracking to a
    real MLflow server whose artifacts are in moto's S3. The best trial by the gate's rules is registered as
    challenger, a Markdown table holds both, the trials' MLflow runs are children of one sweep run, and the trial
    with params.yaml's own seed matches `dvc repro` (features, stats and, on the CPU, the generator's weights).
    One local run for both pipelines: the plain one differs only in training one configuration (its wiring is
    checked on the compiled IR above; test_a_failed_local_run_names_the_task_and_its_error runs its start)."""
    repo = _tiny_repo(tmp_path, kit_archive)
    apply_overrides(repo / "params.yaml", {**NO_RULES, "registry.refuse_collapse": True, "features.shards": 2})
    seed = yaml.safe_load((repo / "params.yaml").read_text())["train"]["seed"]
    (repo / "grid.yaml").write_text(f"parallelism: 2\ngrid:\n  train.seed: [{seed}, {seed + 1}]\n")
    env = {"MLFLOW_TRACKING_URI": mlflow_s3, "MLFLOW_EXPERIMENT_NAME": "kfp-test"}
    proc = run_kfp("run", "--local", "--workdir", str(tmp_path / "kfp"), "--sweep", "grid.yaml", cwd=repo, env=env,
                   timeout=900)
    assert "drums-kfp version 1 is @challenger" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    # A readable console: a line per task with its status and time; kfp.local's output in the log file.
    assert len(re.findall(r"^  train-gan +SUCCESS +[\d.]+ s$", proc.stdout, re.M)) == 2, proc.stdout
    assert len(proc.stdout.splitlines()) < 30 and "executor" not in proc.stdout.lower()
    assert "Streamed logs" in (tmp_path / "kfp" / "kfp-local.log").read_text()

    (run_root,) = (tmp_path / "kfp" / "pipeline_root").iterdir()
    (md,) = (run_root / "pick-best").glob("summary*")
    text = md.read_text()
    assert "# Sweep: 2 trials" in text and f"train.seed={seed}" in text and f"train.seed={seed + 1}" in text
    assert text.count("**(registered)**") == 1 and "refused: its evaluation flags mode collapse" in text

    client = mlflow.MlflowClient(mlflow_s3)
    runs = client.search_runs([client.get_experiment_by_name("kfp-test").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("specgan.step") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted({r.data.tags["specgan.trial"] for r in children}) == [f"train.seed={seed}", f"train.seed={seed + 1}"]
    assert len(children) == 4  # per trial: its training run and its evaluation run
    mv = client.get_model_version_by_alias("drums-kfp", "challenger")
    assert mv.version == "1" and "metric.frechet_distance" in mv.tags
    trained = client.get_run(mv.run_id).data.tags.get("specgan.training_run_id")
    assert client.get_run(trained).data.tags["specgan.trial"] in text.split("**(registered)**")[0]
    keys = [o["Key"] for o in s3_client().list_objects_v2(Bucket="mlflow-artifacts")["Contents"]]
    assert any(k.endswith("generator.pt") for k in keys) and any(k.endswith("MLmodel") for k in keys)

    # The same params through `dvc repro` give the same features, stats and (on the CPU) weights.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_dvc("repro", cwd=repo)
    np.testing.assert_array_equal(load_features(run_root / "merge-stats" / "features"),
                                  load_features(repo / "data" / "features"))
    assert NormStats.load(run_root / "merge-stats" / "stats").to_dict()["mean"] == \
        NormStats.load(repo / "data" / "stats.json").to_dict()["mean"]
    trial_files = sorted(run_root.glob("for-loop-*-iteration-*/train-gan/generator/generator.pt"))
    assert len(trial_files) == 2  # the Model artifact of each trial holds generator.pt only
    assert all(sorted(q.name for q in p.parent.iterdir()) == ["generator.pt"] for p in trial_files)
    assert list(run_root.rglob("ckpt-e000002.pt"))  # checkpoints: in their own artifact, apart from the model
    b = torch.load(repo / "outputs" / "train" / "generator.pt", weights_only=True)["state_dict"]
    weights = [torch.load(p, weights_only=True)["state_dict"] for p in trial_files]
    assert sum(all(torch.equal(a[k], b[k]) for k in a) for a in weights) >= 1, trial_files
    assert json.loads((repo / "metrics" / "register.json").read_text())["version"] == "2"

    # On the compiled sweep: inside the loop, nothing cached depends on an artifact of an uncached task.
    out = tmp_path / "sweep.yaml"
    run_kfp("compile", "--out", str(out), "--sweep", str(repo / "grid.yaml"), cwd=ROOT)
    spec = next(yaml.safe_load_all(out.read_text()))
    (name,) = [n for n, comp in spec["components"].items() if "train-gan" in comp.get("dag", {}).get("tasks", {})]
    loop = spec["components"][name]["dag"]["tasks"]
    assert loop["train-gan"]["inputs"]["artifacts"]["params"]["taskOutputArtifact"]["producerTask"] == "trial-params"
    assert "taskOutputArtifact" not in json.dumps(loop["trial-params"].get("inputs", {}))
    assert spec["root"]["dag"]["tasks"][name.removeprefix("comp-")]["iteratorPolicy"]["parallelismLimit"] == 2


@pytest.mark.parametrize("grid,message", [
    ("grid:\n  data.source: [a, b]\n", "grid key data.source: only model.* and train.* can be swept"),
    ("grid:\n  train.epochs: [0]\n", "train.epochs")])
def test_a_bad_sweep_grid_is_one_line(grid, message, tmp_path):
    (tmp_path / "grid.yaml").write_text(grid)
    proc = run_kfp("run", "--local", "--workdir", str(tmp_path / "w"), "--sweep", str(tmp_path / "grid.yaml"),
                   cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 1 and message in proc.stderr, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
