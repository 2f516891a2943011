"""The register and promote steps: model versions, the challenger and champion aliases, the gate."""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from specgan.core.atomic import write_json
from specgan.core.config import Params, RegistryConfig
from specgan.core.errors import SpecganError
from specgan.core.hashing import file_sha256
from specgan.core.tracking import check_tracking, git_commit
from specgan.evaluation.metric_values import numeric_metrics

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


class RegisterError(SpecganError):
    """The evaluation offered for registration does not belong to the generator file, or is not usable."""


def load_evaluation(eval_metrics_path: str | Path, generator_path: str | Path, gate_metric: str) -> dict:
    """The evaluate step's metrics for exactly this generator file, with a finite gate metric."""
    path = Path(eval_metrics_path)
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RegisterError(f"{path}: not a metrics file from `specgan evaluate` ({type(exc).__name__})") from None
    if not isinstance(metrics, dict):
        raise RegisterError(f"{path}: not a metrics file from `specgan evaluate`")
    sha = file_sha256(generator_path)
    if metrics.get("generator_sha256") != sha:
        raise RegisterError(f"{path} scored another generator file (sha256 {str(metrics.get('generator_sha256'))[:12]}"
                            f", {Path(generator_path).name} is {sha[:12]}): run `specgan evaluate` on it first")
    for key, value in numeric_metrics(metrics).items():
        if not math.isfinite(value):
            raise RegisterError(f"{path}: metric {key} is {value!r}; only finite metrics can be registered")
    value = metrics.get(gate_metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RegisterError(f"{path}: the gate metric {gate_metric!r} is missing or not a number ({value!r})")
    return metrics


def register(generator_path: str | Path, params: Params, eval_metrics_path: str | Path | None = None,
             out_json: str | Path | None = None) -> Registered:
    """Register the generator with the gate metric of its own evaluation (same file, by sha256) as
    challenger. The model is logged into the evaluation's MLflow run (or a new run); the finished
    training run's history is left as it was."""
    from specgan.registry.mlflow_model import log_generator_model

    cfg = params.registry
    if not eval_metrics_path:
        raise RegisterError("register needs --metrics: the evaluate step's metrics for this generator file")
    eval_metrics = load_evaluation(eval_metrics_path, generator_path, cfg.gate_metric)
    from specgan.model.generator_file import read_generator  # torch: register needs it, promote does not

    client = _client()
    payload = read_generator(generator_path)
    prov = dict(payload.get("provenance", {}))
    run_id = eval_metrics.get("evaluation_run_id") or None
    if run_id:
        try:
            client.get_run(run_id)
        except MlflowException:
            log.warning("evaluation run %s is not on this tracking server; registering from a new run", run_id)
            run_id = None
    tags = {"specgan.step": "register", "specgan.training_run_id": prov.get("run_id", ""),
            "generator_sha256": eval_metrics["generator_sha256"]}
    if run_id:
        run_cm = mlflow.start_run(run_id=run_id)
    else:
        from specgan.core.tracking import start_run

        run_cm = start_run(run_name="register", tags=tags)
    with run_cm as run:
        info = log_generator_model(generator_path, params.render, params.synthesize)
    gate = float(eval_metrics[cfg.gate_metric])
    mv = mlflow.register_model(info.model_uri, cfg.model_name)
    tags = {"data_version": prov.get("data_version", ""), "params_hash": params.section_hash(),
            "git_commit": git_commit(), "fingerprint": prov.get("fingerprint", ""), "run_id": run.info.run_id,
            "training_run_id": prov.get("run_id", ""), "generator_sha256": eval_metrics["generator_sha256"],
            "gate_metric": cfg.gate_metric}
    tags.update(headline_tags(eval_metrics, cfg.gate_metric))
    for k, v in tags.items():
        client.set_model_version_tag(cfg.model_name, mv.version, k, str(v))
    client.set_registered_model_alias(cfg.model_name, CHALLENGER, mv.version)
    result = Registered(cfg.model_name, str(mv.version), run.info.run_id, gate)
    if out_json:
        write_json(out_json, {"name": result.name, "version": result.version, "alias": CHALLENGER,
                              "run_id": result.run_id, "gate_metric": cfg.gate_metric, "gate_value": gate,
                              "generator_sha256": eval_metrics["generator_sha256"]})
    return result


# What a model version carries (the versions table stays readable); the rest stays on the evaluation run,
# which the version's ``evaluation_run_id`` tag names.
HEADLINE = ("frechet_distance", "frechet_distance_inverted", "inception_score", "inception_score_real",
            "collapse_flag", "memorization_flag")


def headline_tags(metrics: dict, gate_metric: str) -> dict[str, str]:
    """The version's metric tags: the headline metrics, the gate metric, and the class shares (made and
    expected) in one tag each."""
    flat = numeric_metrics(metrics)
    tags = {f"{METRIC_TAG}{k}": repr(flat[k]) for k in (*HEADLINE, gate_metric) if k in flat}
    for key in ("class_share", "class_expected"):
        shares = metrics.get(key) or {}
        if shares:
            tags[f"{METRIC_TAG}{key}"] = ",".join(f"{c}={float(v):.4f}" for c, v in sorted(shares.items()))
    if metrics.get("evaluation_run_id"):
        tags["evaluation_run_id"] = str(metrics["evaluation_run_id"])
    return tags


def _class_shares(mv, key: str = "class_share") -> dict[str, float]:
    """A version's class shares (``class_share`` or ``class_expected``): one ``metric.<key>`` tag
    (``kick=0.14,...``), or one tag a class as versions registered before it wrote them."""
    shares = {k[len(f"{METRIC_TAG}{key}."):]: float(v) for k, v in mv.tags.items()
              if k.startswith(f"{METRIC_TAG}{key}.")}
    for pair in filter(None, mv.tags.get(f"{METRIC_TAG}{key}", "").split(",")):
        name, _, value = pair.partition("=")
        shares[name] = float(value)
    return shares


def _metric(mv, name: str) -> float | None:
    raw = mv.tags.get(f"{METRIC_TAG}{name}")
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        return float("nan")


def quality_problems(mv, cfg: RegistryConfig) -> list[str]:
    """Why a version's own evaluation rules it out, whatever its gate metric (empty: none)."""
    return evaluation_problems({"collapse_flag": _metric(mv, "collapse_flag"),
                                "memorization_flag": _metric(mv, "memorization_flag"),
                                "class_share": _class_shares(mv),
                                "class_expected": _class_shares(mv, "class_expected")}, cfg)


def evaluation_problems(metrics: dict, cfg: RegistryConfig) -> list[str]:
    """The promotion rules on an evaluation's metrics (``collapse_flag``, ``memorization_flag``, ``class_share``
    against ``class_expected``): why they rule a generator out, whatever its gate metric (empty: none). A class
    must get ``min_class_share`` of the samples, or half its expected share where that is less: a faithful
    generator of data with 1% claps makes 1% claps."""
    problems = []
    if cfg.refuse_collapse and metrics.get("collapse_flag") == 1:
        problems.append("its evaluation flags mode collapse")
    if cfg.refuse_memorization and metrics.get("memorization_flag") == 1:
        problems.append("its evaluation flags memorization of training clips")
    shares, expected = metrics.get("class_share") or {}, metrics.get("class_expected") or {}
    least = {c: min(cfg.min_class_share, float(expected[c]) / 2) if c in expected else cfg.min_class_share
             for c in shares}
    missing = sorted(c for c, v in shares.items() if not float(v) >= least[c])
    if missing:
        problems.append(f"class(es) {', '.join(f'{c} ({float(shares[c]):.1%})' for c in missing)} get less than "
                        f"{cfg.min_class_share:.0%} of its samples (a class under {2 * cfg.min_class_share:.0%} of "
                        "what it was asked for or trained on: half its share)")
    return problems


@contextmanager
def _promotion_lock(client: MlflowClient, name: str, timeout_s: float = 60.0, stale_s: float = 300.0):
    """Serialize promotions of one model across processes and machines: creating a registered model is
    atomic on the tracking server, so the lock is a registered model named ``<name>.promotion-lock``."""
    lock = f"{name}.promotion-lock"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, description="held while `specgan promote` runs")
            break
        except MlflowException:
            try:
                held = client.get_registered_model(lock)
                if time.time() * 1000 - held.creation_timestamp > stale_s * 1000:
                    log.warning("removing a stale promotion lock from %s", time.ctime(held.creation_timestamp / 1000))
                    client.delete_registered_model(lock)
                    continue
            except MlflowException:
                continue  # released between our two calls
            if time.monotonic() > deadline:
                raise PromotionRefused(f"another promotion of {name!r} holds {lock!r} for over {timeout_s:.0f} s; "
                                       "try again (delete that registered model if its holder died)") from None
            time.sleep(0.2)
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def promote(cfg: RegistryConfig, version: str | None = None, force: bool = False) -> str:
    """Move ``champion`` to the challenger (or ``version``) when its own evaluation shows no collapse,
    memorization or missing class and its gate metric beats the champion's by ``gate_margin``; otherwise
    refuse. ``force`` skips the comparison with the champion (never the quality rules) and is recorded.
    Returns a one-line account."""
    client = _client()
    name = cfg.model_name
    with _promotion_lock(client, name):
        try:
            mv = (client.get_model_version(name, version) if version
                  else client.get_model_version_by_alias(name, CHALLENGER))
        except MlflowException:
            raise PromotionRefused(f"no model version {version or '@' + CHALLENGER} of {name!r}") from None
        try:
            champ = client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            champ = None
        if champ is not None and champ.version == mv.version:
            return f"{name} version {mv.version} is already {CHAMPION}"
        value = _metric(mv, cfg.gate_metric)
        if value is None or not math.isfinite(value):
            raise PromotionRefused(f"refused: {name} version {mv.version} has no finite {cfg.gate_metric!r} "
                                   f"metric ({value}): never promoted")
        problems = quality_problems(mv, cfg)
        if problems:
            raise PromotionRefused(f"refused: {name} version {mv.version}: {'; '.join(problems)}")
        champ_value = _metric(champ, cfg.gate_metric) if champ else None
        if champ is None or champ_value is None or not math.isfinite(champ_value):
            better, reason = True, "no champion with a finite gate metric yet"
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
