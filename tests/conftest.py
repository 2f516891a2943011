"""Shared fixtures: the synthetic kit, its features, and the real services (from tests.services)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from specgan.core.config import Params, load_params
from specgan.data.synth_kit import make_kit
from tests.services import ROOT, FileServer, serve_files, start_mlflow_server, start_moto_server


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def seed_params() -> Params:
    """The seed recipe (SPEC.md's values, no stabilizers): what the networks' own tests check against."""
    return load_params(ROOT / "params.yaml", ["recipe=seed"])


@pytest.fixture(scope="session")
def kit_archive(tmp_path_factory) -> Path:
    return make_kit(tmp_path_factory.mktemp("kit") / "drums.tar.gz", n_per_class=6, seed=0)


@pytest.fixture(scope="session")
def kit_dir(tmp_path_factory) -> Path:
    return make_kit(tmp_path_factory.mktemp("kitdir") / "kit", n_per_class=6, seed=0)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, kit_dir, params) -> tuple[Path, Path]:
    """Features and stats of the synthetic kit (all splits)."""
    from specgan.data.features import run_features
    from specgan.data.stats import run_stats

    root = tmp_path_factory.mktemp("prepared")
    run_features(kit_dir, root / "features", params.features, "all", workers=1)
    run_stats(root / "features", root / "stats.json", params.features.n_frames)
    return root / "features", root / "stats.json"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real MLflow server with local artifacts."""
    home = tmp_path_factory.mktemp("mlflow")
    with start_mlflow_server(home, str(home / "artifacts")) as url:
        yield url


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    with serve_files() as state:
        yield state


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    with start_moto_server() as url:
        yield url
