"""The params that the Kubeflow pipeline exposes as run parameters, and how they fold back into params.yaml.

Kept free of kfp so that the components (which import it inside their bodies) and the tests share one map.
"""

from __future__ import annotations

import typing

from specgan.core.config import get_key, params_from_dict, set_key

# pipeline parameter name -> params.yaml key. Everything else travels in the ``params_yaml`` parameter.
EXPOSED: dict[str, str] = {
    "data_source": "data.source",
    "data_sha256": "data.sha256",
    "data_split": "data.split",
    "feature_shards": "features.shards",
    "model_dim": "model.model_dim",
    "train_loss": "train.loss",
    "train_epochs": "train.epochs",
    "train_batch_size": "train.batch_size",
    "train_seed": "train.seed",
    "render_n_samples": "render.n_samples",
    "evaluate_n_generated": "evaluate.n_generated",
    "registry_model_name": "registry.model_name",
}


# What each pipeline task reads of params.yaml. A task's params artifact holds these sections only, written
# by a cached task from a string: a run that changes only train.* reuses download, features and stats.
TASK_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("data", "download", "features"),  # download, the shard list, features, stats
    "train": ("features", "normalize", "model", "train", "render"),  # render.seed: the training grids
    "quality": ("data", "evaluate", "render"),  # evaluate and render
}


def section_text(raw: dict, group: str) -> str:
    """The JSON of the sections ``group`` reads (sorted keys: the same sections give the same text)."""
    import json

    return json.dumps({name: raw[name] for name in TASK_SECTIONS[group]}, sort_keys=True)


def load_sections(path: str) -> typing.Any:
    """Params from a file that may hold only some sections (a task's params artifact); the sections it does
    not hold are None, so a task that read one would fail at once instead of using a stale value."""
    import dataclasses
    import json

    from specgan.core.config import Params, build_section

    with open(path) as fh:
        raw = json.load(fh)  # JSON, as section_text writes it (YAML would read 1e-06 as text)
    hints = typing.get_type_hints(Params)
    return Params(**{f.name: build_section(hints[f.name], raw[f.name], f.name) if f.name in raw else None
                     for f in dataclasses.fields(Params)})


def resolve(params_yaml: str, values: dict[str, typing.Any]) -> str:
    """Apply pipeline parameter values to the params text; validate; return the final YAML text.

    Integral floats become ints where params.yaml holds an int (kfp.local passes ints as floats)."""
    import json

    import yaml

    try:
        raw = json.loads(params_yaml)  # the compiled default is JSON (where 1e-06 is a number)
    except json.JSONDecodeError:
        raw = yaml.safe_load(params_yaml)
    for name, value in values.items():
        if isinstance(get_key(raw, EXPOSED[name]), int) and isinstance(value, float) and value.is_integer():
            value = int(value)
        set_key(raw, EXPOSED[name], value)
    params_from_dict(raw)  # one-line error naming the key if a value is wrong
    return yaml.safe_dump(raw, sort_keys=False)


def typed_arguments(pairs: typing.Iterable[str], params: dict) -> dict[str, typing.Any]:
    """``NAME=VALUE`` run arguments typed from the pipeline's signature (each exposed parameter has the type
    of its params.yaml value); an unknown name or a value of the wrong type is a one-line ConfigError."""
    from specgan.core.config import ConfigError, plain_scalar

    out: dict[str, typing.Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError(f"--arg {pair!r}: expected NAME=VALUE")
        if name == "params_yaml":
            out[name] = text
            continue
        if name not in EXPOSED:
            raise ConfigError(f"--arg {name}: not a pipeline parameter (known: {', '.join(sorted(EXPOSED))}, "
                              "params_yaml)")
        kind = type(get_key(params, EXPOSED[name]))
        value = text if kind is str else plain_scalar(text)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ConfigError(f"--arg {name}: expected {kind.__name__}, got {text!r}")
        out[name] = value
    return out
