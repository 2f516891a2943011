"""Switch the dataset the pipeline is fed: one command updates data.dvc and params.yaml together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from specgan.core.atomic import atomic_path
from specgan.core.config import load_params

DATA_DVC = Path("data.dvc")
SOURCE_OUT = "data/source"  # where `dvc repro` materializes the pinned dataset


def data_dvc_text(source: str) -> str:
    """A data.dvc that names ``source`` without a hash: the first `dvc repro` fetches and pins it."""
    dvc_path = source.removeprefix("file://")
    return yaml.safe_dump({"deps": [{"path": dvc_path}], "outs": [{"path": SOURCE_OUT}]}, sort_keys=False)


def set_source(source: str, root: str | Path = ".", sha256: str = "") -> None:
    """Point data.dvc and params.yaml's ``data.source`` (and ``data.sha256``) at ``source``."""
    root = Path(root)
    params_path = root / "params.yaml"
    text = params_path.read_text()
    text = _replace_key(text, "data", "source", source)
    text = _replace_key(text, "data", "sha256", sha256)
    with atomic_path(params_path) as tmp:
        tmp.write_text(text)
        load_params(tmp)  # refuse to write a params.yaml that no longer validates
    with atomic_path(root / DATA_DVC) as tmp:
        tmp.write_text(data_dvc_text(source))


def _replace_key(text: str, section: str, key: str, value: str) -> str:
    """Replace ``section.key``'s scalar in YAML text, keeping comments and layout."""
    lines = text.splitlines(keepends=True)
    in_section = False
    for i, line in enumerate(lines):
        if re.match(rf"^{section}:\s*(#.*)?$", line):
            in_section = True
            continue
        if in_section and re.match(r"^\S", line):
            break
        m = re.match(rf"^(\s+{key}:\s*)(\S.*?|)(\s+#.*)?$", line.rstrip("\n"))
        if in_section and m:
            lines[i] = f"{m.group(1)}{json.dumps(value)}{m.group(3) or ''}\n"  # JSON strings are YAML
            return "".join(lines)
    raise KeyError(f"params.yaml has no {section}.{key}")


def read_pinned_source(root: str | Path = ".") -> str:
    """The source data.dvc names."""
    return yaml.safe_load((Path(root) / DATA_DVC).read_text())["deps"][0]["path"]
