"""The register and promote steps: model versions, the challenger and champion aliases, the gate."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from specgan.atomic import write_json
from specgan.config import Params, RegistryConfig
from specgan.errors import SpecganError
from specgan.tracking import check_tracking, git_commit

log = logging.getLogger(__name__)

CHALLENGER, CHAMPION = "challenger", "champion"
METRIC_TAG = "metric."


class PromotionRefused(SpecganError):
    """The challenger does not pass the gate."""


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    gate_value: float | None


def _client() -> MlflowClient:
    mlflow.set_tracking_uri(check_tracking())
    return MlflowClient()


def _gate_value(cfg: RegistryConfig, eval_metrics: dict, run_metrics: dict) -> float | None:
    """The gate metric from the evaluate stage when present, else from the training run."""
    for source in (eval_metrics, run_metrics):
        if cfg.gate_metric in source and source[cfg.gate_metric] is not None:
            return float(source[cfg.gate_metric])
    return None


def register(generator_path: str | Path, params: Params, eval_metrics_path: str | Path | None = None,
             out_json: str | Path | None = None) -> Registered:
    """Log the generator as a pyfunc model into its training run, register a new version, alias it challenger."""
    from specgan.mlflow_model import log_generator_model

    cfg = params.registry
    client = _client()
    payload = torch.load(generator_path, map_location="cpu", weights_only=True)
    prov = dict(payload.get("provenance", {}))
    eval_metrics = json.loads(Path(eval_metrics_path).read_text()) if eval_metrics_path else {}
    run_id = prov.get("run_id") or None
    try:
        run_metrics = client.get_run(run_id).data.metrics if run_id else {}
    except MlflowException:
        log.warning("training run %s is not on this tracking server; registering from a new run", run_id)
        run_id, run_metrics = None, {}
    with mlflow.start_run(run_id=run_id) as run:
        info = log_generator_model(generator_path)
        numeric = {k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))}
        if numeric:
            mlflow.log_metrics(numeric)
    gate = _gate_value(cfg, eval_metrics, run_metrics)
    mv = mlflow.register_model(info.model_uri, cfg.model_name)
    tags = {"data_version": prov.get("data_version", ""), "params_hash": params.section_hash(),
            "git_commit": git_commit(), "fingerprint": prov.get("fingerprint", ""), "run_id": run.info.run_id,
            "gate_metric": cfg.gate_metric}
    tags.update({f"{METRIC_TAG}{k}": repr(float(v)) for k, v in {**run_metrics, **eval_metrics}.items()
                 if isinstance(v, (int, float))})
    for k, v in tags.items():
        client.set_model_version_tag(cfg.model_name, mv.version, k, str(v))
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, mv.version)
    result = Registered(cfg.model_name, str(mv.version), run.info.run_id, gate)
    if out_json:
        write_json(out_json, {"name": result.name, "version": result.version, "alias": CHALLENGER,
                              "run_id": result.run_id, "gate_metric": cfg.gate_metric, "gate_value": gate})
    return result


def _metric(mv, name: str) -> float | None:
    raw = mv.tags.get(f"{METRIC_TAG}{name}")
    return float(raw) if raw not in (None, "") else None


def promote(cfg: RegistryConfig, version: str | None = None, force: bool = False) -> str:
    """Move ``champion`` to the challenger (or ``version``) when its gate metric beats the champion's
    by ``gate_margin``; otherwise refuse. ``force`` skips the comparison and is recorded on the version.
    A version without the gate metric is never promoted. Returns a one-line account."""
    client = _client()
    name = cfg.model_name
    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        raise PromotionRefused(f"no model version {version or '@' + CHALLENGER} of {name!r}") from None
    value = _metric(mv, cfg.gate_metric)
    if value is None:
        raise PromotionRefused(f"{name} version {mv.version} has no {cfg.gate_metric!r} metric: never promoted")
    try:
        champ = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champ = None
    if champ is not None and champ.version == mv.version:
        raise PromotionRefused(f"{name} version {mv.version} is already the champion")
    champ_value = _metric(champ, cfg.gate_metric) if champ else None
    if champ is None or champ_value is None:
        better, reason = True, "no champion with the gate metric yet"
    else:
        delta = (champ_value - value) if cfg.gate_mode == "min" else (value - champ_value)
        better = delta > cfg.gate_margin
        reason = (f"{cfg.gate_metric} {value:.6g} vs champion v{champ.version} {champ_value:.6g} "
                  f"({'lower' if cfg.gate_mode == 'min' else 'higher'} is better, margin {cfg.gate_margin:g})")
    if not better and not force:
        raise PromotionRefused(f"refused: {name} version {mv.version} does not beat the champion: {reason}")
    forced = force and not better
    client.set_registered_model_alias(name, CHAMPION, mv.version)
    for k, v in {"promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "promotion_reason": reason, "promotion_forced": str(forced).lower(),
                 "previous_champion": champ.version if champ else ""}.items():
        client.set_model_version_tag(name, mv.version, k, v)
    return f"{name} version {mv.version} is now {CHAMPION}{' (forced)' if forced else ''}: {reason}"
