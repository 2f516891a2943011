"""The package's folders depend one way: a newcomer can read them bottom-up, and the core never imports kfp."""

from __future__ import annotations

import ast

from tests.services import ROOT

# Each folder of specgan/ may import only the folders listed before it (and itself).
LAYERS = ["core", "data", "model", "audio", "training", "evaluation", "registry", "playback"]


def imports_of(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_folders_import_only_the_layers_below_them():
    wrong = []
    for folder in LAYERS:
        allowed = set(LAYERS[: LAYERS.index(folder) + 1])
        for path in sorted((ROOT / "specgan" / folder).glob("*.py")):
            for name in imports_of(path):
                parts = name.split(".")
                if parts[0] == "specgan" and len(parts) > 1 and parts[1] in LAYERS and parts[1] not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_every_module_sits_in_a_layer_folder():
    top = sorted(p.name for p in (ROOT / "specgan").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "demo.py"]
    assert sorted(p.name for p in (ROOT / "specgan").iterdir() if p.is_dir() and p.name != "__pycache__") == \
        sorted(LAYERS)


def test_the_core_package_never_imports_kfp():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "specgan").rglob("*.py")
                 if any(n.split(".")[0] in {"kfp", "pipeline", "components"} for n in imports_of(p))]
    assert offenders == []
