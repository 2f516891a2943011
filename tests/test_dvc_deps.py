"""dvc.yaml's code deps cannot drift: each stage lists every project module its command imports."""

from __future__ import annotations

import ast

import pytest
import yaml

from tests.services import ROOT

# The module that implements each stage's `specgan` subcommand (specgan/cli.py imports it lazily).
STAGE_MODULES = {"download": "specgan.data.download", "features": "specgan.data.features",
                 "stats": "specgan.data.stats", "train": "specgan.training.train",
                 "render": "specgan.evaluation.render", "evaluate": "specgan.evaluation.evaluate",
                 "register": "specgan.registry.promotion"}
# Modules every command loads through the CLI itself (argument parsing, params, errors): they change how a
# command is called, not what it computes, and are not listed (a params change is tracked by `params:`).
CLI_ONLY = {"specgan/__init__.py", "specgan/cli.py", "specgan/core/config.py", "specgan/core/errors.py"}


def imported_modules(module: str, seen: set[str] | None = None) -> set[str]:
    """The project modules ``module`` imports, transitively, counting imports inside functions too."""
    seen = set() if seen is None else seen
    if module in seen:
        return seen
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        return seen
    seen.add(module)
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] == "specgan":
                imported_modules(name, seen)
    return seen


def missing_deps(stage: str, deps: list[str]) -> list[str]:
    files = {m.replace(".", "/") + ".py" for m in imported_modules(STAGE_MODULES[stage])}
    covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
    return sorted(f for f in files - CLI_ONLY if not covered(f))


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_deps_list_every_module_the_command_imports(stage):
    assert missing_deps(stage, stages()[stage]["deps"]) == []


def test_the_check_fails_when_a_dep_is_removed():
    deps = stages()["train"]["deps"]
    assert "specgan/training" in deps  # a folder covers its modules
    missing = missing_deps("train", [d for d in deps if d != "specgan/training"])
    assert "specgan/training/checkpoints.py" in missing and "specgan/training/train.py" in missing
    assert "specgan.model.networks" in imported_modules("specgan.evaluation.render")  # through synthesis: transitive
