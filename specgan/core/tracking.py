"""MLflow set-up shared by the steps: tracking URI from the environment, a fast reachability check, tags."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import requests

from specgan.core.errors import SpecganError
from specgan.core.redact import redact_url

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "specgan"


class TrackingError(SpecganError):
    """The MLflow tracking server cannot be used."""


REQUIRE_ENV = "SPECGAN_REQUIRE_TRACKING"  # set on cluster tasks: no silent fallback to a file inside the pod


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else a local sqlite file in the working folder (but never where ``REQUIRE_ENV`` is
    set: a Kubeflow task on a cluster, whose sqlite file would vanish with its pod)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and os.environ.get(REQUIRE_ENV):
        raise TrackingError("MLFLOW_TRACKING_URI is not set: on a cluster every tracking task needs it (the "
                            "config map named in pipeline/cluster.yaml; README: Kubeflow)")
    return uri or DEFAULT_TRACKING_URI


def check_tracking(uri: str | None = None, timeout_s: float = 5.0) -> str:
    """Fail fast, with a clear message, when an http(s) tracking server does not answer."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            resp = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
            resp.raise_for_status()
        except requests.RequestException as exc:
            raise TrackingError(f"MLflow tracking server {redact_url(uri)} is not reachable ({type(exc).__name__}); "
                                "start it or set MLFLOW_TRACKING_URI") from None
    return uri


EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"


def start_run(run_name: str | None = None, tags: dict[str, str] | None = None) -> Any:
    """Set the tracking URI and experiment, then start a run (the caller ends it)."""
    import mlflow

    mlflow.set_tracking_uri(check_tracking())
    experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # MLflow 3's experiment kind: model training, not GenAI
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return mlflow.start_run(run_name=run_name, tags=tags)


def client_for_run(run_id: str, what: str):
    """An MlflowClient on the configured server when ``run_id`` exists there; else warn and return None."""
    import mlflow

    mlflow.set_tracking_uri(check_tracking())
    client = mlflow.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        logging.getLogger(__name__).warning("MLflow run %s is not on %s; %s not logged", run_id,
                                            redact_url(mlflow.get_tracking_uri()), what)
        return None
    return client


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value} for MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit(cwd: str | Path = ".") -> str:
    """The current git commit, or "unknown" outside a repository."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
