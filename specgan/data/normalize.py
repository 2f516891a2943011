"""Features to the training tensor (SPEC.md section 4) and back (SPEC.md section 8, steps 1-3)."""

from __future__ import annotations

import numpy as np
import torch

from specgan.core.config import NormalizeConfig
from specgan.data.stats import NormStats


def normalize(feats: np.ndarray | torch.Tensor, stats: NormStats, cfg: NormalizeConfig,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """[N, 129, 128] log-magnitude (freq x time) -> [N, 1, 128, 128] (time x freq) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(feats), dtype=torch.float32, device=device)
    mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=device).view(1, -1, 1)
    std = torch.as_tensor(stats.std, dtype=torch.float32, device=device).view(1, -1, 1)
    x = ((x - mean) / std / cfg.scale).clamp_(-cfg.clip, cfg.clip)
    return x[:, :-1, :].transpose(1, 2).unsqueeze(1).contiguous()


def denormalize(x: torch.Tensor, stats: NormStats, cfg: NormalizeConfig, log_eps: float) -> torch.Tensor:
    """[N, 1, 128, 128] generator output -> [N, 129, 128] linear magnitude (Nyquist row of zeros added
    in the normalized domain, as SPEC.md 8 does, before undoing the scaling). ``log_eps``, the features'
    ``log(|S| + eps)`` offset, is taken off again (SPEC.md 8 stops at ``exp``, which its 1e-6 makes the
    same): with a larger ``features.log_eps`` the floor it sets decodes to silence, not to a noise floor."""
    spec = x[:, 0].transpose(1, 2)  # frequency x time
    spec = torch.cat([spec, torch.zeros_like(spec[:, :1])], dim=1)
    mean = torch.as_tensor(stats.mean, dtype=spec.dtype, device=spec.device).view(1, -1, 1)
    std = torch.as_tensor(stats.std, dtype=spec.dtype, device=spec.device).view(1, -1, 1)
    return (torch.exp(spec * cfg.scale * std + mean) - log_eps).clamp_min(0.0)


def to_db(x: torch.Tensor, stats: NormStats, cfg: NormalizeConfig, log_eps: float) -> np.ndarray:
    """[N, 1, 128, 128] generator output -> [N, 129, 128] magnitude in dB (frequency x time), for plots."""
    return (20 * torch.log10(denormalize(x.float(), stats, cfg, log_eps).clamp_min(1e-6))).cpu().numpy()
