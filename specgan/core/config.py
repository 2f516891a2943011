"""Typed, frozen, validated configuration loaded from params.yaml (the only source of values)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_PARAMS = Path("params.yaml")


MAX_SOUNDS = 256  # the most sounds one synthesize call or one serving request makes (bounded memory)


MAX_PARAMS_BYTES = 256 * 2**10  # params.yaml is about 12 KB: a file this large is refused before it is parsed
MAX_TEXT = 4096  # the longest text value (a URL, a path)


class ConfigError(ValueError):
    """A one-line error naming the offending params key."""


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open}


def _f(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A required field with an optional numeric range."""
    return field(metadata=_range(lo, hi, lo_open))


@dataclass(frozen=True)
class DataConfig:
    source: str = _f()
    sha256: str = _f()
    split: Literal["train", "valid", "test", "all"] = _f()
    labels: Literal["manifest", "folder", "none"] = _f()


@dataclass(frozen=True)
class DownloadConfig:
    retries: int = _f(1, 100)
    backoff_s: float = _f(0, 600)
    timeout_s: float = _f(0, 3600, lo_open=True)
    deadline_s: float = _f(0, lo_open=True)  # the whole transfer, retries included
    max_extracted_mb: float = _f(0, lo_open=True)  # archive bombs: total size of the members
    max_members: int = _f(1)
    max_ratio: float = _f(1)  # extracted size / archive size


@dataclass(frozen=True)
class FeaturesConfig:
    sample_rate: int = _f(1000, 384000)
    clip_samples: int = _f(1)
    tail_pad: int = _f(0)
    n_fft: int = _f(2)
    win_length: int = _f(2)
    hop_length: int = _f(1)
    log_eps: float = _f(0, 1, lo_open=True)
    shards: int = _f(1, 100000)
    workers: int = _f(0, 1024)

    @property
    def n_bins(self) -> int:
        """One-sided frequency bins (129 for n_fft 256)."""
        return self.n_fft // 2 + 1

    @property
    def n_frames(self) -> int:
        """STFT frames without centering (128 for the SPEC values)."""
        return (self.clip_samples + self.tail_pad - self.n_fft) // self.hop_length + 1


@dataclass(frozen=True)
class NormalizeConfig:
    scale: float = _f(0, lo_open=True)
    clip: float = _f(0, lo_open=True)


@dataclass(frozen=True)
class ModelConfig:
    latent_dim: int = _f(1)
    model_dim: int = _f(1)
    kernel_size: int = _f(1, 15)
    leaky_slope: float = _f(0, 1)
    spectral_norm: bool = _f()  # stabilizer, not in SPEC.md: spectral normalization of D (Miyato et al. 2018)
    minibatch_std: int = _f(0, 64)  # stabilizer, not in SPEC.md: D sees the std over groups of this size; 0 = off
    upsample: Literal["zeros", "nn"] = _f()  # G's upsampling: transposed conv (SPEC.md) | nearest + conv (paper's code)
    conditional: bool = _f()  # not in SPEC.md: class-conditional G (one-hot) and projection D, labels by data.labels


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _f(0, 1, lo_open=True)
    beta1: float = _f(0, 1)
    beta2: float = _f(0, 1)
    eps: float = _f(0, 1, lo_open=True)
    d_steps: int = _f(1, 100)
    gp_weight: float = _f(0)
    r1_weight: float = _f(0)  # stabilizer, not in SPEC.md: R1 penalty gamma (Mescheder et al. 2018); 0 = off
    r1_every: int = _f(1, 64)  # lazy R1 (Karras et al. 2020): the penalty every k-th D update, weighted k
    d_lr_scale: float = _f(0, 100, lo_open=True)  # D learning rate = lr x this (TTUR, Heusel et al. 2017); 1 = SPEC


