"""SpecGAN generator and discriminator (SPEC.md sections 5 and 6; paper Tables 4 and 5)."""

from __future__ import annotations

import torch
from torch import nn

from specgan.core.config import ModelConfig

N_LAYERS = 5  # 4x4 -> 128x128 in five stride-2 steps
BASE = 4


def _same(kernel_size: int) -> int:
    """Symmetric padding that gives TensorFlow 'same' output sizes at stride 2 (SPEC.md 6 note)."""
    return kernel_size // 2


class Generator(nn.Module):
    """z [B, latent] in [-1, 1] -> [B, 1, 128, 128] (time x frequency) in [-1, 1].

    With ``n_classes`` (``model.conditional``) the class enters as a one-hot vector beside z, as in the
    conditional GAN of Mirza and Osindero (2014)."""

    def __init__(self, cfg: ModelConfig, n_classes: int = 0) -> None:
        super().__init__()
        d, k = cfg.model_dim, cfg.kernel_size
        self.top = 16 * d
        self.n_classes = n_classes
        self.fc = nn.Linear(cfg.latent_dim + n_classes, BASE * BASE * self.top)
        chans = [16 * d, 8 * d, 4 * d, 2 * d, d, 1]
        self.ups = nn.ModuleList(_upsampler(chans[i], chans[i + 1], k, cfg.upsample) for i in range(N_LAYERS))
        init_glorot(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_classes:
            z = torch.cat([z, nn.functional.one_hot(y, self.n_classes).to(z.dtype)], dim=1)
        x = torch.relu(self.fc(z)).view(z.shape[0], self.top, BASE, BASE)
        for i, up in enumerate(self.ups):
            x = up(x)
            x = torch.tanh(x) if i == N_LAYERS - 1 else torch.relu(x)
        return x


def _upsampler(c_in: int, c_out: int, k: int, mode: str) -> nn.Module:
    """One 2x upsampling layer of G: ``zeros``, a stride-2 transposed convolution (SPEC.md 5: zeros between
    the inputs, then a convolution); ``nn``, a nearest-neighbour resize, then a stride-1 convolution (the
    paper's code, ``specgan.py`` ``upsample='nn'``; the resize-convolution of Odena et al. 2016,
    "Deconvolution and Checkerboard Artifacts", four times the convolution's work)."""
    if mode == "zeros":
        return nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=_same(k), output_padding=1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, k, padding=_same(k)))


class Discriminator(nn.Module):
    """[B, 1, 128, 128] -> [B] logits (no batch norm).

    With ``n_classes`` it is a projection discriminator (Miyato and Koyama 2018, "cGANs with Projection
    Discriminator"): the logit gains the inner product of a class embedding with the sum-pooled features."""

    def __init__(self, cfg: ModelConfig, n_classes: int = 0) -> None:
        super().__init__()
        d, k = cfg.model_dim, cfg.kernel_size
        chans = [1, d, 2 * d, 4 * d, 8 * d, 16 * d]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=_same(k)) for i in range(N_LAYERS))
        self.slope = cfg.leaky_slope
        self.group = cfg.minibatch_std
        self.fc = nn.Linear(BASE * BASE * (16 * d + (1 if self.group else 0)), 1)
        self.n_classes = n_classes
        self.embed = nn.Embedding(n_classes, 16 * d) if n_classes else None
        init_glorot(self)
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        if cfg.spectral_norm:  # after the init: the parametrization wraps the initialized weights
            from torch.nn.utils.parametrizations import spectral_norm

            for i, conv in enumerate(self.convs):
                self.convs[i] = spectral_norm(conv)
            self.fc = spectral_norm(self.fc)
            if self.embed is not None:
                self.embed = spectral_norm(self.embed)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), self.slope)
        h = x
        if self.group:
            x = torch.cat([x, minibatch_std(x, self.group)], dim=1)
        out = self.fc(x.flatten(1)).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1)
        return out


def minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """ProGAN's minibatch-stddev feature (Karras et al. 2018): per group of ``group`` consecutive samples,
    the mean over features of the std over the group, as one extra [B, 1, H, W] channel. Groups never mix
    the real and fake halves of a batch when each half is a multiple of the group size."""
    b, c, h, w = x.shape
    g = min(group, b)
    if b % g:
        raise ValueError(f"minibatch_std: batch {b} is not a multiple of the group size {g}")
    y = x.float().view(b // g, g, c, h, w)
    # The variance written out: torch.var over dim 1 and its backward took 2 ms here against 0.18 ms
    # (a sixth of a demo iteration); the values agree to 1e-7.
    dev = y - y.mean(dim=1, keepdim=True)
    std = (dev.square().mean(dim=1) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [b // g]
    return std.repeat_interleave(g).view(b, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)


def init_glorot(module: nn.Module) -> None:
    """Glorot (Xavier) uniform weights and zero biases for every linear and conv layer."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def n_params(module: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
