"""One Kubeflow component per pipeline step, each a thin wrapper over the specgan function `dvc repro` runs.

The functions are lightweight Python components: KFP ships their source to the container, so each
imports what it needs inside its body. The image (one configurable value) has specgan installed.
"""


import functools
from types import SimpleNamespace
from typing import List, NamedTuple  # noqa: UP035  (KFP reads typing.List annotations)

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def resolve_params(params_yaml: str, data_source: str, data_sha256: str, data_split: str, feature_shards: int,
                   model_dim: int, train_loss: str, train_epochs: int, train_batch_size: int, train_seed: int,
                   render_n_samples: int, evaluate_n_generated: int, registry_model_name: str,
                   params: Output[Artifact]) -> NamedTuple("Sections", [("data", str), ("train", str),  # noqa: UP014
                                                                        ("quality", str)]):
    """Fold the run's parameters into params.yaml (validated): the whole file for register, and for every
    other task the JSON of the sections it reads (``TASK_SECTIONS``), which a cached task turns into its
    params artifact. Never cached itself: its outputs follow the run's parameters."""
    from collections import namedtuple

    import yaml

    from specgan.core.pipeline_params import TASK_SECTIONS, resolve, section_text

    values = dict(data_source=data_source, data_sha256=data_sha256, data_split=data_split,
                  feature_shards=feature_shards, model_dim=model_dim, train_loss=train_loss,
                  train_epochs=train_epochs, train_batch_size=train_batch_size, train_seed=train_seed,
                  render_n_samples=render_n_samples, evaluate_n_generated=evaluate_n_generated,
                  registry_model_name=registry_model_name)
    text = resolve(params_yaml, values)
    with open(params.path, "w") as fh:
        fh.write(text)
    raw = yaml.safe_load(text)
    return namedtuple("Sections", list(TASK_SECTIONS))(*(section_text(raw, g) for g in TASK_SECTIONS))


def params_sections(sections: str, params: Output[Artifact]) -> None:
    """The params artifact of a group of tasks: only the sections they read. Cached, and its input is a string
    value, so the same sections give the same artifact (and the tasks downstream hit the cache).

    A file, not a string parameter: kfp.local replaces task-output parameters that enter a
    ParallelFor with the loop item, while artifacts pass through intact."""
    with open(params.path, "w") as fh:
        fh.write(sections)


def download_dataset(params: Input[Artifact], dataset: Output[Dataset]) -> None:
    """specgan download: fetch and safely extract the dataset."""
    from specgan.core.pipeline_params import load_sections
    from specgan.data.download import download

    p = load_sections(params.path)
    res = download(p.data.source, dataset.path, p.download, sha256=p.data.sha256)
    dataset.metadata.update({"data_version": res.data_version, "files": res.n_files})


def shard_indices(params: Input[Artifact]) -> List[int]:  # noqa: UP006
    """The fan-out list: one entry per feature shard."""
    from specgan.core.pipeline_params import load_sections

    return list(range(load_sections(params.path).features.shards))


def featurize_shard(params: Input[Artifact], dataset: Input[Dataset], shard_index: int, shard: Output[Dataset]) -> None:
    """specgan features --shard: one shard of the log-magnitude STFT features."""
    from specgan.core.pipeline_params import load_sections
    from specgan.data.features import featurize_shard as run_shard

    p = load_sections(params.path)
    res = run_shard(dataset.path, shard.path, int(shard_index), p.features.shards, p.data.split, p.features,
                    labels_mode=p.data.labels)
    shard.metadata.update({"clips": res.n_clips, "rejected": len(res.rejects)})


def merge_stats(params: Input[Artifact], dataset: Input[Dataset], shards: Input[List[Dataset]],  # noqa: UP006
                features: Output[Dataset], stats: Output[Artifact], summary: Output[Metrics]) -> None:
    """Fan-in: gather the shards into one features folder, then specgan stats."""
    from specgan.core.pipeline_params import load_sections
    from specgan.data.download import read_source_info
    from specgan.data.features import gather_shards
    from specgan.data.stats import run_stats

    p = load_sections(params.path)
    result = gather_shards([s.path for s in shards], features.path, p.data.split)
    run_stats(features.path, stats.path, p.features.n_frames, read_source_info(dataset.path).get("data_version", ""))
    for key in ("clips", "rejected", "files"):
        summary.log_metric(key, float(result[key]))


