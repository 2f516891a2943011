"""The numeric view of an evaluation's metrics, shared by evaluate (MLflow logging) and register (tags)."""

from __future__ import annotations


def numeric_metrics(metrics: dict) -> dict[str, float]:
    """The flat numeric metrics (class shares as ``class_share.<class>``); booleans and text are left out."""
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({f"class_share.{k}": float(v) for k, v in metrics.get("class_share", {}).items()})
    flat.update({f"conditional_accuracy.{k}": float(v)
                 for k, v in metrics.get("conditional_accuracy_by_class", {}).items()})
    return flat
