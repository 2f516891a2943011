"""The train step on the CPU at a small width: exact resume after SIGKILL, DDP, MLflow, NaN handling."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import mlflow
import pytest
import torch

from specgan.training.checkpoints import list_checkpoints, load_checkpoint
from tests.services import BIN, free_port, run_cli
from tests.tiny import train_args

pytestmark = pytest.mark.slow

def sqlite_env(tmp_path: Path) -> dict:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "MLFLOW_EXPERIMENT_NAME": "train-tests"}


def train_until_killed(args: list[str], env: dict, until: Path) -> None:
    """Run `specgan ARGS` and SIGKILL it as soon as ``until`` exists (a checkpoint it writes)."""
    proc = subprocess.Popen([str(BIN / "specgan"), *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not until.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before the kill"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def generator_weights(out: Path) -> dict:
    return torch.load(out / "generator.pt", weights_only=True)["state_dict"]


@pytest.mark.numerics
def test_killed_and_resumed_run_ends_with_the_same_weights(prepared, tmp_path):
    env = sqlite_env(tmp_path)
    run_cli(*train_args(prepared, tmp_path / "straight", 8), env=env)

    out = tmp_path / "interrupted"
    train_until_killed(train_args(prepared, out, 8), env, out / "checkpoints" / "ckpt-e000003.pt")
    assert not (out / "generator.pt").exists(), "the run finished before it was killed"
    killed_at = len(list_checkpoints(out / "checkpoints"))
    assert 3 <= killed_at < 8

    run_cli(*train_args(prepared, out, 8), env=env)  # resumes automatically from the latest checkpoint
    a, b = generator_weights(tmp_path / "straight"), generator_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["ckpt-e000006.pt", "ckpt-e000007.pt", "ckpt-e000008.pt"]  # keep 3
    ckpt = load_checkpoint(ckpts[-1])  # weights_only=True
    assert {"generator", "discriminator", "opt_g", "opt_d", "epoch", "iteration"} <= set(ckpt["state"])
    assert ckpt["state"]["epoch"] == 8 and isinstance(ckpt["rng_cpu"], torch.Tensor)

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["train-tests"], output_format="list")
    assert len(runs) == 2  # the straight run, and the interrupted run continued in place


def test_longer_epochs_extend_and_changed_params_start_fresh(prepared, tmp_path):
    env, out = sqlite_env(tmp_path), tmp_path / "run"
    run_cli(*train_args(prepared, out, 2), env=env)
    run_cli(*train_args(prepared, out, 3), env=env)
    assert load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["state"]["epoch"] == 3
    # grid_every_epochs 2: epoch 2, and the last epoch even when it is not a multiple
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["epoch_000002.png", "epoch_000003.png"]
    proc = run_cli(*train_args(prepared, out, 1, "--set", "train.seed=5"), env=env)
    assert "not resuming" in proc.stderr
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["ckpt-e000001.pt"]
    bad = run_cli(*train_args(prepared, out, 1, "--resume", str(out / "nope.pt")), env=env, check=False)
    assert bad.returncode == 1 and "checkpoint not found" in bad.stderr


def test_corrupt_newest_checkpoint_falls_back_and_temporaries_are_cleaned(prepared, tmp_path):
    env, out = sqlite_env(tmp_path), tmp_path / "run"
    run_cli(*train_args(prepared, out, 2), env=env)
    ckpts = out / "checkpoints"
    newest = list_checkpoints(ckpts)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, as a full disk or a kill would
    stray = ckpts / ".ckpt-e000003.pt.abc123.tmp"  # what a run killed while saving leaves
    stray.write_bytes(b"partial")
    proc = run_cli(*train_args(prepared, out, 3), env=env)
    assert f"checkpoint {newest} is unreadable" in proc.stderr and "resuming from" in proc.stderr
    assert "ckpt-e000001.pt (epoch 1" in proc.stderr and not stray.exists()
    assert load_checkpoint(list_checkpoints(ckpts)[-1])["state"]["epoch"] == 3
    (tmp_path / "cut.pt").write_bytes(newest.read_bytes()[:1000])
    bad = run_cli(*train_args(prepared, out, 3, "--resume", str(tmp_path / "cut.pt")), env=env, check=False)
    assert bad.returncode == 1 and "is unreadable" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_non_finite_loss_stops_with_a_clear_error(prepared, tmp_path):
    proc = run_cli(*train_args(prepared, tmp_path / "nan", 2, "--set", "train.loss=wgan_gp",
                               "--set", "train.wgan_gp.gp_weight=1.0e+39"), env=sqlite_env(tmp_path), check=False)
    assert proc.returncode == 1
    assert "non-finite loss" in proc.stderr and "last good checkpoint: none" in proc.stderr
    assert not (tmp_path / "nan" / "generator.pt").exists()


def test_run_against_a_real_mlflow_server(prepared, tmp_path, mlflow_server):
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": "train-test"}
    run_cli(*train_args(prepared, tmp_path / "run", 2, "--metrics", str(tmp_path / "m.json"),
                        "--log-csv", str(tmp_path / "log.csv")), env=env)
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("train-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["train.batch_size"] == "8" and run.data.params["model.model_dim"] == "4"
    assert run.data.tags["data_version"] is not None and len(run.data.tags["git_commit"]) > 0
    iters = int(run.data.params["train.iterations_per_epoch"]) * 2
    history = client.get_metric_history(run.info.run_id, "loss/d")
    assert [m.step for m in history] == list(range(2, iters + 1, 2))
    for name in ("loss/g", "d_output/real", "d_output/fake", "grad_norm/d", "grad_norm/g", "speed/iterations_per_s",
                 "speed/samples_per_s"):
        assert name in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert arts == {"model/generator.pt", "model/stats.json"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "grids")] == ["grids/epoch_000002.png"]
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "iteration,epoch,d_loss,g_loss,d_real,d_fake" and len(lines) == 1 + len(history)


def test_unreachable_tracking_server_fails_fast(prepared, tmp_path):
    t0 = time.monotonic()
    proc = run_cli(*train_args(prepared, tmp_path / "run", 1),
                   env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}, check=False)
    assert proc.returncode == 1 and time.monotonic() - t0 < 30
    assert "is not reachable" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cpu_can_be_forced_and_cuda_refused_when_absent(prepared, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli(*train_args(prepared, tmp_path / "run", 1), env={**sqlite_env(tmp_path), "SPECGAN_DEVICE": "cuda"},
                   check=False)
    assert proc.returncode == 1 and "CUDA is not available" in proc.stderr




def test_credentials_in_urls_are_never_stored_or_printed(prepared, tmp_path):
    env = sqlite_env(tmp_path)
    source = "http://alice:pa55w0rd@data.example/drums.tar.gz"
    run_cli(*train_args(prepared, tmp_path / "t", 1, "--set", f"data.source={source}"), env=env)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("train-tests").experiment_id])
    assert run.data.params["data.source"] == "http://data.example/drums.tar.gz"
    (ckpt,) = list_checkpoints(tmp_path / "t" / "checkpoints")
    assert "pa55w0rd" not in load_checkpoint(ckpt)["params"] and "data.example" in load_checkpoint(ckpt)["params"]
    proc = run_cli(*train_args(prepared, tmp_path / "u", 1), check=False,
                   env={"MLFLOW_TRACKING_URI": f"http://bob:hunter2@127.0.0.1:{free_port()}"})
    assert proc.returncode == 1 and "not reachable" in proc.stderr and "hunter2" not in proc.stderr
    # A presigned URL: its signature and key id are kept out of MLflow and the checkpoint the same way.
    presigned = ("https://b.s3.amazonaws.com/drums.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 "&X-Amz-Credential=AKIAEXAMPLE%2F20261207&X-Amz-Signature=5ec7e75ec7e7")
    run_cli(*train_args(prepared, tmp_path / "v", 1, "--set", f"data.source={presigned}"), env=env)
    runs = client.search_runs([client.get_experiment_by_name("train-tests").experiment_id])
    recorded = [r.data.params["data.source"] for r in runs if "amazonaws" in r.data.params["data.source"]]
    assert recorded and all("AKIAEXAMPLE" not in s and "5ec7e75ec7e7" not in s for s in recorded)
    (ckpt,) = list_checkpoints(tmp_path / "v" / "checkpoints")
    assert "5ec7e75ec7e7" not in load_checkpoint(ckpt)["params"]


def test_set_source_refuses_a_url_with_credentials_and_names_what_to_use(tmp_path):
    """params.yaml and data.dvc are committed: set-source never writes a password or a signature into them."""
    import shutil

    from tests.services import ROOT

    for name in ("params.yaml", "data.dvc"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = {n: (tmp_path / n).read_bytes() for n in ("params.yaml", "data.dvc")}
    for url in ("https://alice:pa55@data.example/kit.zip",
                "https://b.s3.amazonaws.com/k.tgz?AWSAccessKeyId=AKIA1&Expires=1&Signature=c2lnbg%3D"):
        proc = run_cli("set-source", url, cwd=tmp_path, check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
        assert "AWS_ACCESS_KEY_ID" in proc.stderr and "pa55" not in proc.stderr and "c2lnbg" not in proc.stderr
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def start_mlflow(port: int, home: Path) -> subprocess.Popen:
    """A real MLflow server on ``port`` with its database and artifacts under ``home`` (restartable on both)."""
    from tests.services import wait_http

    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", str(home / "art")],
        stdout=open(home / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    wait_http(f"http://127.0.0.1:{port}/health", 90)
    return proc


def kill_once_metrics_arrive(client: mlflow.MlflowClient, server: subprocess.Popen) -> None:
    """SIGKILL the server (its whole process group) as soon as a training run's first metrics reached it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            r.data.metrics for e in client.search_experiments() for r in client.search_runs([e.experiment_id])):
        time.sleep(0.2)
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@pytest.mark.slow
def test_a_tracking_outage_costs_seconds_and_the_metrics_are_backfilled(prepared, tmp_path):
    """A real MLflow server is killed during training and started again on the same port and database:
    training goes on at full speed, and every logged step reaches the server, with the gap tagged."""
    port, home = free_port(), tmp_path / "server"
    home.mkdir()
    url = f"http://127.0.0.1:{port}"
    first = start_mlflow(port, home)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_EXPERIMENT_NAME": "outage", "OMP_NUM_THREADS": "1"}
    args = train_args(prepared, tmp_path / "run", 45, "--log-csv", str(tmp_path / "log.csv"), "--set",
                      "train.grid_every_epochs=30", "--set", "train.checkpoint_every_epochs=30", "--set",
                      "train.log_every_iters=5")
    train = subprocess.Popen([str(BIN / "specgan"), *args],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    noticed = threading.Event()

    def read_stderr() -> None:
        for line in train.stderr:
            lines.append(line)
            if "tracking server unreachable at iteration" in line:
                noticed.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    client = mlflow.MlflowClient(url)
    kill_once_metrics_arrive(client, first)
    killed = time.monotonic()
    second = None
    try:
        assert noticed.wait(60), "".join(lines)[-3000:]  # the next logged step finds the server gone
        time.sleep(3)  # training goes on without it
        # Paused while the server restarts (about 13 s), so that training cannot end before it is back on a
        # fast machine; the retries' clock runs on meanwhile, as it would in a longer training.
        train.send_signal(signal.SIGSTOP)
        try:
            second = start_mlflow(port, home)
        finally:
            train.send_signal(signal.SIGCONT)
        assert train.wait(timeout=300) == 0, "".join(lines)[-3000:]
        reader.join(10)
        err = "".join(lines)
        assert "tracking server back at iteration" in err, err[-3000:]
        (run,) = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
        assert run.info.status == "FINISHED" and re.fullmatch(r"iterations \d+-\d+", run.data.tags["tracking_gap"])
        gap_from, gap_to = map(int, run.data.tags["tracking_gap"].split()[1].split("-"))
        assert gap_to > gap_from
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/d")]
        with open(tmp_path / "log.csv") as fh:
            assert steps == [int(row["iteration"]) for row in csv.DictReader(fh)]  # no step lost
        assert time.monotonic() - killed < 120  # MLflow's own retries would stall each call for minutes
    finally:
        train.kill()
        if second is not None:
            os.killpg(second.pid, signal.SIGKILL)


@pytest.mark.slow
def test_metrics_lost_until_the_end_of_training_come_back_from_the_checkpoint_on_rerun(prepared, tmp_path):
    """The server dies early and is still away when training ends (the run stays open); after it is back, the
    rerun the warning suggests restores every lost step's losses from the checkpoint's history, finishes the run
    and tags it, visibly in the UI, with what came back and what did not."""
    port, home = free_port(), tmp_path / "server"
    home.mkdir()
    url = f"http://127.0.0.1:{port}"
    first = start_mlflow(port, home)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_EXPERIMENT_NAME": "lost", "OMP_NUM_THREADS": "1"}
    args = train_args(prepared, tmp_path / "run", 80, "--log-csv", str(tmp_path / "log.csv"), "--set",
                      "train.checkpoint_every_epochs=20", "--set", "train.grid_every_epochs=80")
    train = subprocess.Popen([str(BIN / "specgan"), *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    client = mlflow.MlflowClient(url)
    kill_once_metrics_arrive(client, first)
    second = None
    try:
        _, err = train.communicate(timeout=300)
        assert train.returncode == 0 and "could not be finished" in err, err[-3000:]
        second = start_mlflow(port, home)
        rerun = run_cli(*args, env=env)
        assert "their losses were restored from the checkpoint" in rerun.stderr, rerun.stderr[-3000:]
        (run,) = client.search_runs([client.get_experiment_by_name("lost").experiment_id])
        assert run.info.status == "FINISHED"
        assert "losses restored from the checkpoint; their grad norms and speed are lost" in run.data.tags[
            "tracking_gap"]
        with open(tmp_path / "log.csv") as fh:
            logged = [int(row["iteration"]) for row in csv.DictReader(fh)]
        for key in ("loss/d", "loss/g", "d_output/real", "d_output/fake"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == logged, key
    finally:
        train.kill()
        if second is not None:
            os.killpg(second.pid, signal.SIGKILL)


def test_metrics_resent_after_a_failed_send_skip_the_steps_the_server_already_holds(params, tmp_path):
    """A server killed after storing a batch but before replying (the outage test's race): the next send
    holds that step again, and it must not reach the run's history twice."""
    from mlflow.entities import Metric

    from specgan.training.run_log import RunLog

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        client = mlflow.MlflowClient()
        run_id = client.create_run(client.create_experiment("resend")).info.run_id
        rl = RunLog(params, None, tmp_path, None, True, [], run_id)
        rl.mlflow = mlflow
        client.log_batch(run_id, metrics=[Metric("loss/d", 1.0, 0, 5), Metric("loss/g", 2.0, 0, 5)])
        rl.pending = [({"loss/d": 1.0, "loss/g": 2.0}, 5), ({"loss/d": 1.5, "loss/g": 2.5}, 10)]
        rl._unconfirmed = True  # what a send that raised leaves
        rl._flush_metrics()
        assert [m.step for m in client.get_metric_history(run_id, "loss/d")] == [5, 10]
        assert [m.step for m in client.get_metric_history(run_id, "loss/g")] == [5, 10]
        assert not rl.pending and not rl._unconfirmed
    finally:
        mlflow.set_tracking_uri(before)


def test_a_failed_checkpoint_write_is_one_line_and_the_run_is_failed(prepared, tmp_path):
    """A write that fails (here a file size limit; a full disk fails the same way) is one line naming the file
    and the free space, not torch's RuntimeError; no partial file is left and the MLflow run ends FAILED."""
    import resource

    def limit() -> None:  # 2 MB: the database and grids fit, a checkpoint (about 3 MB) does not
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))

    env = {**os.environ, **sqlite_env(tmp_path)}
    proc = subprocess.run([str(BIN / "specgan"), *train_args(prepared, tmp_path / "run", 1)], env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.match(r"specgan train: error: cannot write .*ckpt-e000001\.pt \(\d+ MB free on its disk\)",
                    proc.stderr.strip().splitlines()[-1]), proc.stderr[-1000:]
    assert list((tmp_path / "run" / "checkpoints").iterdir()) == []
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=["train-tests"], output_format="list")
    assert run.info.status == "FAILED"


def test_a_run_left_running_by_a_killed_process_is_closed_by_the_next_fresh_start(prepared, tmp_path):
    env, out = sqlite_env(tmp_path), tmp_path / "run"
    train_until_killed(train_args(prepared, out, 40), env, out / "checkpoints" / "ckpt-e000001.pt")
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (killed,) = mlflow.search_runs(experiment_names=["train-tests"], output_format="list")
    assert killed.info.status == "RUNNING"  # what kill -9 leaves: no process can end its own run then

    done = run_cli(*train_args(prepared, out, 1, "--fresh"), env=env)
    assert f"MLflow run {killed.info.run_id} was left RUNNING by a killed process: marked KILLED" in done.stderr
    runs = {r.info.run_id: r for r in mlflow.search_runs(experiment_names=["train-tests"], output_format="list")}
    assert runs.pop(killed.info.run_id).info.status == "KILLED"
    assert [r.info.status for r in runs.values()] == ["FINISHED"]


def test_fewer_epochs_than_a_finished_run_trains_that_many_not_the_longer_model(prepared, tmp_path):
    """`--set train.epochs=1` in a folder that holds 3 epochs: the 1-epoch checkpoint is resumed (none newer
    counts), the export is the 1-epoch model, bit for bit, and an explicit resume of the longer one refuses."""
    env = sqlite_env(tmp_path)
    run_cli(*train_args(prepared, tmp_path / "one", 1), env=env)
    out = tmp_path / "run"
    run_cli(*train_args(prepared, out, 3), env=env)
    proc = run_cli(*train_args(prepared, out, 1), env=env)
    assert "ckpt-e000001.pt" in proc.stderr
    a, b = generator_weights(tmp_path / "one"), generator_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    bad = run_cli(*train_args(prepared, out, 2, "--resume", str(out / "checkpoints" / "ckpt-e000003.pt")),
                  env=env, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].endswith(
        "holds 3 epochs, more than train.epochs=2: raise train.epochs, or pass --fresh to start over")


def test_ctrl_c_is_one_line_and_the_next_run_resumes(prepared, tmp_path):
    env = sqlite_env(tmp_path)
    out = tmp_path / "t"
    proc = subprocess.Popen([str(BIN / "specgan"), *train_args(prepared, out, 8)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "ckpt-e000002.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-1500:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("specgan train: interrupted")
    resumed = run_cli(*train_args(prepared, out, 8), env=env)
    assert "resuming from" in resumed.stderr and (out / "generator.pt").exists()


def _flip_tensor_bytes(path: Path) -> None:
    """Flip 16 bytes in the middle of the largest tensor record, leaving the zip structure intact."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[start:start + 16] = bytes(b ^ 0xFF for b in raw[start:start + 16])
    path.write_bytes(bytes(raw))


def test_flipped_bytes_in_a_checkpoint_are_caught_by_its_digest_and_nothing_is_deleted(prepared, tmp_path):
    env, out = sqlite_env(tmp_path), tmp_path / "run"
    run_cli(*train_args(prepared, out, 2), env=env)
    ckpts = out / "checkpoints"
    newest = list_checkpoints(ckpts)[-1]
    _flip_tensor_bytes(newest)
    proc = run_cli(*train_args(prepared, out, 3), env=env)
    assert "does not match its digest" in proc.stderr and "ckpt-e000001.pt (epoch 1" in proc.stderr
    assert (ckpts / (newest.name + ".corrupt")).exists()  # moved aside, kept for inspection
    # Every checkpoint damaged: one line, nothing deleted; --fresh starts over.
    for path in list_checkpoints(ckpts):
        _flip_tensor_bytes(path)
    stop = run_cli(*train_args(prepared, out, 4), env=env, check=False)
    assert stop.returncode == 1 and stop.stderr.strip().splitlines()[-1].endswith(
        "is unreadable (moved aside as *.corrupt, not deleted): pass --fresh to start over")
    kept = sorted(p.name for p in ckpts.iterdir())
    assert kept and all(name.endswith(".corrupt") for name in kept)
    run_cli(*train_args(prepared, out, 2, "--fresh"), env=env)
    assert load_checkpoint(list_checkpoints(ckpts)[-1])["state"]["epoch"] == 2
    assert {p.name for p in ckpts.iterdir() if p.name.endswith(".corrupt")} == set(kept)