def train_gan(params: Input[Artifact], features: Input[Dataset], stats: Input[Artifact], generator: Output[Model],
              checkpoints: Output[Artifact], metrics: Output[Metrics], checkpoint_root: str = "",
              procs_per_node: int = 1) -> None:
    """specgan train. The Model artifact holds generator.pt only. Checkpoints go to ``checkpoint_root/<key>``
    (a mounted volume; the key is the hash of the train sections, so a retried pod, or a later run with the
    same settings, resumes) or else to their own artifact, which render, evaluate and register never fetch.
    ``procs_per_node`` > 1 (cluster.yaml's ``accelerator_count``): one process per GPU through torchrun."""
    import hashlib
    import shutil
    from pathlib import Path

    from specgan.core.tracking import check_tracking
    from specgan.training.train import GENERATOR_FILE
    from specgan.training.train_task import train_in_task

    check_tracking()  # on a cluster: fail at start, in one line, without a reachable tracking server
    key = hashlib.sha256(Path(params.path).read_bytes()).hexdigest()[:16]
    work = Path(checkpoint_root) / key if checkpoint_root else Path(checkpoints.path)
    summary = train_in_task(features.path, stats.path, work, params.path, int(procs_per_node))
    Path(generator.path).mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / GENERATOR_FILE, Path(generator.path) / GENERATOR_FILE)
    if checkpoint_root:
        Path(checkpoints.path).mkdir(parents=True, exist_ok=True)
        (Path(checkpoints.path) / "WHERE.txt").write_text(f"checkpoints are on the volume at {work}\n")
    for key, value in summary.items():
        if isinstance(value, (int, float)):
            metrics.log_metric(key, float(value))
    generator.metadata.update({"run_id": summary.get("run_id", ""), "iterations": summary["iterations"],
                               "trial": params.metadata.get("trial", "")})


def render_samples(params: Input[Artifact], generator: Input[Model], dataset: Input[Dataset], report: Input[Artifact],
                   samples: Output[Artifact], gallery: Output[HTML]) -> None:
    """specgan render: WAV files and plots, and the gallery page (with the evaluation) as an HTML artifact."""
    import shutil
    from pathlib import Path

    from specgan.core.pipeline_params import load_sections
    from specgan.core.tracking import check_tracking
    from specgan.evaluation.render import GALLERY, render

    check_tracking()  # on a cluster: fail at start, in one line, without a reachable tracking server

    p = load_sections(params.path)
    render(str(Path(generator.path) / "generator.pt"), samples.path, p.render, metrics_path=report.path,
           data_dir=dataset.path, train_split=p.data.split, eval_cfg=p.evaluate, labels_mode=p.data.labels)
    shutil.copy(Path(samples.path) / GALLERY, gallery.path)


def evaluate_generator(params: Input[Artifact], generator: Input[Model], dataset: Input[Dataset],
                       metrics: Output[Metrics], report: Output[Artifact]) -> None:
    """specgan evaluate: quality metrics against held-out real clips."""
    from pathlib import Path

    from specgan.core.pipeline_params import load_sections
    from specgan.core.tracking import check_tracking
    from specgan.evaluation.evaluate import run_evaluate

    check_tracking()  # on a cluster: fail at start, in one line, without a reachable tracking server

    p = load_sections(params.path)
    result = run_evaluate(str(Path(generator.path) / "generator.pt"), dataset.path, report.path, p.evaluate,
                          p.data.split, render=p.render, labels_mode=p.data.labels)
    report.metadata["trial"] = generator.metadata.get("trial", "")  # a sweep's trial, for the sweep's table
    for key, value in result.items():
        if isinstance(value, (int, float)):
            metrics.log_metric(key, float(value))