@dataclass(frozen=True)
class TrainConfig:
    loss: Literal["dcgan", "wgan_gp"] = _f()  # SPEC.md 7: the MATLAB example (dcgan) or the paper (wgan_gp)
    epochs: int = _f(1)
    batch_size: int = _f(1)
    seed: int = _f(0)
    checkpoint_every_epochs: int = _f(1)
    keep_checkpoints: int = _f(1)
    log_every_iters: int = _f(1)
    grid_every_epochs: int = _f(1)
    device: Literal["auto", "cpu", "cuda"] = _f()
    compile: bool = _f()
    bf16: bool = _f()
    envelope_weight: float = _f(0)  # not in SPEC.md: G matches the mean time envelope (training.envelope)
    envelope_quantile_weight: float = _f(0)  # not in SPEC.md: G matches each frame's envelope quantiles; 0 = off
    envelope_floor_db: float = _f(-200, 0)  # the envelope's floor, in dB under each clip's loudest frame
    g_ema: float = _f(0, 0.9999)  # not in SPEC.md: export a moving average of G's weights, this decay; 0 = off
    class_balance: float = _f(0, 1)  # not in SPEC.md: draw clips with weight count(class)**-b; 0 = uniform
    class_groups: bool = _f()  # not in SPEC.md: a conditional model's D sees minibatch-std groups of one class
    cutout: float = _f(0, 0.9)  # not in SPEC.md: D sees each clip with a rectangle this fraction a side zeroed
    dcgan: OptimConfig = _f()
    wgan_gp: OptimConfig = _f()

    @property
    def optim(self) -> OptimConfig:
        """The optimizer settings of the selected loss."""
        return getattr(self, self.loss)


@dataclass(frozen=True)
class RenderConfig:
    n_samples: int = _f(1)
    seed: int = _f(0)
    griffin_lim_iters: int = _f(1, 10000)
    momentum: float = _f(0, 1)
    pad_frames: int = _f(0)


@dataclass(frozen=True)
class EvaluateConfig:
    n_generated: int = _f(4)
    real_split: Literal["train", "valid", "test", "all"] = _f()
    n_mels: int = _f(8, 512)
    mel_n_fft: int = _f(64)
    mel_hop: int = _f(16)
    ndb_bins: int = _f(2)
    ndb_alpha: float = _f(0, 1, lo_open=True)
    seed: int = _f(0)
    collapse_ratio: float = _f(0, 1)
    memorization_ratio: float = _f(0, 1)
    min_heldout: int = _f(4)  # fewer usable distinct held-out clips is an error: the baseline would be noise
    bootstrap: int = _f(0, 10000)  # resamples for the Frechet distances' standard errors (0 = none)
    class_mix: Literal["data", "even"] = _f()  # a conditional model's classes: as the training clips' are, or even


@dataclass(frozen=True)
class RegistryConfig:
    model_name: str = _f()
    gate_metric: str = _f()
    gate_mode: Literal["min", "max"] = _f()
    gate_margin: float = _f(0)
    refuse_collapse: bool = _f()  # never promote a version whose evaluation flags mode collapse
    refuse_memorization: bool = _f()  # ... or memorization
    min_class_share: float = _f(0, 1)  # labelled data: every class must get at least this share of samples


@dataclass(frozen=True)
class SynthesizeConfig:
    count: int = _f(1, MAX_SOUNDS)  # the largest batch synthesize makes at once (memory grows with it)
    seed: int = _f(0)
    tempo_bpm: float = _f(1, 1000)
    reverb_room_size: float = _f(0, 1)
    reverb_damping: float = _f(0, 1)
    reverb_wet_level: float = _f(0, 1)


@dataclass(frozen=True)
class Params:
    recipe: str  # the named recipe and what differs from it (specgan.core.recipes.recipe_label)
    data: DataConfig
    download: DownloadConfig
    features: FeaturesConfig
    normalize: NormalizeConfig
    model: ModelConfig
    train: TrainConfig
    render: RenderConfig
    evaluate: EvaluateConfig
    registry: RegistryConfig
    synthesize: SynthesizeConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (what params.yaml holds)."""
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (all when none), for provenance."""
        d = self.to_dict()
        picked = {k: d[k] for k in (sections or d.keys())}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:12]


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _check_value(key: str, tp: Any, value: Any, meta: typing.Mapping[str, Any]) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    else:
        ok = isinstance(value, tp)
        if ok and isinstance(value, str) and len(value) > MAX_TEXT:
            raise ConfigError(f"{key}: {len(value):,} characters, more than a param holds (at most {MAX_TEXT:,})")
    if not ok:
        hint = ""
        if tp is float and isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
            hint = f" (YAML reads {value} as text: write it with a dot, e.g. {float(value):.1e})"
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}{hint}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        op = ">" if meta.get("lo_open") else ">="
        raise ConfigError(f"{key}: must be {op} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: must be <= {hi}, got {value!r}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix or "params"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{prefix + '.' if prefix else ''}{key}: unknown key")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in raw:
            raise ConfigError(f"{key}: missing")
        values[name] = _check_value(key, hints[name], raw[name], f.metadata)
    return cls(**values)


