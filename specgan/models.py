"""SpecGAN generator and discriminator (SPEC.md sections 5 and 6; paper Tables 4 and 5)."""

from __future__ import annotations

import torch
from torch import nn

from specgan.config import ModelConfig

N_LAYERS = 5  # 4x4 -> 128x128 in five stride-2 steps
BASE = 4


def _same(kernel_size: int) -> int:
    """Symmetric padding that gives TensorFlow 'same' output sizes at stride 2 (SPEC.md 6 note)."""
    return kernel_size // 2


class Generator(nn.Module):
    """z [B, latent] in [-1, 1] -> [B, 1, 128, 128] (time x frequency) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, k = cfg.model_dim, cfg.kernel_size
        self.top = 16 * d
        self.fc = nn.Linear(cfg.latent_dim, BASE * BASE * self.top)
        chans = [16 * d, 8 * d, 4 * d, 2 * d, d, 1]
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(chans[i], chans[i + 1], k, stride=2, padding=_same(k), output_padding=1)
            for i in range(N_LAYERS))
        init_glorot(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc(z)).view(z.shape[0], self.top, BASE, BASE)
        for i, up in enumerate(self.ups):
            x = up(x)
            x = torch.tanh(x) if i == N_LAYERS - 1 else torch.relu(x)
        return x


class Discriminator(nn.Module):
    """[B, 1, 128, 128] -> [B] logits (no batch norm)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, k = cfg.model_dim, cfg.kernel_size
        chans = [1, d, 2 * d, 4 * d, 8 * d, 16 * d]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=_same(k)) for i in range(N_LAYERS))
        self.slope = cfg.leaky_slope
        self.fc = nn.Linear(BASE * BASE * 16 * d, 1)
        init_glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), self.slope)
        return self.fc(x.flatten(1)).squeeze(1)


def init_glorot(module: nn.Module) -> None:
    """Glorot (Xavier) uniform weights and zero biases for every linear and conv layer."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def n_params(module: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
