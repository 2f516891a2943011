"""What a training run records: the loss history (CSV for DVC plots), MLflow params, metrics and grids."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch

from specgan.atomic import atomic_path
from specgan.config import Params
from specgan.gan import GanState, StepOutput, grad_norm
from specgan.redact import redact_params
from specgan.stats import NormStats

log = logging.getLogger(__name__)

LOG_FIELDS = ["iteration", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]  # the CSV (DVC plots)
MLFLOW_NAMES = ["loss/d", "loss/g", "d_output/real", "d_output/fake"]  # the same values, grouped in the MLflow UI
GRID_SAMPLES = 16


class RunLog:
    """The rank-0 record of one training run. ``tracking=False`` writes the CSV and grids but nothing to MLflow."""

    def __init__(self, params: Params, stats: NormStats, out_dir: Path, log_csv: Path | None, tracking: bool,
                 history: list[list[float]], run_id: str | None) -> None:
        self.p, self.stats, self.out_dir, self.log_csv = params, stats, out_dir, log_csv
        self.tracking = tracking
        self.history = history
        self.run_id = run_id
        self.mlflow: Any = None
        self.last_rate = 0.0

    def start(self, tags: dict[str, str], extra_params: dict[str, Any]) -> None:
        """Open the MLflow run (a resumed training continues its own run) and log every param."""
        if not self.tracking:
            return
        import mlflow

        from specgan.tracking import check_tracking, flatten, git_commit, start_run

        self.mlflow = mlflow
        if self.run_id:
            mlflow.set_tracking_uri(check_tracking())
            try:
                mlflow.start_run(run_id=self.run_id)
                return
            except mlflow.exceptions.MlflowException:
                log.warning("MLflow run %s not found on this server; starting a new run", self.run_id)
        run = start_run(tags={"git_commit": git_commit(), **tags})
        self.run_id = run.info.run_id
        mlflow.log_params(flatten(redact_params(self.p.to_dict())))  # no credentials from URLs
        mlflow.log_params(extra_params)

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
            self.mlflow.log_metrics(metrics, step=state.iteration)
        return row

    def write_csv(self) -> None:
        if self.log_csv:
            with atomic_path(self.log_csv) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(LOG_FIELDS)
                writer.writerows([[int(r[0]), int(r[1]), *r[2:]] for r in self.history])

    def grid(self, state: GanState, device: torch.device, classes: tuple[str, ...] = ()) -> Path:
        """The fixed-z spectrogram grid of this epoch, as a PNG and (with its step) an MLflow image; a
        conditional model's tiles go through its classes in turn."""
        from specgan.data import to_db
        from specgan.plots import spectrogram_grid

        gen = torch.Generator(device=device).manual_seed(self.p.render.seed)
        z = torch.rand(GRID_SAMPLES, self.p.model.latent_dim, generator=gen, device=device) * 2 - 1
        y = torch.arange(GRID_SAMPLES, device=device) % len(classes) if classes else None
        state.G.eval()
        with torch.no_grad():
            db = to_db(state.G(z) if y is None else state.G(z, y), self.stats, self.p.normalize)
        state.G.train()
        f = self.p.features
        names = [f"z #{i}" + (f" {classes[i % len(classes)]}" if classes else "") for i in range(GRID_SAMPLES)]
        dest = spectrogram_grid(db, self.out_dir / "grids" / f"epoch_{state.epoch:06d}.png",
                                f"epoch {state.epoch}, iteration {state.iteration}",
                                names, f.sample_rate, f.hop_length, f.n_fft)
        if self.mlflow:
            import matplotlib.image

            self.mlflow.log_artifact(str(dest), "grids")
            # As an MLflow image with its step: the UI's slider walks through training.
            self.mlflow.log_image(matplotlib.image.imread(dest)[..., :3], key="spectrogram_grid",
                                  step=state.iteration)
        return dest

    def finish(self, summary: dict, artifacts: list[Path], iteration: int) -> None:
        """The final losses and the model files; the MLflow run ends FINISHED."""
        self.write_csv()
        if not self.mlflow:
            return
        for path in artifacts:
            self.mlflow.log_artifact(str(path), "model")
        final = {f"final/{name}": summary[k] for k, name in zip(LOG_FIELDS[2:], MLFLOW_NAMES, strict=True)
                 if k in summary}
        self.mlflow.log_metrics(final, step=iteration)
        self.mlflow.end_run()

    def fail(self) -> None:
        """A crash or an interrupt: the MLflow run ends FAILED (not left RUNNING)."""
        if self.mlflow:
            self.mlflow.end_run(status="FAILED")
