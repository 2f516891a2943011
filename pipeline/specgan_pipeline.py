"""The Kubeflow pipeline: download, a ParallelFor over feature shards, stats (fan-in), GPU training,
evaluate, register, render; or, with a sweep grid, a ParallelFor of trials (train and evaluate each) and the
best registered. Run parameters take their defaults from params.yaml when it is built."""


import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kfp import dsl, kubernetes

from components import make_components
from specgan.core.config import Params, get_key, load_params
from specgan.core.pipeline_params import EXPOSED, TASK_SECTIONS
from specgan.core.tracking import REQUIRE_ENV
from specgan.registry.sweep import Sweep, trials

PIPELINE_NAME = "specgan-drums"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLUSTER = Path(__file__).with_name("cluster.yaml")
# What a task's environment takes from the config map and the secrets (never literals in the YAML).
CONFIG_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "MLFLOW_EXPERIMENT_NAME")
S3_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_SECRET_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CHECKPOINT_MOUNT = "/checkpoints"


@dataclass(frozen=True)
class Cluster:
    """pipeline/cluster.yaml: image, GPU task resources and scheduling, secrets and config map names."""

    base_image: str
    train: dict[str, Any] = field(default_factory=dict)
    cpu_task: dict[str, Any] = field(default_factory=dict)
    retry: dict[str, Any] = field(default_factory=dict)  # count, backoff, factor, max_backoff
    secrets: dict[str, str] = field(default_factory=dict)
    config_map: str = ""
    require_tracking: bool = True  # tracking tasks fail at start without a reachable MLFLOW_TRACKING_URI

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CLUSTER) -> "Cluster":
        raw = yaml.safe_load(Path(path).read_text())
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**raw)


def _environment(task: dsl.PipelineTask, cluster: Cluster) -> None:
    """MLflow and S3 settings from the config map and secrets. A missing config map does not stop the pod, but
    with ``require_tracking`` every tracking task then fails at start in one line instead of tracking into a
    file that vanishes with its pod."""
    if cluster.require_tracking:
        task.set_env_variable(REQUIRE_ENV, "1")
    if cluster.config_map:
        kubernetes.use_config_map_as_env(task, cluster.config_map, {k: k for k in CONFIG_ENV}, optional=True)
    if cluster.secrets.get("s3_credentials"):
        kubernetes.use_secret_as_env(task, cluster.secrets["s3_credentials"], {k: k for k in S3_SECRET_ENV},
                                     optional=True)
    if cluster.secrets.get("mlflow_credentials"):
        kubernetes.use_secret_as_env(task, cluster.secrets["mlflow_credentials"],
                                     {k: k for k in MLFLOW_SECRET_ENV}, optional=True)


def _cpu(task: dsl.PipelineTask, cluster: Cluster) -> dsl.PipelineTask:
    _environment(task, cluster)
    _resources(task, cluster.cpu_task)
    _retry(task, cluster)
    return task


def _resources(task: dsl.PipelineTask, settings: dict[str, Any]) -> None:
    """Requests and limits (namespaces whose quota covers limits refuse pods without them)."""
    for key, setter in (("cpu_request", task.set_cpu_request), ("cpu_limit", task.set_cpu_limit),
                        ("memory_request", task.set_memory_request), ("memory_limit", task.set_memory_limit)):
        if settings.get(key):
            setter(str(settings[key]))


def _retry(task: dsl.PipelineTask, cluster: Cluster) -> None:
    """Retries with exponential backoff: ``backoff``, then times ``factor`` each attempt, up to ``max_backoff``."""
    r = cluster.retry
    if r.get("count"):
        task.set_retry(int(r["count"]), backoff_duration=str(r.get("backoff", "30s")),
                       backoff_factor=float(r.get("factor", 2.0)),
                       backoff_max_duration=str(r.get("max_backoff", "3600s")))


def _gpu(task: dsl.PipelineTask, cluster: Cluster) -> dsl.PipelineTask:
    _environment(task, cluster)
    t = cluster.train
    task.set_accelerator_type(t.get("accelerator_type", "nvidia.com/gpu"))
    task.set_accelerator_limit(int(t.get("accelerator_count", 1)))
    _resources(task, t)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=t.get("shm_size"))
    for label, value in (t.get("node_selector") or {}).items():
        kubernetes.add_node_selector(task, label, value)
    for tol in t.get("tolerations") or []:
        kubernetes.add_toleration(task, **tol)
    _retry(task, cluster)
    return task


