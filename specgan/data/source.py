"""Switch the dataset the pipeline is fed: one command updates data.dvc and params.yaml together."""

from __future__ import annotations

from pathlib import Path

import yaml

from specgan.core.atomic import atomic_path
from specgan.core.config import load_params
from specgan.core.errors import SpecganError
from specgan.core.redact import has_credentials
from specgan.core.yaml_text import replace_scalar

DATA_DVC = Path("data.dvc")
SOURCE_OUT = "data/source"  # where `dvc repro` materializes the pinned dataset


def data_dvc_text(source: str) -> str:
    """A data.dvc that names ``source`` without a hash: the first `dvc repro` fetches and pins it."""
    dvc_path = source.removeprefix("file://")
    return yaml.safe_dump({"deps": [{"path": dvc_path}], "outs": [{"path": SOURCE_OUT}]}, sort_keys=False)


def set_source(source: str, root: str | Path = ".", sha256: str = "") -> None:
    """Point data.dvc and params.yaml's ``data.source`` (and ``data.sha256``) at ``source``."""
    if has_credentials(source):
        raise SpecganError(
            "the source URL carries credentials (a password or a presigned signature), and set-source writes it "
            "into params.yaml and data.dvc, files people commit: name the object as s3://bucket/key with "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (AWS_ENDPOINT_URL for MinIO), or "
            "download it once and set-source the local file")
    root = Path(root)
    params_path = root / "params.yaml"
    text = params_path.read_text()
    text = replace_scalar(text, "data.source", source)
    text = replace_scalar(text, "data.sha256", sha256)
    with atomic_path(params_path) as tmp:
        tmp.write_text(text)
        load_params(tmp)  # refuse to write a params.yaml that no longer validates
    with atomic_path(root / DATA_DVC) as tmp:
        tmp.write_text(data_dvc_text(source))


def read_pinned_source(root: str | Path = ".") -> str:
    """The source data.dvc names."""
    return yaml.safe_load((Path(root) / DATA_DVC).read_text())["deps"][0]["path"]
