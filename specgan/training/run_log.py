"""What a training run records: the loss history (CSV for DVC plots), MLflow params, metrics and grids.

A tracking server that goes away during training costs seconds, not minutes: requests fail fast while the
run is open, training goes on (checkpoints, CSV, grids on disk), the metrics wait in memory and are sent when
the server answers again (tried every ``OUTAGE_RETRY_S``), and the run gets a ``tracking_gap`` tag."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from specgan.core.atomic import atomic_path
from specgan.core.config import Params
from specgan.core.redact import redact_params
from specgan.data.stats import NormStats
from specgan.training.gan import GanState, StepOutput, grad_norm

log = logging.getLogger(__name__)

LOG_FIELDS = ["iteration", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]  # the CSV (DVC plots)
MLFLOW_NAMES = ["loss/d", "loss/g", "d_output/real", "d_output/fake"]  # the same values, grouped in the MLflow UI
GRID_SAMPLES = 16
OUTAGE_RETRY_S = 10.0  # while the tracking server does not answer, try again this often
# MLflow's own retries (7, exponential backoff: minutes) while training; the outage logic above retries instead.
FAST_FAILING = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def set_fast_failing() -> list[str]:
    """MLflow requests that give up in seconds, from now on (settings the user exported win); returns the keys
    it set."""
    added = [k for k in FAST_FAILING if k not in os.environ]
    os.environ.update({k: FAST_FAILING[k] for k in added})
    return added


@contextlib.contextmanager
def fast_failing_requests() -> Iterator[None]:
    """MLflow requests that give up in seconds, inside the block."""
    added = set_fast_failing()
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class RunLog:
    """The rank-0 record of one training run. ``tracking=False`` writes the CSV and grids but nothing to MLflow."""

    def __init__(self, params: Params, stats: NormStats, out_dir: Path, log_csv: Path | None, tracking: bool,
                 history: list[list[float]], run_id: str | None, abandoned_run_id: str | None = None) -> None:
        self.p, self.stats, self.out_dir, self.log_csv = params, stats, out_dir, log_csv
        self.tracking = tracking
        self.history = history
        self.run_id = run_id
        self.mlflow: Any = None
        self.last_rate = 0.0
        self.pending: list[tuple[dict[str, float], int]] = []  # metrics not yet on the server
        self.gap_from: int | None = None  # the iteration at which the server stopped answering
        self.gaps: list[str] = []  # outages that ended: "iterations A-B"
        self.unsent_grids: list[Path] = []
        self.abandoned_run_id = abandoned_run_id  # a killed run of checkpoints a fresh start replaced
        self._next_try = 0.0
        self._unconfirmed = False  # the last metrics send failed: the server may hold part of what it sent

    def start(self, tags: dict[str, str], extra_params: dict[str, Any]) -> None:
        """Open the MLflow run (a resumed training continues its own run) and log every param."""
        if not self.tracking:
            return
        import mlflow

        from specgan.core.tracking import check_tracking, flatten, git_commit, start_run

        self.mlflow = mlflow
        if self.run_id:
            mlflow.set_tracking_uri(check_tracking())
            try:
                mlflow.start_run(run_id=self.run_id)
            except mlflow.exceptions.MlflowException:
                log.warning("MLflow run %s not found on this server; starting a new run", self.run_id)
            else:
                self._restore_lost_metrics()
                return
        name = f"train {self.p.recipe} (seed {self.p.train.seed})"  # the recipe and what differs from it
        run = start_run(run_name=name[:250], tags={"git_commit": git_commit(), **tags})
        self.run_id = run.info.run_id
        self._close_abandoned()
        mlflow.log_params(flatten(redact_params(self.p.to_dict())))  # no credentials from URLs
        mlflow.log_params(extra_params)

    def _restore_lost_metrics(self) -> None:
        """A resumed run whose earlier process lost metrics (the tracking server away until that process ended):
        the losses of every logged step the server lacks are sent again from the checkpoint's history, and the
        run's ``tracking_gap`` tag says which steps and what could not come back (grad norms, speed)."""
        from mlflow.entities import Metric

        client = self.mlflow.MlflowClient()
        have = {m.step for m in client.get_metric_history(self.run_id, MLFLOW_NAMES[0])}
        lost = [row for row in self.history if int(row[0]) not in have]
        if not lost:
            return
        ms = int(time.time() * 1000)
        batch = [Metric(k, float(v), ms, int(row[0])) for row in lost for k, v in zip(MLFLOW_NAMES, row[2:],
                                                                                      strict=True)]
        self._log_batch(client, batch)
        first, last = int(lost[0][0]), int(lost[-1][0])
        earlier = client.get_run(self.run_id).data.tags.get("tracking_gap", "")
        gap = (f"iterations {first}-{last}: {len(lost)} logged steps' losses restored from the checkpoint; their "
               "grad norms and speed are lost")
        self.gaps = [g for g in earlier.split(", ") if g] + [gap]
        client.set_tag(self.run_id, "tracking_gap", ", ".join(self.gaps))
        log.warning("MLflow run %s lacked %d logged steps (iterations %d-%d): their losses were restored from the "
                    "checkpoint", self.run_id, len(lost), first, last)

    def _close_abandoned(self) -> None:
        """A run whose process was killed (SIGKILL, a lost node) stays RUNNING on the server; when a fresh start
        replaces its checkpoints, it is marked KILLED, so nothing stays RUNNING forever."""
        if not self.abandoned_run_id or self.abandoned_run_id == self.run_id:
            return
        client = self.mlflow.MlflowClient()
        try:
            if client.get_run(self.abandoned_run_id).info.status == "RUNNING":
                client.set_terminated(self.abandoned_run_id, "KILLED")
                client.set_tag(self.abandoned_run_id, "specgan.ended_by", f"a fresh start in the same folder "
                               f"(run {self.run_id}): its process was killed")
                log.warning("MLflow run %s was left RUNNING by a killed process: marked KILLED",
                            self.abandoned_run_id)
        except self.mlflow.exceptions.MlflowException:
            pass  # not on this server (another tracking URI): nothing to close

    def step(self, state: GanState, out: StepOutput, rate: float, device: torch.device) -> list[float]:
        """One logged iteration: a history row, and its metrics to MLflow."""
        row = [float(state.iteration), float(state.epoch), float(out.d_loss), float(out.g_loss),
               float(out.d_real), float(out.d_fake)]
        self.history.append(row)
        self.last_rate = rate
        if self.mlflow:
            cfg = self.p.train
            metrics = dict(zip(MLFLOW_NAMES, row[2:], strict=True))
            metrics.update({"grad_norm/d": grad_norm(state.D), "grad_norm/g": grad_norm(state.G),
                            "speed/iterations_per_s": rate,
                            "speed/samples_per_s": rate * cfg.batch_size * cfg.optim.d_steps})
            if device.type == "cuda":
                metrics["speed/gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            self.pending.append((metrics, state.iteration))
            self._send(self._flush_metrics, state.iteration)
        return row

    def _flush_metrics(self) -> None:
        from mlflow.entities import Metric

        client = self.mlflow.MlflowClient()
        ms = int(time.time() * 1000)
        batch = [Metric(k, float(v), ms, step) for metrics, step in self.pending for k, v in metrics.items()]
        if self._unconfirmed:
            batch = self._not_on_server(client, batch)
        try:
            self._log_batch(client, batch)
        except Exception:
            self._unconfirmed = True
            raise
        self._unconfirmed = False
        self.pending.clear()

    def _log_batch(self, client: Any, batch: list) -> None:
        """Send metrics in pieces of the server's limit per request (1,000)."""
        for i in range(0, len(batch), 1000):
            client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def _not_on_server(self, client: Any, batch: list) -> list:
        """After a failed send the server may hold part of it (a server killed after storing a batch, before its
        reply): keep only the metrics past each key's last step there, so a step is never logged twice."""
        last = {}
        for key in {m.key for m in batch}:
            history = client.get_metric_history(self.run_id, key)
            last[key] = max((m.step for m in history), default=-1)
        return [m for m in batch if m.step > last[m.key]]

    def _send(self, call: Callable[[], None], iteration: int, force: bool = False) -> bool:
        """Run a tracking call; while the server is away, only every ``OUTAGE_RETRY_S`` (or when ``force``).
        Returns whether it went through."""
        from specgan.core.errors import first_line

        now = time.monotonic()
        if self.gap_from is not None and now < self._next_try and not force:
            return False
        try:
            with fast_failing_requests():
                call()
        except Exception as exc:  # noqa: BLE001 -- whatever the transport raised: training goes on
            self._next_try = now + OUTAGE_RETRY_S
            if self.gap_from is None:
                self.gap_from = iteration
                log.warning("tracking server unreachable at iteration %d (%s): training goes on; metrics are "
                            "kept and sent when it answers again", iteration, first_line(exc, 200))
            return False
        if self.gap_from is not None:
            self.gaps.append(f"iterations {self.gap_from}-{iteration}")
            log.warning("tracking server back at iteration %d: the metrics since iteration %d were sent",
                        iteration, self.gap_from)
            self.gap_from = None
            with fast_failing_requests(), contextlib.suppress(Exception):
                self.mlflow.set_tag("tracking_gap", ", ".join(self.gaps))
        return True

    def write_csv(self) -> None:
        if self.log_csv:
            with atomic_path(self.log_csv) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(LOG_FIELDS)
                writer.writerows([[int(r[0]), int(r[1]), *r[2:]] for r in self.history])
            if self.history:  # beside the CSV, the same curves as an image (`dvc plots show`, offline)
                from specgan.audio.plots import loss_curves

                loss_curves(self.history, self.log_csv.with_suffix(".png"))

    def grid(self, state: GanState, device: torch.device, classes: tuple[str, ...] = ()) -> Path:
        """The fixed-z spectrogram grid of this epoch, as a PNG and (with its step) an MLflow image; a
        conditional model's tiles go through its classes in turn."""
        from specgan.audio.plots import spectrogram_grid
        from specgan.data.normalize import to_db

        gen = torch.Generator(device=device).manual_seed(self.p.render.seed)
        z = torch.rand(GRID_SAMPLES, self.p.model.latent_dim, generator=gen, device=device) * 2 - 1
        y = torch.arange(GRID_SAMPLES, device=device) % len(classes) if classes else None
        G = state.G_out
        G.eval()
        with torch.no_grad():
            db = to_db(G(z) if y is None else G(z, y), self.stats, self.p.normalize,
                       self.p.features.log_eps)
        G.train()
        f = self.p.features
        names = [f"z #{i}" + (f" {classes[i % len(classes)]}" if classes else "") for i in range(GRID_SAMPLES)]
        dest = spectrogram_grid(db, self.out_dir / "grids" / f"epoch_{state.epoch:06d}.png",
                                f"epoch {state.epoch}, iteration {state.iteration}",
                                names, f.sample_rate, f.hop_length, f.n_fft)
        if self.mlflow:
            import matplotlib.image

            def send() -> None:
                self.mlflow.log_artifact(str(dest), "grids")
                # As an MLflow image with its step: the UI's slider walks through training.
                self.mlflow.log_image(matplotlib.image.imread(dest)[..., :3], key="spectrogram_grid",
                                      step=state.iteration)

            if not self._send(send, state.iteration):
                self.unsent_grids.append(dest)
        return dest

    def finish(self, summary: dict, artifacts: list[Path], iteration: int) -> None:
        """The model files (the losses' last values are their histories' last points: no single-point
        ``final/*`` charts); the MLflow run ends FINISHED. With the tracking server still
        away, the run stays open there and a warning says what is where (the files are written either way)."""
        self.write_csv()
        if not self.mlflow:
            return
        def send() -> None:
            self._flush_metrics()
            for path in self.unsent_grids:
                self.mlflow.log_artifact(str(path), "grids")
            for path in artifacts:
                self.mlflow.log_artifact(str(path), "model")
            self.mlflow.end_run()

        if not self._send(send, iteration, force=True):
            set_fast_failing()  # for MLflow's end-of-process end_run: it gives up in seconds too
            log.warning("MLflow run %s could not be finished: the tracking server is unreachable since iteration "
                        "%s. The generator, checkpoints and the loss CSV are on disk; rerun the stage (it resumes "
                        "from the last checkpoint) to record the run", self.run_id, self.gap_from)

    def fail(self) -> None:
        """A crash or an interrupt: the MLflow run ends FAILED (not left RUNNING) when the server answers."""
        if self.mlflow:
            self._send(lambda: self.mlflow.end_run(status="FAILED"), -1, force=True)
