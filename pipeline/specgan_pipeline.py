"""The Kubeflow pipeline: download, a ParallelFor over feature shards, stats (fan-in), GPU training,
render, evaluate, register. Run parameters take their defaults from params.yaml when it is built."""


import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kfp import dsl, kubernetes

from components import make_components
from specgan.config import Params, load_params
from specgan.pipeline_params import EXPOSED, lookup

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
    retries: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    config_map: str = ""

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CLUSTER) -> "Cluster":
        raw = yaml.safe_load(Path(path).read_text())
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**raw)


def _environment(task: dsl.PipelineTask, cluster: Cluster) -> None:
    """MLflow and S3 settings from the config map and secrets (optional, so a bare cluster still runs)."""
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
    if cluster.cpu_task.get("cpu_request"):
        task.set_cpu_request(str(cluster.cpu_task["cpu_request"]))
    if cluster.cpu_task.get("memory_request"):
        task.set_memory_request(str(cluster.cpu_task["memory_request"]))
    if cluster.retries:
        task.set_retry(cluster.retries)
    return task


def _gpu(task: dsl.PipelineTask, cluster: Cluster) -> dsl.PipelineTask:
    _environment(task, cluster)
    t = cluster.train
    task.set_accelerator_type(t.get("accelerator_type", "nvidia.com/gpu"))
    task.set_accelerator_limit(int(t.get("accelerator_count", 1)))
    if t.get("cpu_request"):
        task.set_cpu_request(str(t["cpu_request"]))
    if t.get("memory_request"):
        task.set_memory_request(str(t["memory_request"]))
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=t.get("shm_size"))
    for label, value in (t.get("node_selector") or {}).items():
        kubernetes.add_node_selector(task, label, value)
    for tol in t.get("tolerations") or []:
        kubernetes.add_toleration(task, **tol)
    if cluster.retries:
        task.set_retry(cluster.retries)
    return task


def build_pipeline(params: Params, cluster: Cluster):
    """The pipeline function, its parameter defaults taken from ``params`` now.

    ``params_yaml`` carries the whole of params.yaml as one line of JSON (valid YAML): the compiler
    copies defaults into a comment header, where a multi-line string would break the YAML."""
    c = make_components(cluster.base_image)
    d = params.to_dict()
    params_text = json.dumps(d, sort_keys=False)
    default = {name: lookup(d, key) for name, key in EXPOSED.items()}

    @dsl.pipeline(name=PIPELINE_NAME, description="SpecGAN drum synthesis: data to a registered generator")
    def specgan_pipeline(
        data_source: str = default["data_source"], data_sha256: str = default["data_sha256"],
        data_split: str = default["data_split"], feature_shards: int = default["feature_shards"],
        model_dim: int = default["model_dim"], train_recipe: str = default["train_recipe"],
        train_epochs: int = default["train_epochs"], train_batch_size: int = default["train_batch_size"],
        train_seed: int = default["train_seed"], render_n_samples: int = default["render_n_samples"],
        evaluate_n_generated: int = default["evaluate_n_generated"],
        registry_model_name: str = default["registry_model_name"], params_yaml: str = params_text,
    ) -> str:
        resolved = c.resolve(
            params_yaml=params_yaml, data_source=data_source, data_sha256=data_sha256, data_split=data_split,
            feature_shards=feature_shards, model_dim=model_dim, train_recipe=train_recipe, train_epochs=train_epochs,
            train_batch_size=train_batch_size, train_seed=train_seed, render_n_samples=render_n_samples,
            evaluate_n_generated=evaluate_n_generated, registry_model_name=registry_model_name)
        resolved.set_caching_options(False)  # cheap, and its output must follow the run's parameters
        text = resolved.outputs["params"]
        data = _cpu(c.download(params=text), cluster).set_display_name("download")
        indices = c.shards(params=text)
        with dsl.ParallelFor(items=indices.output, name="feature-shards") as index:
            shard = _cpu(c.features(params=text, dataset=data.outputs["dataset"], shard_index=index), cluster)
            shard.set_display_name("features shard")
        stats = _cpu(c.stats(params=text, dataset=data.outputs["dataset"],
                             shards=dsl.Collected(shard.outputs["shard"])), cluster).set_display_name("stats")
        pvc = cluster.train.get("checkpoint_pvc")
        trained = _gpu(c.train(params=text, features=stats.outputs["features"], stats=stats.outputs["stats"],
                               checkpoint_root=CHECKPOINT_MOUNT if pvc else "",
                               run_key=dsl.PIPELINE_JOB_ID_PLACEHOLDER), cluster).set_display_name("train (GPU)")
        if pvc:
            kubernetes.mount_pvc(trained, pvc_name=pvc, mount_path=CHECKPOINT_MOUNT)
        evaluated = _cpu(c.evaluate(params=text, generator=trained.outputs["generator"],
                                    dataset=data.outputs["dataset"]), cluster).set_display_name("evaluate")
        _cpu(c.render(params=text, generator=trained.outputs["generator"], dataset=data.outputs["dataset"],
                      report=evaluated.outputs["report"]), cluster).set_display_name("render")
        registered = _cpu(c.register(params=text, generator=trained.outputs["generator"],
                                     report=evaluated.outputs["report"]), cluster).set_display_name("register")
        registered.set_caching_options(False)  # registering is a side effect: never served from cache
        return registered.outputs["version"]

    return specgan_pipeline


def pipeline_from_files(params_path: str | Path = ROOT / "params.yaml", cluster_path: str | Path = DEFAULT_CLUSTER,
                        overrides: tuple[str, ...] = ()):
    """Build the pipeline from params.yaml (with ``--set`` overrides) and cluster.yaml."""
    return build_pipeline(load_params(params_path, overrides), Cluster.load(cluster_path))
