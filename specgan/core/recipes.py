"""Named recipes: sets of params values under ``recipes:`` in params.yaml, one of them named by ``recipe:``.

``recipes.seed`` lists SPEC.md's value of every key that any recipe sets; every other recipe lists what it
changes over the recipe it ``extends`` (``seed`` when it names none). The sections of params.yaml hold the
values a run uses: ``specgan recipe NAME`` writes a recipe's values into them, and a run's recipe label is
its name plus every key where the sections differ from it (``stable`` or ``stable, train.dcgan.lr=0.001``),
which MLflow, the run names and the gallery show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from specgan.core.config import ConfigError, get_key

SEED = "seed"
EXTENDS = "extends"


def check_recipes(recipes: Any, raw: dict) -> dict[str, dict[str, Any]]:
    """Validate the ``recipes:`` mapping against the sections' keys; one-line errors naming the recipe."""
    if not isinstance(recipes, dict) or SEED not in recipes:
        raise ConfigError(f"recipes: expected a mapping of named recipes with a '{SEED}' (SPEC.md's values)")
    for name, body in recipes.items():
        if not isinstance(body, dict):
            raise ConfigError(f"recipes.{name}: expected a mapping of params keys to values")
        for key, value in body.items():
            if key == EXTENDS:
                if value not in recipes or value == name:
                    raise ConfigError(f"recipes.{name}.extends: no recipe named {value!r}")
                continue
            try:
                current = get_key(raw, key)
            except ConfigError:
                raise ConfigError(f"{key}: missing or unknown (recipes.{name} sets it)") from None
            if isinstance(current, dict) or isinstance(value, (dict, list)):
                raise ConfigError(f"recipes.{name}: {key}: expected a single value")
    varied = {k for body in recipes.values() for k in body if k != EXTENDS}
    missing = sorted(varied - set(recipes[SEED]))
    if missing:
        raise ConfigError(f"recipes.{SEED}: must list SPEC.md's value of every key a recipe sets; missing "
                          f"{', '.join(missing)}")
    for name in recipes:
        recipe_values(recipes, name)  # a loop in `extends` is an error here
    return recipes


def recipe_values(recipes: dict, name: str) -> dict[str, Any]:
    """Every key the recipe ``name`` decides, with its value: seed's, then each recipe it extends, then its own."""
    if name not in recipes:
        raise ConfigError(f"recipe: no recipe named {name!r} (known: {', '.join(recipes)})")
    chain, seen = [], set()
    while name is not None:
        if name in seen:
            raise ConfigError(f"recipes.{name}.extends: a loop")
        seen.add(name)
        chain.append(name)
        name = recipes[name].get(EXTENDS, SEED if name != SEED else None)
    values: dict[str, Any] = {}
    for step in reversed(chain):
        values.update({k: v for k, v in recipes[step].items() if k != EXTENDS})
    return values


def apply_recipe(raw: dict, recipes: dict, name: str) -> dict:
    """``raw`` with the recipe's values written into its sections and ``recipe: name`` (in place)."""
    from specgan.core.config import set_key

    for key, value in recipe_values(recipes, name).items():
        set_key(raw, key, value)
    raw["recipe"] = name
    return raw


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def recipe_changes(raw: dict, recipes: dict, name: str) -> list[str]:
    """``key=value`` for every key where the sections differ from the recipe ``name``."""
    return [f"{k}={json.dumps(get_key(raw, k))}" for k, v in recipe_values(recipes, name).items()
            if not _same(get_key(raw, k), v)]


def recipe_label(raw: dict, recipes: dict, name: str) -> str:
    """The recipe a run used, as people read it: ``stable``, or ``stable, train.dcgan.lr=0.001``."""
    return ", ".join([name, *recipe_changes(raw, recipes, name)])


def write_recipe(params_path: str | Path, name: str) -> str:
    """Write the recipe ``name``'s values and ``recipe: name`` into a params.yaml (comments kept, atomically,
    validated first); returns the label the file now loads with."""
    from specgan.core.atomic import atomic_path
    from specgan.core.config import load_params, safe_yaml
    from specgan.core.yaml_text import replace_scalar

    path = Path(params_path)
    text = path.read_text()
    raw = safe_yaml(text, str(path))
    recipes = check_recipes(raw.get("recipes") if isinstance(raw, dict) else None, raw)
    for key, value in [*recipe_values(recipes, name).items(), ("recipe", name)]:
        if not _same(get_key(raw, key), value):
            text = replace_scalar(text, key, value)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
        return load_params(tmp).recipe
