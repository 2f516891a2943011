"""Where training runs: this process's rank in a torchrun job, its device, and gradient and weight agreement."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from specgan.core.errors import TrainError


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


def check_ranks_agree(module: torch.nn.Module, world: int, epoch: int) -> None:
    """Every rank must hold the same weights; a silent divergence would waste the whole run."""
    if world == 1:
        return
    total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().view(1)
    gathered = [torch.zeros_like(total) for _ in range(world)]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise TrainError(f"ranks hold different generator weights at epoch {epoch}")


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
