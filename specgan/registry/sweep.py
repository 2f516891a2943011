"""Sweeps: a grid of training configurations, each trained and evaluated, the best registered by the gate's rules.

The grid file (``pipeline/sweep.yaml``) names ``model.*`` and ``train.*`` keys and the values to try; every
combination is one trial. Kept free of kfp: the Kubeflow sweep pipeline's components call these functions."""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specgan.core.config import ConfigError, RegistryConfig, params_from_dict, set_key
from specgan.core.pipeline_params import section_text
from specgan.registry.promotion import evaluation_problems

SWEEPABLE = ("model.", "train.")  # the sections only training reads: data, features and stats stay cached
MAX_TRIALS = 256


@dataclass(frozen=True)
class Sweep:
    """A grid (key -> values, in file order) and how many trials train at once."""

    grid: dict[str, list[Any]]
    parallelism: int = 4

    @classmethod
    def load(cls, path: str | Path) -> Sweep:
        raw = yaml.safe_load(Path(path).read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("grid"), dict) or not raw["grid"]:
            raise ConfigError(f"{path}: expected a mapping with a non-empty 'grid' of key: [values]")
        unknown = set(raw) - {"grid", "parallelism"}
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
        parallelism = raw.get("parallelism", 4)
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
            raise ConfigError(f"{path}: parallelism must be a positive integer, got {parallelism!r}")
        for key, values in raw["grid"].items():
            if not str(key).startswith(SWEEPABLE):
                raise ConfigError(f"{path}: grid key {key}: only model.* and train.* can be swept")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: grid key {key}: expected a non-empty list of values")
        return cls({str(k): list(v) for k, v in raw["grid"].items()}, parallelism)

    def to_json(self) -> str:
        return json.dumps(self.grid)


def trials(params: dict, grid: dict[str, list[Any]]) -> list[str]:
    """Every combination of the grid applied to ``params`` (validated as params.yaml is), as the loop items of
    the sweep: JSON with the trial's name and the sections its training reads."""
    keys = list(grid)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    if len(combos) > MAX_TRIALS:
        raise ConfigError(f"the grid has {len(combos)} combinations; at most {MAX_TRIALS}")
    items = []
    for combo in combos:
        raw = copy.deepcopy(params)
        for key, value in zip(keys, combo, strict=True):  # keys checked by Sweep.load
            set_key(raw, key, value)
        params_from_dict(raw)  # validated: a bad value fails the sweep before any training
        name = ", ".join(f"{k}={v}" for k, v in zip(keys, combo, strict=True))
        items.append(json.dumps({"name": name, "sections": section_text(raw, "train")}))
    return items


@dataclass
class Trial:
    """One trained and evaluated configuration."""

    name: str
    metrics: dict
    report: Path
    problems: list[str] = field(default_factory=list)

    def gate_value(self, metric: str) -> float:
        value = self.metrics.get(metric)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def rank(trials_: list[Trial], cfg: RegistryConfig) -> list[Trial]:
    """Best first: trials the promotion rules accept before those they refuse, then by the gate metric
    (``gate_mode``); a trial without a finite gate metric comes last."""
    for t in trials_:
        t.problems = evaluation_problems(t.metrics, cfg)
        if not math.isfinite(t.gate_value(cfg.gate_metric)):
            t.problems.append(f"no finite {cfg.gate_metric}")
    sign = 1.0 if cfg.gate_mode == "min" else -1.0

    def key(t: Trial) -> tuple:
        value = t.gate_value(cfg.gate_metric)
        return (bool(t.problems), not math.isfinite(value), sign * value if math.isfinite(value) else 0.0)

    return sorted(trials_, key=key)


def table(ranked: list[Trial], cfg: RegistryConfig, registered: str) -> str:
    """The Markdown report: every trial's metrics beside the real baselines, and which one was registered."""
    cols = [("frechet_distance", "frechet_distance_real"), ("inception_score", "inception_score_real"),
            ("nn_self", "nn_self_real"), ("ndb_k", "ndb_k_real")]
    head = "| trial | " + " | ".join(c for c, _ in cols) + " | gate |\n"
    head += "| --- |" + " --- |" * (len(cols) + 1) + "\n"
    rows = []
    for i, t in enumerate(ranked):
        cells = []
        for metric, real in cols:
            v, r = t.metrics.get(metric), t.metrics.get(real)
            cells.append("-" if not isinstance(v, (int, float)) else
                         f"{v:.4g}" + (f" (real {r:.4g})" if isinstance(r, (int, float)) else ""))
        verdict = "refused: " + "; ".join(t.problems) if t.problems else "passes"
        mark = " **(registered)**" if i == 0 and registered else ""
        rows.append(f"| {t.name}{mark} | " + " | ".join(cells) + f" | {verdict} |\n")
    winner = (f"**{ranked[0].name}** was registered as {registered} (best {cfg.gate_metric}, "
              f"{cfg.gate_mode}, among the trials the promotion rules accept first)." if registered else
              "Nothing was registered.")
    return f"# Sweep: {len(ranked)} trials\n\n{winner}\n\n" + head + "".join(rows)


def nest_runs(ranked: list[Trial], table_md: str) -> str:
    """One MLflow parent run for the sweep, with the table and the best trial's gate metrics; every trial's
    training and evaluation runs become its children (tag ``mlflow.parentRunId``). Returns the parent's id."""
    import mlflow

    from specgan.core.tracking import start_run

    with start_run(run_name=f"sweep ({len(ranked)} trials)", tags={"specgan.step": "sweep"}) as parent:
        mlflow.log_text(table_md, "sweep.md")
        mlflow.log_param("trials", len(ranked))
        mlflow.log_param("best_trial", ranked[0].name[:500])
        client = mlflow.MlflowClient()
        for t in ranked:
            for key in ("run_id", "evaluation_run_id"):
                if t.metrics.get(key):
                    client.set_tag(t.metrics[key], "mlflow.parentRunId", parent.info.run_id)
                    client.set_tag(t.metrics[key], "specgan.trial", t.name[:500])
        return parent.info.run_id
