"""data.dvc and the download stage with the real DVC: switch source, repro, push and pull through moto S3."""

from __future__ import annotations

import shutil

import pytest
import yaml

from specgan.data.source import read_pinned_source
from specgan.data.storage import s3_client
from tests.services import ROOT, copy_project, run_cli, run_dvc

pytestmark = pytest.mark.slow


def test_committed_data_dvc_names_the_public_archive_and_agrees_with_params(params):
    assert read_pinned_source(ROOT) == params.data.source
    assert params.data.source.endswith("/drums.tar.gz")


def test_repro_fetches_pins_and_round_trips_through_s3(tmp_path, file_server, kit_archive, s3_server):
    repo = copy_project(tmp_path / "repo")
    file_server.files["drums.tar.gz"] = kit_archive.read_bytes()
    url = file_server.url("drums.tar.gz")
    run_cli("set-source", url, cwd=repo)
    assert read_pinned_source(repo) == url
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["source"] == url
    assert "# http(s)://" in (repo / "params.yaml").read_text()  # comments survive

    run_dvc("repro", "download", cwd=repo)
    assert len(list((repo / "data" / "raw").rglob("*.wav"))) == 42
    pinned = yaml.safe_load((repo / "data.dvc").read_text())
    assert pinned["outs"][0]["md5"] and pinned["deps"][0]["checksum"]  # the first fetch recorded hashes
    assert "up to date" in run_dvc("status", "download", cwd=repo).stdout

    s3_client().create_bucket(Bucket="specgan-dvc")
    run_dvc("remote", "modify", "--local", "storage", "endpointurl", s3_server, cwd=repo)
    run_dvc("push", "download", "data.dvc", cwd=repo)
    assert s3_client().list_objects_v2(Bucket="specgan-dvc")["KeyCount"] >= 40
    file_server.files.clear()  # the pull below must come from S3, not the source URL
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run_dvc("pull", "download", "data.dvc", cwd=repo)
    assert len(list((repo / "data" / "raw").rglob("*.wav"))) == 42
    assert (repo / "data" / "source").read_bytes() == kit_archive.read_bytes()


def test_local_folder_source(tmp_path, kit_dir):
    repo = copy_project(tmp_path / "repo")
    run_cli("set-source", str(kit_dir), cwd=repo)
    run_dvc("repro", "download", cwd=repo)
    assert len(list((repo / "data" / "raw").rglob("*.wav"))) == 42


def test_features_params_cover_every_key_but_workers(params):
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["features"]
    listed = {p for p in stage["params"] if p.startswith("features.")}
    expected = {f"features.{k}" for k in params.to_dict()["features"]} - {"features.workers"}
    assert listed == expected


def test_a_folder_dvc_cannot_import_is_refused_by_set_source_naming_what(tmp_path, kit_dir):
    """A FIFO hangs DVC's import and a name that is not UTF-8 breaks it before any specgan code runs: set-source
    names both in one line and leaves params.yaml and data.dvc as they were."""
    import os

    repo = copy_project(tmp_path / "repo")
    kit = shutil.copytree(kit_dir, tmp_path / "kit")
    before = {f: (repo / f).read_bytes() for f in ("params.yaml", "data.dvc")}
    os.mkfifo(kit / "drums" / "train" / "pipe.wav")
    odd = kit / "drums" / "train" / os.fsdecode(b"caf\xe9.wav")
    odd.write_bytes(b"RIFF")
    proc = run_cli("set-source", str(kit), cwd=repo, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot import" in proc.stderr and "pipe.wav: not a regular file" in proc.stderr
    assert "not UTF-8 (b'drums/train/caf\\xe9.wav')" in proc.stderr
    assert {f: (repo / f).read_bytes() for f in before} == before
    os.unlink(kit / "drums" / "train" / "pipe.wav")
    odd.unlink()
    run_cli("set-source", str(kit), cwd=repo)  # the same folder without them: accepted