def build_pipeline(params: Params, cluster: Cluster, sweep: Sweep | None = None):
    """The pipeline function, its parameter defaults taken from ``params`` now. With ``sweep``, the sweep
    pipeline: one trial per combination of the grid (a ParallelFor of at most ``sweep.parallelism`` at once),
    each trained and evaluated; the best by the promotion rules is registered and rendered.

    ``params_yaml`` carries the whole of params.yaml as one line of JSON (valid YAML): the compiler
    copies defaults into a comment header, where a multi-line string would break the YAML."""
    c = make_components(cluster.base_image)
    d = params.to_dict()
    params_text = json.dumps(d, sort_keys=False)
    default = {name: get_key(d, key) for name, key in EXPOSED.items()}
    name = PIPELINE_NAME + ("-sweep" if sweep else "")
    sweep_text = sweep.to_json() if sweep else ""
    if sweep:
        trials(d, sweep.grid)  # a bad value fails here, in one line, before anything runs (the task checks again)

    @dsl.pipeline(name=name, description="SpecGAN drum synthesis: data to a registered generator")
    def specgan_pipeline(
        data_source: str = default["data_source"], data_sha256: str = default["data_sha256"],
        data_split: str = default["data_split"], feature_shards: int = default["feature_shards"],
        model_dim: int = default["model_dim"], train_loss: str = default["train_loss"],
        train_epochs: int = default["train_epochs"], train_batch_size: int = default["train_batch_size"],
        train_seed: int = default["train_seed"], render_n_samples: int = default["render_n_samples"],
        evaluate_n_generated: int = default["evaluate_n_generated"],
        registry_model_name: str = default["registry_model_name"], params_yaml: str = params_text,
    ) -> str:
        resolved = c.resolve(
            params_yaml=params_yaml, data_source=data_source, data_sha256=data_sha256, data_split=data_split,
            feature_shards=feature_shards, model_dim=model_dim, train_loss=train_loss, train_epochs=train_epochs,
            train_batch_size=train_batch_size, train_seed=train_seed, render_n_samples=render_n_samples,
            evaluate_n_generated=evaluate_n_generated, registry_model_name=registry_model_name)
        resolved.set_caching_options(False)  # cheap, and its outputs must follow the run's parameters
        # One cached params artifact per group of tasks, holding only the sections they read: the cache key
        # of every task below depends on those sections alone (the backend keys on input artifact ids).
        group = {name: c.sections(sections=resolved.outputs[name]).set_display_name(f"params: {name}").outputs[
            "params"] for name in TASK_SECTIONS}
        data = _cpu(c.download(params=group["data"]), cluster).set_display_name("download")
        indices = c.shards(params=group["data"])
        with dsl.ParallelFor(items=indices.output, name="feature-shards") as index:
            shard = _cpu(c.features(params=group["data"], dataset=data.outputs["dataset"], shard_index=index),
                         cluster)
            shard.set_display_name("features shard")
        stats = _cpu(c.stats(params=group["data"], dataset=data.outputs["dataset"],
                             shards=dsl.Collected(shard.outputs["shard"])), cluster).set_display_name("stats")
        if sweep is None:
            trained = _train(c, cluster, group["train"], stats)
            evaluated = _cpu(c.evaluate(params=group["quality"], generator=trained.outputs["generator"],
                                        dataset=data.outputs["dataset"]), cluster).set_display_name("evaluate")
            generator, report = trained.outputs["generator"], evaluated.outputs["report"]
            registered = _cpu(c.register(params=resolved.outputs["params"], generator=generator, report=report),
                              cluster).set_display_name("register")
        else:
            # The trial list is a parameter (not an artifact) of the loop: each trial's cached params artifact
            # then depends on its own values only, and so do its training and evaluation.
            grid = c.trials(params=resolved.outputs["params"], sweep_json=sweep_text).set_display_name("trials")
            grid.set_caching_options(False)
            with dsl.ParallelFor(items=grid.output, name="trials", parallelism=sweep.parallelism) as trial:
                trial_params = c.trial_params(trial=trial).set_display_name("params: trial")
                trained = _train(c, cluster, trial_params.outputs["params"], stats)
                evaluated = _cpu(c.evaluate(params=group["quality"], generator=trained.outputs["generator"],
                                            dataset=data.outputs["dataset"]), cluster).set_display_name("evaluate")
            registered = _cpu(c.pick(params=resolved.outputs["params"],
                                     reports=dsl.Collected(evaluated.outputs["report"]),
                                     generators=dsl.Collected(trained.outputs["generator"])),
                              cluster).set_display_name("pick the best and register")
            generator, report = registered.outputs["best"], registered.outputs["best_report"]
        registered.set_caching_options(False)  # registering is a side effect: never served from cache
        _cpu(c.render(params=group["quality"], generator=generator, dataset=data.outputs["dataset"], report=report),
             cluster).set_display_name("render")
        return registered.outputs["version"]

    return specgan_pipeline


def _train(c, cluster: Cluster, params_artifact, stats: dsl.PipelineTask) -> dsl.PipelineTask:
    """The GPU train task (checkpoints on the volume when cluster.yaml names one)."""
    pvc = cluster.train.get("checkpoint_pvc")
    trained = _gpu(c.train(params=params_artifact, features=stats.outputs["features"],
                           stats=stats.outputs["stats"], checkpoint_root=CHECKPOINT_MOUNT if pvc else "",
                           procs_per_node=int(cluster.train.get("accelerator_count", 1))),
                   cluster).set_display_name("train (GPU)")
    if pvc:
        kubernetes.mount_pvc(trained, pvc_name=pvc, mount_path=CHECKPOINT_MOUNT)
    return trained


def pipeline_from_files(params_path: str | Path = ROOT / "params.yaml", cluster_path: str | Path = DEFAULT_CLUSTER,
                        overrides: tuple[str, ...] = (), local: bool = False, sweep_path: str | Path | None = None):
    """Build the pipeline from params.yaml (with ``--set`` overrides) and cluster.yaml; ``local`` (kfp.local)
    keeps the embedded tracking default instead of requiring a server, and does not retry: a local run's
    failures are deterministic (a wrong path, a bad param), and the cluster's backoff would only delay them."""
    from dataclasses import replace

    cluster = Cluster.load(cluster_path)
    return build_pipeline(load_params(params_path, overrides),
                          replace(cluster, require_tracking=False, retry={}) if local else cluster,
                          Sweep.load(sweep_path) if sweep_path else None)
