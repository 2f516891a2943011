"""The train step: SpecGAN training with checkpoints, exact resume, MLflow tracking and optional DDP."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from specgan.atomic import atomic_path, write_json
from specgan.checkpoints import (
    list_checkpoints,
    load_checkpoint,
    newest_loadable,
    remove_stale_temporaries,
    save_checkpoint,
)
from specgan.config import Params
from specgan.data import normalize
from specgan.errors import TrainError
from specgan.gan import GanState, GanStep, StepOutput, fast_step, grad_norm
from specgan.shards import load_features
from specgan.stats import NormStats

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.pt"
LOG_FIELDS = ["iteration", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]  # the CSV (DVC plots)
MLFLOW_NAMES = ["loss/d", "loss/g", "d_output/real", "d_output/fake"]  # the same values, grouped in the MLflow UI
GRID_SAMPLES = 16


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(setting: str, local_rank: int = 0) -> torch.device:
    """SPECGAN_DEVICE or train.device: auto = CUDA when present, else CPU."""
    choice = os.environ.get("SPECGAN_DEVICE") or setting
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("device cuda requested but CUDA is not available")
        return torch.device("cuda", local_rank)
    if choice != "cpu":
        raise TrainError(f"unknown device {choice!r} (auto, cpu or cuda)")
    return torch.device("cpu")


def fingerprint(params: Params, stats: NormStats) -> str:
    """What a checkpoint must share with the run that resumes it (epochs may grow; logging may change)."""
    train = dataclasses.asdict(params.train)
    for key in ("epochs", "checkpoint_every_epochs", "keep_checkpoints", "log_every_iters",
                "grid_every_epochs", "device", "compile"):
        train.pop(key)
    blob = json.dumps({"model": dataclasses.asdict(params.model), "train": train,
                       "normalize": dataclasses.asdict(params.normalize),
                       "stats": [stats.mean.tolist(), stats.std.tolist()]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def epoch_generators(seed: int, epoch: int, rank: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """Per-epoch RNGs, derived from (seed, epoch[, rank]): a resumed run draws exactly what an unbroken one does.

    The shuffle generator is shared by all ranks (one permutation); the latent generator is per rank."""
    shuffle = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    latent = torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank + 1)
    return shuffle, latent


def allreduce_gradients(module: torch.nn.Module) -> None:
    """Average a module's gradients over all ranks (one flat all-reduce)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def export_generator(state: GanState, params: Params, stats: NormStats, dest: Path, provenance: dict) -> Path:
    """The generator with everything needed to make audio: weights, stats and configs (weights_only-safe)."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state.G.state_dict().items()},
               "model": dataclasses.asdict(params.model), "normalize": dataclasses.asdict(params.normalize),
               "features": dataclasses.asdict(params.features), "render": dataclasses.asdict(params.render),
               "stats": stats.to_dict(), "provenance": provenance}
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    return dest


class Trainer:
    """Runs ``train.epochs`` epochs from scratch or from a checkpoint; see :func:`train`."""

    def __init__(self, features_dir: Path, stats_path: Path, out_dir: Path, params: Params,
                 resume: str | None, fresh: bool, metrics_path: Path | None, log_csv: Path | None,
                 tracking: bool = True) -> None:
        self.p, self.cfg = params, params.train
        self.tracking = tracking
        self.out_dir = out_dir
        self.ckpt_dir = out_dir / "checkpoints"
        self.metrics_path, self.log_csv = metrics_path, log_csv
        self.dist = Dist.from_env()
        if self.cfg.batch_size % self.dist.world:
            raise TrainError(f"train.batch_size {self.cfg.batch_size} is not divisible by {self.dist.world} ranks")
        self.device = pick_device(self.cfg.device, self.dist.local_rank)
        self.stats_path = stats_path
        self.stats = NormStats.load(stats_path)
        self.fp = fingerprint(params, self.stats)
        feats = load_features(features_dir)
        if not np.isfinite(feats).all():
            raise TrainError(f"features in {features_dir} hold NaN or Inf")
        self.data = normalize(feats, self.stats, params.normalize, self.device)  # resident on the device
        self.n = self.data.shape[0]
        self.batches_per_epoch = self.n // self.cfg.batch_size
        self.iters_per_epoch = self.batches_per_epoch // self.cfg.optim.d_steps
        if self.iters_per_epoch == 0:
            raise TrainError(f"{self.n} clips are fewer than one iteration needs "
                             f"({self.cfg.batch_size} x {self.cfg.optim.d_steps} D steps)")
        self.state = GanState.create(params.model, self.cfg, self.device)
        self.history: list[list[float]] = []
        self.run_id: str | None = None
        self.last_ckpt: Path | None = None
        self.last_rate = 0.0
        self._resume(resume, fresh)

    def _resume(self, resume: str | None, fresh: bool) -> None:
        if self.dist.main:
            for stale in remove_stale_temporaries(self.ckpt_dir):
                log.warning("removed %s, left half-written by an interrupted run", stale)
        if resume:
            path = Path(resume)
            if not path.exists():
                raise TrainError(f"checkpoint not found: {path}")
            try:
                ckpt = load_checkpoint(path, self.device)
            except Exception as exc:  # noqa: BLE001
                raise TrainError(f"checkpoint {path} is unreadable ({type(exc).__name__})") from None
        elif fresh:
            path, ckpt = None, None
        else:
            path, ckpt = newest_loadable(self.ckpt_dir, self.device)
        if ckpt is not None and ckpt.get("fingerprint") != self.fp:
            if resume:
                raise TrainError(f"{path} was trained with other model/train params or data; "
                                 "pass --fresh to start over")
            log.warning("not resuming from %s: it was trained with other model/train params or data", path)
            ckpt = None
        if ckpt is None:
            self._clear_stale_checkpoints()
            return
        self.state.load_state_dict(ckpt["state"])
        torch.set_rng_state(ckpt["rng_cpu"].cpu())  # map_location may have moved it to the GPU
        self.history = [list(map(float, row)) for row in ckpt["history"]]
        self.run_id = ckpt.get("run_id") or None
        self.last_ckpt = path
        log.info("resuming from %s (epoch %d, iteration %d)", path, self.state.epoch, self.state.iteration)

    def _clear_stale_checkpoints(self) -> None:
        """A fresh start owns the checkpoint folder: older checkpoints would shadow the new ones."""
        if self.dist.main:
            for old in list_checkpoints(self.ckpt_dir):
                log.warning("removing stale checkpoint %s", old)
                old.unlink()

    def _networks(self) -> GanStep:
        """DDP for dcgan; for wgan_gp (two critic forwards per backward, which DDP refuses) an explicit
        all-reduce of the gradients, which is what DDP computes, without the overlap."""
        wrap = grad_sync = None
        if self.dist.world > 1 and (self.cfg.recipe == "wgan_gp" or self.cfg.optim.r1_weight):
            grad_sync = allreduce_gradients
        elif self.dist.world > 1:
            from functools import partial

            from torch.nn.parallel import DistributedDataParallel as DDP

            wrap = partial(DDP, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.device.type == "cuda":
            self.data = self.data.contiguous(memory_format=torch.channels_last)
        return fast_step(self.state, self.cfg, self.p.model.latent_dim, wrap, grad_sync)

    def _check_ranks_agree(self) -> None:
        """Every rank must hold the same weights; a silent divergence would waste the whole run."""
        if self.dist.world == 1:
            return
        total = torch.stack([p.detach().double().sum() for p in self.state.G.parameters()]).sum().view(1)
        gathered = [torch.zeros_like(total) for _ in range(self.dist.world)]
        dist.all_gather(gathered, total)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise TrainError(f"ranks hold different generator weights at epoch {self.state.epoch}")

    def _checkpoint(self) -> None:
        self._check_ranks_agree()
        if self.dist.main:
            payload = {"state": self.state.state_dict(), "rng_cpu": torch.get_rng_state(),
                       "history": self.history, "fingerprint": self.fp, "run_id": self.run_id or "",
                       "params": json.dumps(self.p.to_dict())}
            self.last_ckpt = save_checkpoint(self.ckpt_dir, self.state.epoch, payload, self.cfg.keep_checkpoints)
            self._write_log_csv()
        if self.dist.world > 1:
            dist.barrier()

    def _write_log_csv(self) -> None:
        if self.log_csv:
            with atomic_path(self.log_csv) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(LOG_FIELDS)
                writer.writerows([[int(r[0]), int(r[1]), *r[2:]] for r in self.history])

    def _check_finite(self, bad: torch.Tensor) -> None:
        if bool(bad):
            where = self.last_ckpt or "none (no checkpoint was written yet)"
            raise TrainError(f"non-finite loss by iteration {self.state.iteration} (epoch {self.state.epoch + 1}); "
                             f"last good checkpoint: {where}")

    def _grid(self, tracker) -> None:
        from specgan.data import to_db
        from specgan.plots import spectrogram_grid

        gen = torch.Generator(device=self.device).manual_seed(self.p.render.seed)
        z = torch.rand(GRID_SAMPLES, self.p.model.latent_dim, generator=gen, device=self.device) * 2 - 1
        self.state.G.eval()
        with torch.no_grad():
            db = to_db(self.state.G(z), self.stats, self.p.normalize)
        self.state.G.train()
        f = self.p.features
        dest = spectrogram_grid(db, self.out_dir / "grids" / f"epoch_{self.state.epoch:06d}.png",
                                f"epoch {self.state.epoch}, iteration {self.state.iteration}",
                                [f"z #{i}" for i in range(GRID_SAMPLES)], f.sample_rate, f.hop_length, f.n_fft)
        if tracker:
            import matplotlib.image

            tracker.log_artifact(str(dest), "grids")
            # As an MLflow image with its step: the UI's slider walks through training.
            tracker.log_image(matplotlib.image.imread(dest)[..., :3], key="spectrogram_grid",
                              step=self.state.iteration)

    def run(self) -> dict:
        step = self._networks()
        tracker = self._start_tracking() if self.dist.main and self.tracking else None
        b_local = self.cfg.batch_size // self.dist.world
        total = self.cfg.epochs * self.iters_per_epoch
        bar = tqdm(total=total, initial=self.state.iteration, desc="train", unit="it", disable=not self.dist.main)
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        t_last, it_last, out = time.perf_counter(), self.state.iteration, None
        try:
            while self.state.epoch < self.cfg.epochs:
                shuffle, latent = epoch_generators(self.cfg.seed, self.state.epoch, self.dist.rank, self.device)
                perm = torch.randperm(self.n, generator=shuffle).to(self.device)
                for it in range(self.iters_per_epoch):
                    batches = []
                    for k in range(self.cfg.optim.d_steps):
                        start = (it * self.cfg.optim.d_steps + k) * self.cfg.batch_size + self.dist.rank * b_local
                        batches.append(self.data[perm[start:start + b_local]])
                    out = step(batches, latent)
                    bad |= ~(torch.isfinite(out.d_loss) & torch.isfinite(out.g_loss))
                    bar.update(1)
                    if self.state.iteration % self.cfg.log_every_iters == 0:
                        self._check_finite(bad)
                        now = time.perf_counter()
                        rate = (self.state.iteration - it_last) / max(now - t_last, 1e-9)
                        t_last, it_last = now, self.state.iteration
                        self._log(out, rate, tracker, bar)
                self.state.epoch += 1
                self._check_finite(bad)
                if self.state.epoch % self.cfg.checkpoint_every_epochs == 0 or self.state.epoch == self.cfg.epochs:
                    self._checkpoint()
                if self.dist.main and self.state.epoch % self.cfg.grid_every_epochs == 0:
                    self._grid(tracker)
            return self._finish(out, tracker)
        except BaseException:
            if tracker:
                tracker.end_run(status="FAILED")
            raise
        finally:
            bar.close()

    def _log(self, out: StepOutput, rate: float, tracker, bar) -> None:
        if not self.dist.main:
            return
        row = [float(self.state.iteration), float(self.state.epoch), float(out.d_loss), float(out.g_loss),
               float(out.d_real), float(out.d_fake)]
        self.history.append(row)
        self.last_rate = rate
        metrics = dict(zip(MLFLOW_NAMES, row[2:], strict=True))
        metrics.update({"grad_norm/d": grad_norm(self.state.D), "grad_norm/g": grad_norm(self.state.G),
                        "speed/iterations_per_s": rate,
                        "speed/samples_per_s": rate * self.cfg.batch_size * self.cfg.optim.d_steps})
        if self.device.type == "cuda":
            metrics["speed/gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        if tracker:
            tracker.log_metrics(metrics, step=self.state.iteration)
        bar.set_postfix(d=f"{row[2]:.3f}", g=f"{row[3]:.3f}", refresh=False)

    def _start_tracking(self):
        import mlflow

        from specgan.tracking import flatten, git_commit, start_run

        if self.run_id:  # a resumed training continues its MLflow run
            from specgan.tracking import check_tracking

            mlflow.set_tracking_uri(check_tracking())
            try:
                mlflow.start_run(run_id=self.run_id)
                return mlflow
            except mlflow.exceptions.MlflowException:
                log.warning("MLflow run %s not found on this server; starting a new run", self.run_id)
        run = start_run(tags={"git_commit": git_commit(), "data_version": self.stats.data_version,
                              "recipe": self.cfg.recipe, "fingerprint": self.fp})
        self.run_id = run.info.run_id
        mlflow.log_params(flatten(self.p.to_dict()))
        mlflow.log_params({"data.clips": self.n, "train.iterations_per_epoch": self.iters_per_epoch,
                           "train.world_size": self.dist.world})
        return mlflow

    def _finish(self, out: StepOutput | None, tracker) -> dict:
        summary: dict = {"epochs": self.state.epoch, "iterations": self.state.iteration, "clips": self.n}
        if self.history:
            last = self.history[-1]
            summary.update(d_loss=last[2], g_loss=last[3], d_real=last[4], d_fake=last[5])
        if not self.dist.main:
            return summary
        provenance = {"run_id": self.run_id or "", "data_version": self.stats.data_version,
                      "fingerprint": self.fp, "iterations": self.state.iteration}
        gen_path = export_generator(self.state, self.p, self.stats, self.out_dir / GENERATOR_FILE, provenance)
        self._write_log_csv()
        if self.last_rate:
            summary["iterations_per_s"] = self.last_rate
            summary["samples_per_s"] = self.last_rate * self.cfg.batch_size * self.cfg.optim.d_steps
        summary["run_id"] = self.run_id or ""
        if self.metrics_path:
            write_json(self.metrics_path, summary)
        if tracker:
            tracker.log_artifact(str(gen_path), "model")
            tracker.log_artifact(str(self.stats_path), "model")
            final = {f"final/{name}": summary[k] for k, name in zip(LOG_FIELDS[2:], MLFLOW_NAMES, strict=True)
                     if k in summary}
            tracker.log_metrics(final, step=self.state.iteration)
            tracker.end_run()
        return summary


def train(features_dir: str | Path, stats_path: str | Path, out_dir: str | Path, params: Params,
          resume: str | None = None, fresh: bool = False, metrics_path: str | Path | None = None,
          log_csv: str | Path | None = None, tracking: bool = True) -> dict:
    """Train (or resume) and return a summary; under torchrun every rank calls this.
    ``tracking=False`` logs nothing to MLflow (benchmarks on machines without it)."""
    ddp = Dist.from_env().world > 1
    if Dist.from_env().main and tracking:
        from specgan.tracking import check_tracking

        check_tracking()  # an unreachable server fails the command before any work
    if ddp and not dist.is_initialized():
        backend = "nccl" if pick_device(params.train.device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    try:
        trainer = Trainer(Path(features_dir), Path(stats_path), Path(out_dir), params, resume, fresh,
                          Path(metrics_path) if metrics_path else None, Path(log_csv) if log_csv else None,
                          tracking)
        return trainer.run()
    finally:
        if ddp and dist.is_initialized():
            dist.destroy_process_group()
