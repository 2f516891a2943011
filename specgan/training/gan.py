"""The GAN training state and one training iteration (SPEC.md section 7), free of I/O and logging."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from specgan.core.config import ModelConfig, TrainConfig
from specgan.model import losses
from specgan.model.networks import Discriminator, Generator
from specgan.training.augment import cutout

# An extra G loss on a generated batch and its classes (None: unconditional), e.g. envelope.EnvelopeMatching.
GLossTerm = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class GanState:
    """Both networks (raw modules), their optimizers and the training position."""

    G: Generator
    D: Discriminator
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    epoch: int = 0  # completed epochs
    iteration: int = 0  # completed iterations (one G update each)
    G_ema: AveragedModel | None = None  # ``train.g_ema``: the moving average of G's weights, updated each G step

    @property
    def G_out(self) -> Generator:
        """The generator that is exported and drawn: the weights' moving average when there is one, else G."""
        return self.G if self.G_ema is None else self.G_ema.module

    @classmethod
    def create(cls, model: ModelConfig, train: TrainConfig, device: torch.device, n_classes: int = 0) -> GanState:
        torch.manual_seed(train.seed)  # the same initial weights on every rank and every run
        G, D = Generator(model, n_classes).to(device), Discriminator(model, n_classes).to(device)
        o = train.optim
        ema = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(train.g_ema)) if train.g_ema else None
        # Fused Adam on CUDA (one kernel per optimizer step); the CPU keeps the default implementation.
        kw = {"betas": (o.beta1, o.beta2), "eps": o.eps, "fused": True if device.type == "cuda" else None}
        return cls(G, D, torch.optim.Adam(G.parameters(), lr=o.lr, **kw),
                   torch.optim.Adam(D.parameters(), lr=o.lr * o.d_lr_scale, **kw), G_ema=ema)

    def state_dict(self) -> dict:
        sd = {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
              "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
              "epoch": self.epoch, "iteration": self.iteration}
        if self.G_ema is not None:
            sd["generator_ema"] = self.G_ema.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        self.G.load_state_dict(sd["generator"])
        self.D.load_state_dict(sd["discriminator"])
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(sd["generator_ema"])
        self.epoch, self.iteration = int(sd["epoch"]), int(sd["iteration"])


@dataclass
class StepOutput:
    """Device tensors of one iteration (read them only when logging: reading syncs the GPU)."""

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    d_real: torch.Tensor  # mean D(x): probability for dcgan, critic score for wgan_gp
    d_fake: torch.Tensor


