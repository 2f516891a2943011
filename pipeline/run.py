"""Compile the pipeline to YAML, submit it to a Kubeflow endpoint, or run it with kfp.local."""

from __future__ import annotations

import logging
from pathlib import Path

from kfp import compiler

from pipeline.specgan_pipeline import DEFAULT_CLUSTER, ROOT, pipeline_from_files

log = logging.getLogger(__name__)


def compile_pipeline(out: str | Path, params_path: str | Path = ROOT / "params.yaml",
                     cluster_path: str | Path = DEFAULT_CLUSTER, overrides: tuple[str, ...] = (),
                     sweep_path: str | Path | None = None) -> Path:
    """Write the pipeline YAML (parameter defaults from params.yaml and the ``--set`` overrides; with
    ``sweep_path``, the sweep pipeline over that grid)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_from_files(params_path, cluster_path, overrides, sweep_path=sweep_path),
                                str(out))
    return out


def submit(host: str, experiment: str, params_path: str | Path = ROOT / "params.yaml",
           cluster_path: str | Path = DEFAULT_CLUSTER, arguments: dict | None = None,
           overrides: tuple[str, ...] = (), namespace: str | None = None,
           sweep_path: str | Path | None = None) -> str:
    """Submit a run to a Kubeflow Pipelines endpoint; returns the run id. Credentials come from the environment:
    ``KFP_TOKEN`` (a bearer token), else what kfp.Client finds itself (in-cluster service account token,
    kube config). An unreachable or refusing endpoint is a one-line SpecganError."""
    import os

    import kfp

    from specgan.core.errors import SpecganError, first_line
    from specgan.core.redact import redact_url

    func = pipeline_from_files(params_path, cluster_path, overrides, sweep_path=sweep_path)  # errors before network
    try:
        client = kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get("KFP_TOKEN") or None)
        run = client.create_run_from_pipeline_func(func, arguments=arguments or {}, experiment_name=experiment,
                                                   namespace=namespace)
    except Exception as exc:  # noqa: BLE001 -- urllib3, kfp_server_api and auth errors: all one line here
        first = first_line(exc, 300)
        raise SpecganError(f"Kubeflow Pipelines at {redact_url(host)}: {type(exc).__name__}: {redact_url(first)}"
                           ) from None
    return run.run_id


def run_local(workdir: str | Path, params_path: str | Path = ROOT / "params.yaml",
              cluster_path: str | Path = DEFAULT_CLUSTER, arguments: dict | None = None,
              overrides: tuple[str, ...] = (), verbose: bool = False, sweep_path: str | Path | None = None) -> str:
    """Run the whole pipeline here with kfp.local (subprocesses in this environment, no containers);
    returns the registered model version. The console gets one line per task and kfp.local's whole output
    goes to ``workdir/kfp-local.log`` (``verbose``: the whole output on the console instead). A failed task
    is a one-line SpecganError."""
    from kfp import local

    from pipeline.console import ANSI, TaskConsole, quiet_local_run
    from specgan.core.errors import SpecganError, first_line

    workdir = Path(workdir).resolve()
    func = pipeline_from_files(params_path, cluster_path, overrides, local=True, sweep_path=sweep_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline_root"))
    if verbose:
        return str(func(**(arguments or {})).output)
    console = TaskConsole(workdir / "kfp-local.log")
    print(f"running the pipeline with kfp.local; the full log: {console.log_path}", flush=True)
    try:
        with quiet_local_run(console):
            return str(func(**(arguments or {})).output)
    except RuntimeError as exc:  # kfp.local: "Pipeline 'x' finished with status FAILURE. Inner task failed: ..."
        if isinstance(exc, SpecganError):
            raise
        raise SpecganError(f"{ANSI.sub('', first_line(exc, 300))} (the full log: {console.log_path})") from None
    finally:
        console.close()
