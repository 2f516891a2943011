"""The train step: the GAN trained for ``train.epochs`` epochs, resumable, on one device or under torchrun.

The loop reads top to bottom in :meth:`Trainer.run`; where it runs lives in ``distributed``, what it records
in ``run_log`` and how it resumes in ``checkpoints``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from specgan.core.atomic import write_json
from specgan.core.config import Params
from specgan.core.errors import TrainError
from specgan.core.redact import redact_params
from specgan.data.normalize import normalize
from specgan.data.shards import load_features, load_labels
from specgan.data.stats import NormStats
from specgan.model.generator_file import write_generator
from specgan.training.checkpoints import list_checkpoints, resume_point, save_checkpoint
from specgan.training.distributed import Dist, allreduce_gradients, barrier, check_ranks_agree, pick_device
from specgan.training.envelope import EnvelopeMatching, TimeEnvelope
from specgan.training.gan import GanState, GanStep, fast_step
from specgan.training.run_log import LOG_FIELDS, RunLog

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.pt"
SPEC_ITERATION_TFLOP = 1.41  # SPEC.md 7: one dcgan iteration at width 64, batch 64 (FLOPs scale as width^2 x batch)
CPU_TFLOP_S = 0.15  # a 2-core CPU (BENCHMARKS.md, "Training step"): for the estimate a CPU run is refused with
CPU_HOURS_LIMIT = 2.0  # longer than this on a CPU by default: refused with what to run instead


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


def export_generator(state: GanState, params: Params, stats: NormStats, dest: Path, provenance: dict,
                     classes: tuple[str, ...] = ()) -> Path:
    """The generator with what defines it: weights, stats, model and feature configs, the class names of a
    conditional model (see generator_file)."""
    return write_generator(dest, state.G_out.state_dict(), params.model, params.features, params.normalize,
                           stats.to_dict(), provenance, classes)


class Trainer:
    """Runs ``train.epochs`` epochs from scratch or from a checkpoint; see :func:`train`."""

    def __init__(self, features_dir: Path, stats_path: Path, out_dir: Path, params: Params,
                 resume: str | None, fresh: bool, metrics_path: Path | None, log_csv: Path | None,
                 tracking: bool = True) -> None:
        self.p, self.cfg = params, params.train
        self.out_dir, self.ckpt_dir = out_dir, out_dir / "checkpoints"
        self.metrics_path, self.stats_path = metrics_path, stats_path
        self.dist = Dist.from_env()
        if self.cfg.batch_size % self.dist.world:
            raise TrainError(f"train.batch_size {self.cfg.batch_size} is not divisible by {self.dist.world} ranks")
        self.device = pick_device(self.cfg.device, self.dist.local_rank)
        self.stats = NormStats.load(stats_path)
        self.fp = fingerprint(params, self.stats)
        self.data = self._load_data(features_dir)
        self.n = self.data.shape[0]
        names = load_labels(features_dir) if params.model.conditional or self.cfg.class_balance > 0 else []
        self.classes, self.labels = self._class_ids(names, features_dir) if params.model.conditional else ((), None)
        self.draw_weights = self._draw_weights(names) if self.cfg.class_balance > 0 else None
        self.groups = self._class_groups() if self.cfg.class_groups else None
        self.iters_per_epoch = (self.n // self.cfg.batch_size) // self.cfg.optim.d_steps
        self._refuse_a_gpu_job_on_the_cpu()
        if self.iters_per_epoch == 0:
            raise TrainError(f"{self.n} clips are fewer than one iteration needs "
                             f"({self.cfg.batch_size} x {self.cfg.optim.d_steps} D steps)")
        self.state = GanState.create(params.model, self.cfg, self.device, len(self.classes))
        self.last_ckpt, ckpt, abandoned = resume_point(self.ckpt_dir, resume, fresh, self.fp, self.device,
                                                       self.dist.main, self.cfg.epochs)
        history, run_id = [], None
        if ckpt is not None:
            self.state.load_state_dict(ckpt["state"])
            torch.set_rng_state(ckpt["rng_cpu"].cpu())  # map_location may have moved it to the GPU
            history = [list(map(float, row)) for row in ckpt["history"]]
            run_id = ckpt.get("run_id") or None
            if self.last_ckpt != list_checkpoints(self.ckpt_dir)[-1]:
                run_id = None  # an earlier point of a longer run: a run of its own, not the longer run's
            log.info("resuming from %s (epoch %d, iteration %d)", self.last_ckpt, self.state.epoch,
                     self.state.iteration)
        # ``abandoned``: a killed run's, left RUNNING on the server: marked KILLED when this one starts.
        self.log = RunLog(params, self.stats, out_dir, log_csv, tracking and self.dist.main, history, run_id,
                          abandoned)

    def _load_data(self, features_dir: Path) -> torch.Tensor:
        """The normalized training tensor, resident on the device."""
        feats = load_features(features_dir)
        if not np.isfinite(feats).all():
            raise TrainError(f"features in {features_dir} hold NaN or Inf")
        data = normalize(feats, self.stats, self.p.normalize, self.device)
        return data.contiguous(memory_format=torch.channels_last)  # as the networks are (gan.fast_step)

    def _refuse_a_gpu_job_on_the_cpu(self) -> None:
        """A recipe sized for a GPU that landed on the CPU by default (train.device auto): say how long it would
        take and what to run instead, before any work; train.device=cpu (or SPECGAN_DEVICE=cpu) trains anyway."""
        if self.device.type != "cpu" or (os.environ.get("SPECGAN_DEVICE") or self.cfg.device) == "cpu":
            return
        m, t = self.p.model, self.cfg
        tflop = SPEC_ITERATION_TFLOP * (m.model_dim / 64) ** 2 * t.batch_size / 64 * (t.optim.d_steps + 1) / 2
        iterations = t.epochs * max(1, self.iters_per_epoch)
        hours = iterations * tflop / CPU_TFLOP_S / 3600
        if hours > CPU_HOURS_LIMIT:
            raise TrainError(f"recipe {self.p.recipe} is a GPU job: {iterations:,} iterations of about {tflop:.2g} "
                             f"TFLOP need about {hours:,.0f} hours on a CPU like this one. Train on a GPU, or "
                             "`specgan recipe demo` for a CPU-sized run; train.device=cpu trains here anyway")

    def _draw_weights(self, names: list[str]) -> torch.Tensor | None:
        """Each clip's chance to be drawn with ``train.class_balance`` b: proportional to its class's count**-b
        (b 1: every class as often as any other; unlabelled clips form one class). None where every class is
        as large (one class included): the plain shuffle draws them as often already."""
        counts = Counter(names)
        if len(set(counts.values())) < 2:  # one class, or every class as large: a plain shuffle is the same
            return None
        return torch.tensor([counts[c] ** -self.cfg.class_balance for c in names], dtype=torch.float64)

    def _class_groups(self) -> tuple[int, list[torch.Tensor], torch.Tensor]:
        """``train.class_groups``: the group size, each class's clip indices and each class's chance to fill a
        group (count**(1 - class_balance): the clips' marginal chances stay ``_draw_weights``'s)."""
        g, b_local = self.p.model.minibatch_std, self.cfg.batch_size // self.dist.world
        if self.labels is None:
            raise TrainError("train.class_groups needs model.conditional: true (an unconditional G is not told "
                             "which class a group is)")
        if g < 2 or b_local % g:
            raise TrainError(f"train.class_groups groups clips for D's minibatch std: model.minibatch_std must be 2 "
                             f"or more and divide the batch per rank ({b_local}); it is {g}")
        members = [torch.nonzero(self.labels == c).flatten().cpu() for c in range(len(self.classes))]
        chance = torch.tensor([len(m) ** (1 - self.cfg.class_balance) for m in members], dtype=torch.float64)
        return g, members, chance

    def _order(self, shuffle: torch.Generator) -> torch.Tensor:
        """This epoch's clip order: a permutation (SPEC.md 7), or with ``train.class_balance`` N draws with
        replacement that favour rare classes (as many iterations either way); with ``train.class_groups`` each
        run of ``model.minibatch_std`` clips is one class, distinct clips while the class has enough."""
        if self.groups is not None:
            g, members, chance = self.groups
            picks = torch.multinomial(chance, -(-self.n // g), replacement=True, generator=shuffle).tolist()
            runs = [members[c][torch.randperm(len(members[c]), generator=shuffle).repeat(-(-g // len(members[c])))[:g]]
                    for c in picks]
            return torch.cat(runs)[:self.n].to(self.device)
        if self.draw_weights is None:
            return torch.randperm(self.n, generator=shuffle).to(self.device)
        return torch.multinomial(self.draw_weights, self.n, replacement=True, generator=shuffle).to(self.device)

    def _class_ids(self, names: list[str], features_dir: Path) -> tuple[tuple[str, ...], torch.Tensor]:
        """A conditional model's class names (sorted) and each clip's class index, on the device."""
        missing = sum(1 for name in names if not name)
        if missing:
            raise TrainError(f"model.conditional needs a class for every clip, but {missing} of {len(names)} "
                             f"clips in {features_dir} have none (data.labels: manifest or folder; or train "
                             "unconditionally: model.conditional=false)")
        classes = tuple(sorted(set(names)))
        if len(classes) < 2:
            raise TrainError(f"model.conditional needs at least 2 classes; {features_dir} has {list(classes)}")
        index = {c: i for i, c in enumerate(classes)}
        return classes, torch.tensor([index[name] for name in names], dtype=torch.long, device=self.device)

    def run(self) -> dict:
        """The loop: per epoch a shuffle, D and G steps per iteration, logging, checkpoints and grids."""
        step = self._networks()
        if self.dist.main:
            self.log.start({"data_version": self.stats.data_version, "loss": self.cfg.loss,
                            "fingerprint": self.fp, "classes": ",".join(self.classes)},
                           {"data.clips": self.n, "train.iterations_per_epoch": self.iters_per_epoch,
                            "train.world_size": self.dist.world})
        d_steps, b_local = self.cfg.optim.d_steps, self.cfg.batch_size // self.dist.world
        bar = tqdm(total=self.cfg.epochs * self.iters_per_epoch, initial=self.state.iteration, desc="train",
                   unit="it", disable=not self.dist.main)
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        t_last, it_last, out = time.perf_counter(), self.state.iteration, None
        try:
            while self.state.epoch < self.cfg.epochs:
                shuffle, latent = epoch_generators(self.cfg.seed, self.state.epoch, self.dist.rank, self.device)
                perm = self._order(shuffle)
                for it in range(self.iters_per_epoch):
                    starts = [(it * d_steps + k) * self.cfg.batch_size + self.dist.rank * b_local
                              for k in range(d_steps)]
                    picks = [perm[s:s + b_local] for s in starts]
                    labels = None if self.labels is None else [self.labels[p] for p in picks]
                    out = step([self.data[p] for p in picks], latent, labels)
                    bad |= ~(torch.isfinite(out.d_loss) & torch.isfinite(out.g_loss))
                    bar.update(1)
                    if self.state.iteration % self.cfg.log_every_iters == 0:
                        self._check_finite(bad)
                        now = time.perf_counter()
                        rate = (self.state.iteration - it_last) / max(now - t_last, 1e-9)
                        t_last, it_last = now, self.state.iteration
                        if self.dist.main:
                            row = self.log.step(self.state, out, rate, self.device)
                            bar.set_postfix(d=f"{row[2]:.3f}", g=f"{row[3]:.3f}", refresh=False)
                self.state.epoch += 1
                self._check_finite(bad)
                last = self.state.epoch == self.cfg.epochs
                if self.state.epoch % self.cfg.checkpoint_every_epochs == 0 or last:
                    self._checkpoint()
                if self.dist.main and (self.state.epoch % self.cfg.grid_every_epochs == 0 or last):
                    self.log.grid(self.state, self.device, self.classes)
            return self._finish()
        except BaseException:
            self.log.fail()
            raise
        finally:
            bar.close()

    def _networks(self) -> GanStep:
        """DDP for dcgan; for wgan_gp and R1 (a second backward through D, which DDP refuses) an explicit
        all-reduce of the gradients, which is what DDP computes, without the overlap."""
        wrap = grad_sync = None
        if self.dist.world > 1 and (self.cfg.loss == "wgan_gp" or self.cfg.optim.r1_weight):
            grad_sync = allreduce_gradients
        elif self.dist.world > 1:
            from functools import partial

            from torch.nn.parallel import DistributedDataParallel as DDP

            wrap = partial(DDP, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return fast_step(self.state, self.cfg, self.p.model.latent_dim, wrap, grad_sync, self._envelope_term())

    def _envelope_term(self) -> EnvelopeMatching | None:
        """``train.envelope_weight``'s (and ``envelope_quantile_weight``'s) G loss term, its targets the whole
        training tensor's mean envelope and every clip's envelope. A conditional model's target is each class's
        own mean envelope, a batch held against its classes': against the whole set's, every class was pulled
        toward one decay (Hydrogen and the kit: BENCHMARKS.md, "The demo now"). With
        ``train.class_balance`` an unconditional model's target stays the data's own mixture (the held-out
        clips' too): weighted as the draws are, decays went 1.6x further from the held-out clips' on Hydrogen."""
        c = self.cfg
        if not (c.envelope_weight or c.envelope_quantile_weight):
            return None
        env = TimeEnvelope(self.stats, self.p.normalize, c.envelope_floor_db, self.device)
        bank = env.all_of(self.data)
        target = bank.mean(0)
        if self.labels is not None:  # [classes, T]
            target = torch.stack([bank[self.labels == k].mean(0) for k in range(len(self.classes))])
        return EnvelopeMatching(env, target, c.envelope_weight, bank, c.envelope_quantile_weight)

    def _check_finite(self, bad: torch.Tensor) -> None:
        if bool(bad):
            where = self.last_ckpt or "none (no checkpoint was written yet)"
            raise TrainError(f"non-finite loss by iteration {self.state.iteration} (epoch {self.state.epoch + 1}); "
                             f"last good checkpoint: {where}")

    def _checkpoint(self) -> None:
        check_ranks_agree(self.state.G, self.dist.world, self.state.epoch)
        if self.dist.main:
            payload = {"state": self.state.state_dict(), "rng_cpu": torch.get_rng_state(),
                       "history": self.log.history, "fingerprint": self.fp, "run_id": self.log.run_id or "",
                       "params": json.dumps(redact_params(self.p.to_dict()))}
            self.last_ckpt = save_checkpoint(self.ckpt_dir, self.state.epoch, payload, self.cfg.keep_checkpoints)
            self.log.write_csv()
        barrier(self.dist.world)

    def _finish(self) -> dict:
        summary: dict = {"epochs": self.state.epoch, "iterations": self.state.iteration, "clips": self.n}
        if self.log.history:
            summary.update(zip(LOG_FIELDS[2:], self.log.history[-1][2:], strict=True))
        if not self.dist.main:
            return summary
        provenance = {"recipe": self.p.recipe, "run_id": self.log.run_id or "", "data_version": self.stats.data_version,
                      "fingerprint": self.fp, "iterations": self.state.iteration}
        gen_path = export_generator(self.state, self.p, self.stats, self.out_dir / GENERATOR_FILE, provenance,
                                    self.classes)
        if self.log.last_rate:
            summary["iterations_per_s"] = self.log.last_rate
            summary["samples_per_s"] = self.log.last_rate * self.cfg.batch_size * self.cfg.optim.d_steps
        summary["run_id"] = self.log.run_id or ""
        if self.metrics_path:
            write_json(self.metrics_path, summary)
        self.log.finish(summary, [gen_path, self.stats_path], self.state.iteration)
        return summary


def train(features_dir: str | Path, stats_path: str | Path, out_dir: str | Path, params: Params,
          resume: str | None = None, fresh: bool = False, metrics_path: str | Path | None = None,
          log_csv: str | Path | None = None, tracking: bool = True) -> dict:
    """Train (or resume) and return a summary; under torchrun every rank calls this.
    ``tracking=False`` logs nothing to MLflow (benchmarks on machines without it)."""
    ddp = Dist.from_env().world > 1
    if Dist.from_env().main and tracking:
        from specgan.core.tracking import check_tracking

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
