"""Outputs never destroy user data: a step replaces its --out folder only when it is new, empty or its own."""

from __future__ import annotations

from pathlib import Path

from tests.services import ROOT, run_cli


def _stray(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_out_over_a_strangers_folder_is_refused_and_the_file_survives(tmp_path):
    kit = tmp_path / "kit"
    run_cli("synth-dataset", "--out", str(kit), "--per-class", "1")
    params = ["--params", str(ROOT / "params.yaml")]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    for step in (["download", "--source", str(kit)], ["features", "--data", str(kit), "--split", "all"]):
        proc = run_cli(*step, "--out", str(mine), *params, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and "refusing to replace a folder" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert (mine / "thesis.txt").read_text() == "years of work"

    # Its own output is replaced on a rerun; another step's output is not.
    raw = tmp_path / "raw"
    run_cli("download", "--source", str(kit), "--out", str(raw), *params, cwd=tmp_path)
    run_cli("download", "--source", str(kit), "--out", str(raw), *params, cwd=tmp_path)
    assert (raw / ".specgan-output").read_text().strip() == "download"
    other = run_cli("features", "--data", str(kit), "--split", "all", "--out", str(raw), *params, cwd=tmp_path,
                    check=False)
    assert other.returncode == 1 and "`specgan download` wrote it" in other.stderr

    # The current folder, a folder above it, and a folder overlapping an input are refused.
    work = tmp_path / "work"
    work.mkdir()
    for out, data in ((".", kit), ("..", kit), (str(kit), kit), (str(kit / "sub"), kit), (str(tmp_path), kit)):
        proc = run_cli("features", "--data", str(data), "--split", "all", "--out", out, *params, cwd=work,
                       check=False)
        assert proc.returncode == 1 and "--out" in proc.stderr, (out, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not _stray(work) and not _stray(tmp_path), (_stray(work), _stray(tmp_path))


def test_a_failed_step_leaves_no_temporary_folders(tmp_path):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    (empty / "a.wav").write_text("not audio")
    out = tmp_path / "features"
    proc = run_cli("features", "--data", str(empty), "--split", "all", "--out", str(out),
                   "--params", str(ROOT / "params.yaml"), "--workers", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "rejected" in proc.stderr
    assert not out.exists() and not _stray(tmp_path)
