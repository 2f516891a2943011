"""Compile the pipeline to YAML, submit it to a Kubeflow endpoint, or run it with kfp.local."""

from __future__ import annotations

import logging
from pathlib import Path

from kfp import compiler

from pipeline.specgan_pipeline import DEFAULT_CLUSTER, ROOT, pipeline_from_files

log = logging.getLogger(__name__)


def compile_pipeline(out: str | Path, params_path: str | Path = ROOT / "params.yaml",
                     cluster_path: str | Path = DEFAULT_CLUSTER, overrides: tuple[str, ...] = ()) -> Path:
    """Write the pipeline YAML (parameter defaults from params.yaml and the ``--set`` overrides)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_from_files(params_path, cluster_path, overrides), str(out))
    return out


def submit(host: str, experiment: str, params_path: str | Path = ROOT / "params.yaml",
           cluster_path: str | Path = DEFAULT_CLUSTER, arguments: dict | None = None,
           overrides: tuple[str, ...] = ()) -> str:
    """Submit a run to a Kubeflow Pipelines endpoint; returns the run id."""
    import kfp

    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(pipeline_from_files(params_path, cluster_path, overrides),
                                               arguments=arguments or {}, experiment_name=experiment)
    return run.run_id


def run_local(workdir: str | Path, params_path: str | Path = ROOT / "params.yaml",
              cluster_path: str | Path = DEFAULT_CLUSTER, arguments: dict | None = None,
              overrides: tuple[str, ...] = ()) -> str:
    """Run the whole pipeline here with kfp.local (subprocesses in this environment, no containers);
    returns the registered model version."""
    from kfp import local

    workdir = Path(workdir).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline_root"))
    return str(pipeline_from_files(params_path, cluster_path, overrides)(**(arguments or {})).output)