def register_generator(params: Input[Artifact], generator: Input[Model], report: Input[Artifact],
                       summary: Output[Markdown]) -> NamedTuple("Registered", [("name", str), ("version", str)]):
    """specgan register: a new model version with the challenger alias."""
    from collections import namedtuple
    from pathlib import Path

    from specgan.core.config import load_params
    from specgan.core.tracking import check_tracking
    from specgan.registry.promotion import CHALLENGER, register

    check_tracking()  # on a cluster: fail at start, in one line, without a reachable tracking server

    p = load_params(params.path)
    res = register(str(Path(generator.path) / "generator.pt"), p, eval_metrics_path=report.path)
    with open(summary.path, "w") as fh:
        fh.write(f"# {res.name} version {res.version}\n\nalias `@{CHALLENGER}`, run `{res.run_id}`, "
                 f"{p.registry.gate_metric} = {res.gate_value}\n")
    return namedtuple("Registered", ["name", "version"])(res.name, res.version)


def sweep_trials(params: Input[Artifact], sweep_json: str) -> List[str]:  # noqa: UP006
    """The sweep's loop items: every combination of the grid applied to the run's params (validated)."""
    import json

    import yaml

    from specgan.registry.sweep import trials

    with open(params.path) as fh:
        return trials(yaml.safe_load(fh), json.loads(sweep_json))


def trial_params(trial: str, params: Output[Artifact]) -> None:
    """One trial's params artifact: the sections its training reads, named in the metadata. Cached: the same
    trial in a later sweep is served from the cache, and so is its training."""
    import json

    item = json.loads(trial)
    with open(params.path, "w") as fh:
        fh.write(item["sections"])
    params.metadata["trial"] = item["name"]


def pick_best(params: Input[Artifact], reports: Input[List[Artifact]], generators: Input[List[Model]],  # noqa: UP006
              summary: Output[Markdown], best: Output[Model], best_report: Output[Artifact],
              ) -> NamedTuple("Registered", [("name", str), ("version", str)]):  # noqa: UP014
    """Rank the trials by the promotion rules and the gate metric, register the best as challenger, table every
    trial (Markdown) and nest their MLflow runs under one sweep run."""
    import json
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from specgan.core.config import load_params
    from specgan.core.hashing import file_sha256
    from specgan.core.tracking import check_tracking
    from specgan.registry.promotion import CHALLENGER, register
    from specgan.registry.sweep import Trial, nest_runs, rank, table

    check_tracking()  # on a cluster: fail at start, in one line, without a reachable tracking server
    p = load_params(params.path)
    ranked = rank([Trial(r.metadata.get("trial") or f"trial {i}", json.loads(Path(r.path).read_text()), Path(r.path))
                   for i, r in enumerate(reports)], p.registry)
    files = {file_sha256(Path(g.path) / "generator.pt"): Path(g.path) / "generator.pt" for g in generators}
    Path(best.path).mkdir(parents=True, exist_ok=True)
    shutil.copy2(files[ranked[0].metrics["generator_sha256"]], Path(best.path) / "generator.pt")
    shutil.copy2(ranked[0].report, best_report.path)
    res = register(str(Path(best.path) / "generator.pt"), p, eval_metrics_path=best_report.path)
    md = table(ranked, p.registry, f"{res.name} version {res.version} (@{CHALLENGER})")
    nest_runs(ranked, md)
    with open(summary.path, "w") as fh:
        fh.write(md)
    return namedtuple("Registered", ["name", "version"])(res.name, res.version)


STEPS = {"resolve": resolve_params, "sections": params_sections, "download": download_dataset, "shards": shard_indices,
         "features": featurize_shard, "stats": merge_stats, "train": train_gan, "render": render_samples,
         "evaluate": evaluate_generator, "register": register_generator, "trials": sweep_trials,
         "trial_params": trial_params, "pick": pick_best}


def make_components(base_image: str) -> SimpleNamespace:
    """The components built on ``base_image`` (set in pipeline/cluster.yaml)."""
    component = functools.partial(dsl.component, base_image=base_image)
    return SimpleNamespace(**{name: component(fn) for name, fn in STEPS.items()})
