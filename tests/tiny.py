"""The one tiny configuration every test trains with (seconds on a CPU), and ways to pass it."""

from __future__ import annotations

from pathlib import Path

# Overrides of params.yaml: a width-4 model, small batches, frequent logging, checkpoints and grids,
# few generated clips and no bootstrap in evaluation, two feature shards.
TINY = {"model.model_dim": 4, "train.batch_size": 8, "train.epochs": 2, "train.log_every_iters": 2,
        "train.checkpoint_every_epochs": 1, "train.grid_every_epochs": 2, "features.shards": 2,
        "render.n_samples": 2, "evaluate.n_generated": 16, "evaluate.min_heldout": 4, "evaluate.bootstrap": 0}
# The tiny models are collapsed: these switch off the gate's quality rules where a test is about something else.
NO_RULES = {"registry.refuse_collapse": False, "registry.refuse_memorization": False,
            "registry.min_class_share": 0.0}


def sets(overrides: dict) -> list[str]:
    """``--set KEY=VALUE`` arguments for the CLI."""
    text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in overrides.items()}
    return [a for key, value in text.items() for a in ("--set", f"{key}={value}")]


def train_args(prepared: tuple[Path, Path], out: Path, epochs: int, *extra: str) -> list[str]:
    """`specgan train` arguments for a tiny CPU run of ``epochs`` epochs."""
    feats, stats = prepared
    return ["train", "--features", str(feats), "--stats", str(stats), "--out", str(out),
            *sets({**TINY, "train.epochs": epochs}), *extra]