def build_section(cls: type, raw: Any, name: str) -> Any:
    """One section of params (e.g. RenderConfig) from a mapping, validated as params.yaml is."""
    return _build(cls, raw, name)


def get_key(raw: dict, key: str) -> Any:
    """The value of the dotted ``key`` (e.g. ``train.epochs``) in a raw params dict; an unknown key is a
    ConfigError."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{key}: unknown key")
        node = node[part]
    return node


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set the dotted ``key`` (e.g. ``train.epochs``) of a raw params dict; an unknown key is a ConfigError."""
    node = raw
    *parents, leaf = key.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"{key}: unknown key")
        node = node[p]
    if leaf not in node:
        raise ConfigError(f"{key}: unknown key")
    node[leaf] = value


_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|nan)", re.IGNORECASE)


def plain_scalar(text: str) -> Any:
    """A ``--set`` value as a plain scalar: decimal int, decimal float, true/false, else the text itself
    (no YAML tags, aliases or 1.1 surprises such as ``on`` = true or ``0x2`` = 2)."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def safe_yaml(text: str, where: str) -> Any:
    """yaml.safe_load without aliases: a few bytes of nested aliases can expand to gigabytes."""
    import yaml  # imported here so GPU scripts can use the config classes without PyYAML

    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ConfigError(f"{where}: YAML aliases (*name) are not allowed in params")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _apply_overrides(raw: dict, overrides: typing.Iterable[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        key, text = item.split("=", 1)
        set_key(raw, key, plain_scalar(text))
    return raw


def override(raw: dict, overrides: typing.Iterable[str]) -> dict:
    """A copy of a nested dict with ``KEY=VALUE`` overrides applied (values parsed as plain YAML scalars)."""
    return _apply_overrides(json.loads(json.dumps(raw)), overrides)


def params_from_dict(raw: Any, overrides: typing.Iterable[str] = ()) -> Params:
    """Validate a nested dict (with optional KEY=VALUE overrides) into Params.

    With a ``recipes:`` mapping (a params.yaml), an override ``recipe=NAME`` first writes that recipe's values
    into the sections, the other overrides follow, and ``recipe`` becomes the recipe's label (its name and
    what differs from it). Without one (a task's resolved params), the sections and the label are taken as
    they are."""
    from specgan.core.recipes import apply_recipe, check_recipes, recipe_label

    if not isinstance(raw, dict):
        return _build(Params, raw, "")
    raw = json.loads(json.dumps(raw))
    recipes = raw.pop("recipes", None)
    overrides = list(overrides)
    if recipes is None:
        return _build(Params, _apply_overrides(raw, overrides), "")
    check_recipes(recipes, raw)
    chosen = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "recipe"]
    if chosen:
        apply_recipe(raw, recipes, chosen[-1])
    raw = _apply_overrides(raw, [o for o in overrides if o.split("=", 1)[0] != "recipe"])
    name = raw.get("recipe")
    if not isinstance(name, str) or name not in recipes:
        raise ConfigError(f"recipe: expected one of {', '.join(map(repr, recipes))}, got {name!r}")
    raw["recipe"] = recipe_label(raw, recipes, name)
    return _build(Params, raw, "")


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: typing.Iterable[str] = ()) -> Params:
    """Load and validate params.yaml; errors are one line naming the key."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PARAMS_BYTES:  # before parsing: a huge file would cost minutes and gigabytes to refuse
            raise ConfigError(f"{path}: {size / 2**20:.1f} MB, more than a params file holds "
                              f"(at most {MAX_PARAMS_BYTES // 2**10} KB)")
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    raw = safe_yaml(text, str(path))
    try:
        return params_from_dict(raw, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
