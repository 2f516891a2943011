"""The numeric view of an evaluation's metrics, shared by evaluate (MLflow logging) and register (tags)."""

from __future__ import annotations


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """The flat numeric metrics (class shares as ``class_share.<class>``); booleans and text are left out."""
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({f"class_share.{k}": float(v) for k, v in metrics.get("class_share", {}).items()})
    flat.update({f"class_asked.{k}": float(v) for k, v in metrics.get("class_asked", {}).items()})
    flat.update({f"class_expected.{k}": float(v) for k, v in metrics.get("class_expected", {}).items()})
    flat.update({f"conditional_accuracy.{k}": float(v)
                 for k, v in metrics.get("conditional_accuracy_by_class", {}).items()})
    flat.update({f"nn_self_by_class.{k}": float(v) for k, v in metrics.get("nn_self_by_class", {}).items()})
    return flat


def _g(v: float) -> str:
    return f"{v:.4g}"


def value_text(m: dict, key: str) -> str:
    """A metric as every report writes it: ``96.91 +- 21`` (with its bootstrap standard error when it has one)."""
    return _g(m[key]) + (f" +- {m[key + '_se']:.2g}" if key + "_se" in m else "")


def baseline_text(m: dict, key: str) -> str:
    """A metric's real baseline as every report writes it: ``12.35 +- 5.8``, the spread over draws of as many
    real clips (``_real_sd``) where there is one, else its bootstrap standard error (``_real_se``)."""
    for spread in ("_real_sd", "_real_se"):
        if key + spread in m:
            return f"{_g(m[key + '_real'])} +- {m[key + spread]:.2g}"
    return _g(m[key + "_real"])


def spread_text(m: dict) -> str:
    """A conditional model's spread within each class (``nn_self_by_class``), lowest first: ``kick 0.44, ...``."""
    return ", ".join(f"{c} {v:.2f}" for c, v in sorted(m["nn_self_by_class"].items(), key=lambda kv: kv[1]))
