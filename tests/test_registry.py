"""Render, register, promote, load in a fresh process, synthesize and serve, against a real MLflow server."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
import soundfile as sf

from tests.browser import CHROMIUM, probe
from tests.services import BIN, free_port, run_cli, wait_http
from tests.tiny import NO_RULES, TINY, sets, train_args

pytestmark = pytest.mark.slow

GATE = sets({"registry.model_name": "drums-test", **NO_RULES})
EVAL = sets({k: v for k, v in TINY.items() if k.startswith("evaluate.")})


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


def evaluate(generator: Path, kit_dir: Path, env: dict) -> Path:
    """`specgan evaluate` of one generator file; returns its metrics JSON."""
    out = generator.parent / "evaluate.json"
    run_cli("evaluate", "--generator", str(generator), "--data", str(kit_dir), "--out", str(out), *EVAL, env=env)
    return out


@pytest.fixture(scope="module")
def evaluations(two_models, kit_dir, env) -> list[Path]:
    return [evaluate(g, kit_dir, env) for g in two_models]


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
    assert "render/.specgan-output" not in logged  # the step's internal marker stays out of MLflow
    again = tmp_path / "again"
    run_cli("render", "--generator", str(two_models[0]), "--out", str(again), "--n", "3", env=env)
    assert (again / "sample_001.wav").read_bytes() == wavs[1].read_bytes()  # seeded
    more = tmp_path / "more_iters"  # params' render settings at the time of use, not the copy in generator.pt
    run_cli("render", "--generator", str(two_models[0]), "--out", str(more), "--n", "3",
            "--set", "render.griffin_lim_iters=60", env=env)
    assert (more / "sample_001.wav").read_bytes() != wavs[1].read_bytes()
    assert "griffin-lim iterations</b> 60" in (more / "index.html").read_text()


def test_gallery_shows_the_evaluation_and_each_samples_class(two_models, evaluations, kit_dir, tmp_path, env):
    out = tmp_path / "render"
    run_cli("render", "--generator", str(two_models[0]), "--out", str(out), "--n", "4", "--metrics",
            str(evaluations[0]), "--data", str(kit_dir), env=env)
    page = (out / "index.html").read_text()
    m = json.loads(evaluations[0].read_text())
    assert "real baseline" in page and f"{m['frechet_distance']:.4g}" in page
    assert f"{m['frechet_distance_real']:.4g}" in page
    assert ("Mode collapse" in page) == bool(m["collapse_flag"])
    classes = json.loads((out / "render.json").read_text())["classes"]
    kit_classes = {"kick", "snare", "clap", "closed_hat", "open_hat", "tom", "cymbal"}
    assert len(classes) == 4 and set(classes) <= kit_classes
    assert f'<span>sample_000.wav</span><span class="tag">{classes[0]}</span>' in page
    # The baseline is written as the console writes it (`specgan evaluate`, the demo's summary).
    from specgan.evaluation.metric_values import baseline_text

    assert f"<td>{baseline_text(m, 'frechet_distance')}</td>" in page


@pytest.mark.skipif(not CHROMIUM, reason="apt-get install chromium (CI installs it)")
def test_the_gallery_in_a_browser_every_player_knows_its_length_and_every_image_draws(two_models, evaluations,
                                                                                      kit_dir, tmp_path, env):
    out = tmp_path / "render"
    run_cli("render", "--generator", str(two_models[0]), "--out", str(out), "--n", "3", "--metrics",
            str(evaluations[0]), "--data", str(kit_dir), env=env)
    seen = probe(out / "index.html")
    assert seen["external"] == []  # one self-contained file: nothing fetched
    assert len(seen["audio"]) == 3 and all(a["preload"] == "metadata" for a in seen["audio"])
    assert all(a["duration"] and 1.0 < a["duration"] < 1.1 for a in seen["audio"]), seen["audio"]  # not 0:00
    widths = [i["width"] for i in seen["images"]]
    assert len(widths) == 3 + 2 and all(w > 100 for w in widths)  # a card each, then the two grids
    assert "Evaluation: 256 generated clips" not in seen["text"] or "real baseline" in seen["text"]


def test_register_promote_load_synthesize_and_serve(two_models, evaluations, tmp_path, env):
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    first = run_cli("register", "--generator", str(two_models[0]), "--metrics", str(evaluations[0]),
                    "--out", str(tmp_path / "r1.json"), *GATE, env=env)
    assert "version 1 as @challenger" in first.stdout
    v1 = client.get_model_version_by_alias("drums-test", "challenger")
    assert {"data_version", "params_hash", "git_commit", "metric.frechet_distance", "generator_sha256"} <= set(v1.tags)
    # A few headline metrics on the version (its versions table stays readable); the rest on the linked run.
    assert len([k for k in v1.tags if k.startswith("metric.")]) <= 8 and "metric.class_share" in v1.tags
    evaluation = client.get_run(v1.tags["evaluation_run_id"])
    assert "quality/ndb_k" in evaluation.data.metrics
    assert "champion" in run_cli("promote", *GATE, env=env).stdout  # no champion yet: promoted
    again = run_cli("promote", "--version", "1", *GATE, env=env)
    assert "already champion" in again.stdout  # exit 0

    run_cli("register", "--generator", str(two_models[1]), "--metrics", str(evaluations[1]), *GATE, env=env)
    v2 = client.get_model_version_by_alias("drums-test", "challenger")
    assert v2.version == "2"
    g1, g2 = float(v1.tags["metric.frechet_distance"]), float(v2.tags["metric.frechet_distance"])
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

    # An evaluation without the gate metric is not registered; a version without it is never promoted.
    nometric = run_cli("register", "--generator", str(two_models[0]), "--metrics", str(evaluations[0]), *GATE,
                       "--set", "registry.gate_metric=missing_metric", env=env, check=False)
    assert nometric.returncode == 1 and "missing or not a number" in nometric.stderr
    never = run_cli("promote", "--version", "1", *GATE, "--set", "registry.gate_metric=missing_metric", "--force",
                    env=env, check=False)
    assert never.returncode == 1 and "never promoted" in never.stderr

    # The training outputs are gone: the registered model alone makes audio, in a fresh process.
    aside = tmp_path / "aside"
    for gen in two_models:
        shutil.move(gen.parent, aside / gen.parent.name)
    try:
        code = ("import mlflow, numpy as np, pandas as pd; "
                "m = mlflow.pyfunc.load_model('models:/drums-test@champion'); x = pd.DataFrame({'seed': [5, 6]}); "
                "a = m.predict(x); b = m.predict(x, params={'griffin_lim_iters': 1}); "
                "print(list(a.sample_rate), 'request-param-changes', not np.allclose(np.stack(a.audio), "
                "np.stack(b.audio)), np.stack(a.audio).shape, np.stack(a.audio).dtype)")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("[16000, 16000] ") and "(2, " in proc.stdout and "float32" in proc.stdout
        assert "request-param-changes True" in proc.stdout  # a request's render setting reaches Griffin-Lim

        # synthesize from the registry in an empty folder: no params.yaml, the model's registered settings.
        syn, empty = tmp_path / "syn", tmp_path / "empty"
        empty.mkdir()
        run_cli("synthesize", "--model", "models:/drums-test@champion", "--out", str(syn), "--count", "3",
                "--reverb", "--room-size", "0.8", "--sequence", "--tempo", "100", env=env, cwd=empty)
        assert not (empty / "params.yaml").exists()
        assert sorted(p.name for p in syn.iterdir()) == ["drum_000.wav", "drum_001.wav", "drum_002.wav", "drums.png",
                                                          "latents.npz", "loop.wav"]
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
            (row,) = resp.json()["predictions"]
            clip = row["audio"]
            assert row["sample_rate"] == 16000 and 15000 < len(clip) < 17000 and max(abs(v) for v in clip) <= 1.0
            # The same sound as a 16-bit WAV file in base64: its rate in the file too, an eighth of the bytes.
            wav = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                                json={"dataframe_split": {"columns": ["seed"], "data": [[7]]},
                                      "params": {"format": "wav"}})
            assert wav.status_code == 200, wav.text[:500]
            (packed,) = wav.json()["predictions"]
            samples, rate = sf.read(io.BytesIO(base64.b64decode(packed["wav_base64"])), dtype="float32")
            assert rate == packed["sample_rate"] == 16000 and len(samples) == len(clip)
            assert np.abs(samples - np.asarray(clip)).max() <= 1.5 / 32768  # 16-bit rounding, nothing else
            assert len(wav.content) * 6 < len(resp.content)
            odd = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                                json={"dataframe_split": {"columns": ["seed"], "data": [[7]]},
                                      "params": {"format": "mp3"}})
            assert odd.status_code == 400 and "expected one of float, wav" in odd.text
            rough = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                                  json={"dataframe_split": {"columns": ["seed"], "data": [[7]]},
                                        "params": {"griffin_lim_iters": 1}})
            assert rough.status_code == 200, rough.text[:500]
            assert not np.allclose(rough.json()["predictions"][0]["audio"], clip)  # the render setting is used
            big = requests.post(f"http://127.0.0.1:{port}/invocations", timeout=120,
                                json={"dataframe_split": {"columns": ["seed"], "data": [[i] for i in range(257)]}})
            assert big.status_code == 400 and "at most 256 sounds" in big.text  # bounded memory, a clear 4xx
        finally:
            server.terminate()
            server.wait(30)
    finally:
        for gen in two_models:  # back, for the tests that follow
            shutil.move(aside / gen.parent.name, gen.parent)


def test_register_takes_metrics_only_from_an_evaluation_of_that_file(two_models, evaluations, tmp_path, env):
    other = run_cli("register", "--generator", str(two_models[1]), "--metrics", str(evaluations[0]),
                    "--set", "registry.model_name=drums-mismatch", env=env, check=False)
    assert other.returncode == 1 and "scored another generator file" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    missing = run_cli("register", "--generator", str(two_models[1]), "--set", "registry.model_name=drums-mismatch",
                      env=env, check=False)
    assert missing.returncode == 1 and "needs --metrics" in missing.stderr
    for bad in (float("nan"), float("-inf"), "12"):
        m = json.loads(evaluations[1].read_text())
        m["frechet_distance"] = bad
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(m))
        proc = run_cli("register", "--generator", str(two_models[1]), "--metrics", str(path),
                       "--set", "registry.model_name=drums-mismatch", env=env, check=False)
        assert proc.returncode == 1 and ("only finite metrics" in proc.stderr or "not a number" in proc.stderr)
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_registered_model("drums-mismatch")


def collapsed_copy(generator: Path, dest: Path) -> Path:
    """The same file with every generator weight zeroed: one spectrogram for every z (mode collapse)."""
    import torch

    payload = torch.load(generator, weights_only=True)
    payload["state_dict"] = {k: torch.zeros_like(v) for k, v in payload["state_dict"].items()}
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest / "generator.pt")
    return dest / "generator.pt"


def test_gate_refuses_collapsed_and_memorizing_models_whatever_their_distance(
        two_models, evaluations, kit_dir, tmp_path, params, env):
    from specgan.core.hashing import file_sha256
    from specgan.evaluation.evaluate import evaluate_audio, load_real

    name = ["--set", "registry.model_name=drums-gate"]
    run_cli("register", "--generator", str(two_models[0]), "--metrics", str(evaluations[0]), *name, env=env)
    run_cli("promote", *name, *sets(NO_RULES), env=env)
    champion_fd = json.loads(evaluations[0].read_text())["frechet_distance"]

    collapsed = collapsed_copy(two_models[0], tmp_path / "collapsed")
    m = json.loads(evaluate(collapsed, kit_dir, env).read_text())
    assert m["collapse_flag"] == 1
    run_cli("register", "--generator", str(collapsed), "--metrics", str(collapsed.parent / "evaluate.json"),
            *name, env=env)
    wins = "min" if m["frechet_distance"] < champion_fd else "max"  # the mode under which its distance wins
    refused = run_cli("promote", *name, "--set", f"registry.gate_mode={wins}", "--force", env=env, check=False)
    assert refused.returncode == 1 and "mode collapse" in refused.stderr

    # A memorizing generator: its evaluation scores the training clips themselves.
    train = load_real(kit_dir, "train", params.features)
    held = load_real(kit_dir, "test", params.features)
    mem = evaluate_audio(train.audio, held, train, params.evaluate, 16000)
    assert mem["memorization_flag"] == 1
    mem.update(generator_sha256=file_sha256(two_models[1]), run_id="")
    (tmp_path / "mem.json").write_text(json.dumps(mem))
    run_cli("register", "--generator", str(two_models[1]), "--metrics", str(tmp_path / "mem.json"), *name, env=env)
    wins = "min" if mem["frechet_distance"] < champion_fd else "max"
    refused = run_cli("promote", *name, "--set", f"registry.gate_mode={wins}", "--set",
                      "registry.refuse_collapse=false", "--set", "registry.min_class_share=0.0", env=env, check=False)
    assert refused.returncode == 1 and "memorization" in refused.stderr
    champ = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("drums-gate", "champion")
    assert champ.version == "1"


def test_concurrent_promotes_never_both_succeed(two_models, evaluations, env):
    name = ["--set", "registry.model_name=drums-race", *sets(NO_RULES)]
    for _ in range(2):  # two versions with equal metrics: whichever is promoted first, the other cannot beat it
        run_cli("register", "--generator", str(two_models[0]), "--metrics", str(evaluations[0]), *name, env=env)
    procs = [subprocess.Popen([str(BIN / "specgan"), "promote", "--version", v, *name], env={**os.environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in ("1", "2")]
    results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 1], results
    assert sum("is now champion" in out for _, out, _ in results) == 1


class _Hostile(mlflow.pyfunc.PythonModel):
    """A pyfunc model someone else logged: loading it runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def load_context(self, context) -> None:
        Path(self.marker).write_text("ran")

    def predict(self, context, model_input, params=None):
        return model_input


def test_synthesize_never_unpickles_a_model_uri(tmp_path, env):
    """`--model runs:/...` of a pyfunc model that is not a specgan generator: refused in one line, its code never
    run (a registered specgan model is read through its generator file: the register test above)."""
    marker = tmp_path / "pwned"
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("hostile")
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(name="generator", python_model=_Hostile(str(marker)))
    marker.unlink(missing_ok=True)  # MLflow itself loads the model once while logging it
    proc = run_cli("synthesize", "--model", f"runs:/{run.info.run_id}/generator", "--out", str(tmp_path / "o"),
                   env=env, check=False)
    assert proc.returncode == 1 and "is not a specgan generator model" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not marker.exists() and not (tmp_path / "o").exists()