class GanStep:
    """One iteration: ``d_steps`` discriminator updates, then one generator update, each with a fresh z.

    ``g_net``/``d_net`` may be DDP- or torch.compile-wrapped; the discriminator's forward for the
    generator update uses the raw module with its parameters frozen, so no D gradients are computed there.
    """

    def __init__(self, state: GanState, train: TrainConfig, latent_dim: int,
                 g_net: nn.Module | None = None, d_net: nn.Module | None = None,
                 d_frozen: nn.Module | None = None, autocast: bool = False,
                 grad_sync: Callable[[nn.Module], None] | None = None,
                 g_extra: GLossTerm | None = None) -> None:
        self.s, self.cfg, self.latent = state, train, latent_dim
        self.g_extra = g_extra
        self.grad_sync = grad_sync or (lambda module: None)
        # `is None`, not `or`: a torch.compile-wrapped module has no truth value.
        self.g_net = state.G if g_net is None else g_net
        self.d_net = state.D if d_net is None else d_net
        self.d_frozen = state.D if d_frozen is None else d_frozen
        self.wgan = train.loss == "wgan_gp"
        self.gp_weight = train.optim.gp_weight
        self.r1_weight, self.r1_every = train.optim.r1_weight, train.optim.r1_every
        device_type = next(state.G.parameters()).device.type
        self.autocast = (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if autocast else nullcontext

    def z(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """Latent vectors uniform on [-1, 1]."""
        return torch.rand(n, self.latent, generator=gen, device=device) * 2 - 1

    def d_update(self, real: torch.Tensor, gen: torch.Generator, index: int = 0,
                 y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One D update. A conditional model's fakes take the real batch's classes ``y`` (the data's class
        balance, and a gradient penalty between a real and a fake of the same class)."""
        n, dev = real.shape[0], real.device
        with torch.no_grad(), self.autocast():
            fake = self.s.G(*self._cond(self.z(n, gen, dev), y)).to(real.dtype)
        # Lazy R1 on D updates number 0, k, 2k, ... (counted from the saved iteration: resume is exact).
        r1 = bool(self.r1_weight) and index % self.r1_every == 0
        if r1:
            real = real.detach().requires_grad_(True)
        with self.autocast():
            both = None if y is None else torch.cat([y, y])
            seen = cutout(torch.cat([real, fake]), self.cfg.cutout, gen)  # ``train.cutout``: real and fake alike
            scores = self.d_net(*self._cond(seen, both)).float()  # one forward: real and fake
            real_s, fake_s = scores[:n], scores[n:]
            if self.wgan:
                alpha = torch.rand(n, generator=gen, device=dev)
                loss = losses.wgan_d_loss(real_s, fake_s)
                critic = self.d_net if y is None else (lambda x: self.d_net(x, y))
                loss = loss + self.gp_weight * losses.gradient_penalty(critic, real, fake, alpha).float()
            else:
                loss = losses.dcgan_d_loss(real_s, fake_s)
            if r1:
                loss = loss + self.r1_weight * self.r1_every / 2 * losses.r1_penalty(real_s, real).float()
        self.s.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_sync(self.s.D)
        self.s.opt_d.step()
        return loss.detach(), real_s.detach(), fake_s.detach()

    @staticmethod
    def _cond(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Network arguments: ``(x,)`` unconditionally, ``(x, y)`` for a conditional model."""
        return (x,) if y is None else (x, y)

    def g_update(self, n: int, gen: torch.Generator, device: torch.device,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        self.d_frozen.requires_grad_(False)
        try:
            with self.autocast():
                fake = self.g_net(*self._cond(self.z(n, gen, device), y))
                scores = self.d_frozen(*self._cond(cutout(fake, self.cfg.cutout, gen), y)).float()
                loss = losses.wgan_g_loss(scores) if self.wgan else losses.dcgan_g_loss(scores)
                if self.g_extra is not None:
                    loss = loss + self.g_extra(fake, y)
            self.s.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.grad_sync(self.s.G)
            self.s.opt_g.step()
            if self.s.G_ema is not None:
                self.s.G_ema.update_parameters(self.s.G)
        finally:
            self.d_frozen.requires_grad_(True)
        return loss.detach()

    def __call__(self, real_batches: list[torch.Tensor], gen: torch.Generator,
                 labels: list[torch.Tensor] | None = None) -> StepOutput:
        """``labels``: the class of every real clip, one tensor per batch (conditional models only)."""
        ys = labels or [None] * len(real_batches)
        for k, (real, y) in enumerate(zip(real_batches, ys, strict=True)):
            d_loss, real_s, fake_s = self.d_update(real, gen, self.s.iteration * len(real_batches) + k, y)
        g_loss = self.g_update(real_batches[0].shape[0], gen, real_batches[0].device, ys[0])
        self.s.iteration += 1
        if not self.wgan:
            real_s, fake_s = torch.sigmoid(real_s), torch.sigmoid(fake_s)
        return StepOutput(d_loss, g_loss, real_s.mean(), fake_s.mean())


def fast_step(state: GanState, train: TrainConfig, latent_dim: int,
              wrap: Callable[[nn.Module], nn.Module] | None = None,
              grad_sync: Callable[[nn.Module], None] | None = None,
              g_extra: GLossTerm | None = None) -> GanStep:
    """The project's fastest step for the state's device: channels-last networks (also on the CPU, where
    oneDNN's convolutions ran the demo's step 1.07-1.13x faster); on CUDA also TF32, cuDNN autotuning, bf16
    autocast (``train.bf16``) and torch.compile (``train.compile``). ``wrap`` (DDP) wraps G and D first;
    ``grad_sync`` averages gradients across ranks instead (for WGAN-GP, whose second critic forward DDP
    does not allow). Inputs should be channels-last too."""
    cuda = next(state.G.parameters()).device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    state.G.to(memory_format=torch.channels_last)
    state.D.to(memory_format=torch.channels_last)
    g_net, d_net, d_frozen = state.G, state.D, state.D
    if wrap is not None:
        g_net, d_net = wrap(state.G), wrap(state.D)
    if train.compile and cuda:
        g_net, d_net, d_frozen = torch.compile(g_net), torch.compile(d_net), torch.compile(state.D)
    return GanStep(state, train, latent_dim, g_net, d_net, d_frozen, autocast=cuda and train.bf16,
                   grad_sync=grad_sync, g_extra=g_extra)


def grad_norm(module: nn.Module) -> float:
    """L2 norm of the current gradients (0 when there are none)."""
    grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0
