"""Switch the dataset the pipeline is fed: one command updates data.dvc and params.yaml together."""

from __future__ import annotations

import os
import stat
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
    check_importable(source, root)
    params_path = root / "params.yaml"
    text = params_path.read_text()
    text = replace_scalar(text, "data.source", source)
    text = replace_scalar(text, "data.sha256", sha256)
    with atomic_path(params_path) as tmp:
        tmp.write_text(text)
        load_params(tmp)  # refuse to write a params.yaml that no longer validates
    with atomic_path(root / DATA_DVC) as tmp:
        tmp.write_text(data_dvc_text(source))


MAX_LISTED = 3  # odd entries named in the error; the rest counted


def check_importable(source: str, root: Path) -> None:
    """Refuse a local source that DVC's import cannot take: a special file (a FIFO hangs it, a socket or device
    breaks it) or a name that is not UTF-8 ("surrogates not allowed", before any specgan code runs)."""
    if source.startswith(("http://", "https://", "s3://")):
        return
    path = root / Path(source.removeprefix("file://")).expanduser()  # relative to the project, as in data.dvc
    if not path.exists():
        return  # DVC names what is missing
    odd: list[str] = []
    entries = [Path(d) / n for d, dirs, files in os.walk(path) for n in (*dirs, *files)] if path.is_dir() else [path]
    for entry in entries:
        rel = entry.relative_to(path) if entry != path else entry
        try:
            os.fsdecode(entry).encode("utf-8")
        except UnicodeEncodeError:
            odd.append(f"a name that is not UTF-8 ({os.fsencode(rel)!r})")
            continue
        mode = entry.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            odd.append(f"a special file ({rel}: not a regular file)")
    if odd:
        more = f" and {len(odd) - MAX_LISTED} more" if len(odd) > MAX_LISTED else ""
        raise SpecganError(f"{source} holds what `dvc repro` cannot import: {'; '.join(odd[:MAX_LISTED])}{more}: "
                           "move or rename them (features would only reject them), then set-source again")


def read_pinned_source(root: str | Path = ".") -> str:
    """The source data.dvc names."""
    return yaml.safe_load((Path(root) / DATA_DVC).read_text())["deps"][0]["path"]
