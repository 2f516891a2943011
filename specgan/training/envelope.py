"""The time envelope of normalized spectrograms, and a generator loss term that matches its batch mean.

A real drum hit is loudest in its first frame and holds within 3 dB for about five frames; the demo's
generators start 6 dB low and spike for one frame (BENCHMARKS.md, "The gap is the onset"). In the
normalized domain that spike is about 0.02 units a bin, which the discriminator barely sees; in linear
energy it is 3 dB. ``train.envelope_weight`` adds feature matching (Salimans et al. 2016, "Improved
Techniques for Training GANs") on this one feature: the squared gap between the batch mean of the generated
clips' envelopes and the training set's mean envelope, in tens of dB, summed over frames. The term matches
a batch mean, so it fixes the average onset, not the spread of decays: ``train.envelope_quantile_weight``
asks for each frame's whole distribution."""

from __future__ import annotations

import math

import torch

from specgan.core.config import NormalizeConfig
from specgan.data.stats import NormStats

DB_PER_NEPER_POWER = 10 / math.log(10)  # 10 log10(e^p) = p x this


class TimeEnvelope:
    """[B, 1, T, F] normalized spectrograms -> [B, T]: each frame's energy (summed over bins, linear power)
    in dB relative to the clip's loudest frame, floored at ``floor_db``."""

    def __init__(self, stats: NormStats, normalize: NormalizeConfig, floor_db: float,
                 device: torch.device | str = "cpu") -> None:
        # The first 128 bins (the network's frequency axis; the Nyquist bin is not modelled).
        n = stats.mean.shape[0] - 1
        self.mean = torch.as_tensor(stats.mean[:n], dtype=torch.float32, device=device)
        self.std = torch.as_tensor(stats.std[:n], dtype=torch.float32, device=device) * normalize.scale
        self.floor_db = floor_db

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        log_mag = x[:, 0].float() * self.std + self.mean  # undo the normalization (clipping stays)
        frame_db = torch.logsumexp(2 * log_mag, dim=2) * DB_PER_NEPER_POWER
        return (frame_db - frame_db.amax(dim=1, keepdim=True)).clamp_min(self.floor_db)

    @torch.no_grad()
    def all_of(self, data: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Every clip's envelope [N, T] of a whole normalized training tensor."""
        return torch.cat([self(data[i:i + chunk]) for i in range(0, data.shape[0], chunk)])


class EnvelopeMatching:
    """``weight x sum_t ((mean_b env(fake)[b, t] - target[t]) / 10 dB)^2``, plus with ``quantile_weight`` the
    batch's envelopes sorted frame by frame against the data's quantiles (``bank``: every training clip's
    envelope), a one-dimensional Wasserstein-2 distance per frame: 0 for a generator whose envelopes are the
    data's. The mean alone lets every clip meet it with one average decay (BENCHMARKS.md, "Every decay alike")."""

    def __init__(self, envelope: TimeEnvelope, target: torch.Tensor, weight: float,
                 bank: torch.Tensor | None = None, quantile_weight: float = 0.0) -> None:
        if quantile_weight and bank is None:
            raise ValueError("an envelope quantile weight needs the data's envelopes")
        self.envelope, self.target, self.weight = envelope, target, weight
        self.bank, self.quantile_weight = bank, quantile_weight
        self._quantiles: dict[int, torch.Tensor] = {}

    def quantiles(self, n: int) -> torch.Tensor:
        """[n, T]: the data's envelope quantiles at (i + 0.5) / n, frame by frame (cached per batch size)."""
        if n not in self._quantiles:  # torch.quantile's linear rule, on a sort (quantile refuses 2^24+ values)
            ranked = self.bank.sort(dim=0).values
            pos = (torch.arange(n, dtype=torch.float64, device=ranked.device) + 0.5) / n * (ranked.shape[0] - 1)
            lo = pos.floor().long()
            hi = (lo + 1).clamp_max(ranked.shape[0] - 1)
            frac = (pos - lo).to(ranked.dtype)[:, None]
            self._quantiles[n] = ranked[lo] + (ranked[hi] - ranked[lo]) * frac
        return self._quantiles[n]

    def __call__(self, fake: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The term for a generated batch; ``y``, a conditional model's classes, with a [classes, T] ``target``:
        the batch mean against the mean of those classes' targets (each clip beside its own class's envelope)."""
        env = self.envelope(fake)
        target = self.target if y is None or self.target.dim() == 1 else self.target[y].mean(0)
        loss = self.weight * ((env.mean(0) - target) / 10).square().sum()
        if self.quantile_weight:
            gap = (env.sort(dim=0).values - self.quantiles(env.shape[0])) / 10
            loss = loss + self.quantile_weight * gap.square().mean(0).sum()
        return loss
