"""Render, register, promote, load in a fresh process, synthesize and serve, against a real MLflow server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import requests
import soundfile as sf

from tests.conftest import BIN, free_port, run_cli, train_args, wait_http

pytestmark = pytest.mark.slow

GATE = ["--set", "registry.gate_metric=final_g_loss", "--set", "registry.model_name=drums-test"]


@pytest.fixture(scope="module")
def env(mlflow_server) -> dict:
    return {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": "registry-test"}


@pytest.fixture(scope="module")
def two_models(prepared, tmp_path_factory, env) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    outs = []
    for seed in (1, 2):
        out = root / f"seed{seed}"
        run_cli(*train_args(prepared, out, 2, "--set", f"train.seed={seed}"), env=env)
        outs.append(out / "generator.pt")
    return outs


def test_render_writes_audio_plots_gallery_and_logs_them(two_models, tmp_path, env):
    out = tmp_path / "render"
    run_cli("render", "--generator", str(two_models[0]), "--out", str(out), "--n", "3", env=env)
    wavs = sorted(out.glob("sample_*.wav"))
    assert len(wavs) == 3
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and 15000 < info.frames < 17000
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 3 and "data:audio/wav;base64," in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    run_id = json.loads((out / "render.json").read_text())["run_id"]
    logged = {a.path for a in mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).list_artifacts(run_id, "render")}
    assert {"render/index.html", "render/sample_000.wav", "render/waveforms.png"} <= logged
    again = tmp_path / "again"
    run_cli("render", "--generator", str(two_models[0]), "--out", str(again), "--n", "3", env=env)
    assert (again / "sample_001.wav").read_bytes() == wavs[1].read_bytes()  # seeded


def test_register_promote_load_synthesize_and_serve(two_models, tmp_path, env):
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    first = run_cli("register", "--generator", str(two_models[0]), "--out", str(tmp_path / "r1.json"), *GATE, env=env)
    assert "version 1 as @challenger" in first.stdout
    v1 = client.get_model_version_by_alias("drums-test", "challenger")
    assert {"data_version", "params_hash", "git_commit", "metric.final_g_loss"} <= set(v1.tags)
    assert "champion" in run_cli("promote", *GATE, env=env).stdout  # no champion yet: promoted

    run_cli("register", "--generator", str(two_models[1]), *GATE, env=env)
    v2 = client.get_model_version_by_alias("drums-test", "challenger")
    assert v2.version == "2"
    g1, g2 = float(v1.tags["metric.final_g_loss"]), float(v2.tags["metric.final_g_loss"])
    worse_mode = "max" if g2 < g1 else "min"  # the mode under which version 2 loses
    refused = run_cli("promote", *GATE, "--set", f"registry.gate_mode={worse_mode}", env=env, check=False)
    assert refused.returncode == 1 and "refused" in refused.stderr and "does not beat the champion" in refused.stderr
    assert client.get_model_version_by_alias("drums-test", "champion").version == "1"
    better_mode = "min" if worse_mode == "max" else "max"
    margin = run_cli("promote", *GATE, "--set", f"registry.gate_mode={better_mode}",
                     "--set", "registry.gate_margin=1000.0", env=env, check=False)
    assert margin.returncode == 1 and "margin 1000" in margin.stderr
    forced = run_cli("promote", *GATE, "--set", f"registry.gate_mode={worse_mode}", "--force", env=env)
    assert "(forced)" in forced.stdout
    champ = client.get_model_version_by_alias("drums-test", "champion")
    assert champ.version == "2" and champ.tags["promotion_forced"] == "true"
    assert champ.tags["previous_champion"] == "1"

    # A version without the gate metric is never promoted, not even with --force.
    nometric = run_cli("register", "--generator", str(two_models[0]), "--set", "registry.model_name=drums-test",
                       "--set", "registry.gate_metric=missing_metric", env=env)
    assert "no gate metric" in nometric.stdout
    never = run_cli("promote", "--set", "registry.model_name=drums-test", "--set",
                    "registry.gate_metric=missing_metric", "--force", env=env, check=False)
    assert never.returncode == 1 and "never promoted" in never.stderr

    # The training outputs are gone: the registered model alone makes audio, in a fresh process.
    for gen in two_models:
        shutil.rmtree(gen.parent)
    code = ("import mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/drums-test@champion'); "
            "a = m.predict(pd.DataFrame({'seed': [5, 6]})); print(a.shape, a.dtype, float(abs(a).max()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split(")")[0].startswith("(2, ") and "float32" in proc.stdout

    syn = tmp_path / "syn"
    run_cli("synthesize", "--model", "models:/drums-test@champion", "--out", str(syn), "--count", "3",
            "--reverb", "--room-size", "0.8", "--sequence", "--tempo", "100", env=env)
    assert sorted(p.name for p in syn.iterdir()) == ["drum_000.wav", "drum_001.wav", "drum_002.wav", "drums.png",
                                                      "loop.wav"]
    assert sf.info(str(syn / "loop.wav")).frames >= 3 * int(0.6 * 16000)
    assert sf.info(str(syn / "drum_000.wav")).frames > 16000  # the reverb tail

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", "models:/drums-test@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 180)
        resp = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                             json={"dataframe_split": {"columns": ["seed"], "data": [[7]]}})
        assert resp.status_code == 200, resp.text[:500]
        (clip,) = resp.json()["predictions"]
        assert 15000 < len(clip) < 17000 and max(abs(v) for v in clip) <= 1.0
    finally:
        server.terminate()
        server.wait(30)
