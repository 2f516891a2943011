"""Generator output to audio (SPEC.md section 8): denormalize, pad, fast Griffin-Lim, peak-normalize, crop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio

from specgan.core.config import FeaturesConfig, ModelConfig, NormalizeConfig, RenderConfig
from specgan.core.errors import SpecganError, first_line
from specgan.data.normalize import denormalize
from specgan.data.stats import NormStats
from specgan.model.generator_file import GeneratorFileError, read_generator
from specgan.model.networks import Generator


def sample_seeds(base_seed: int, n: int) -> list[int]:
    """The seeds of a render: consecutive from ``render.seed``, so sample i is reproducible alone."""
    return [base_seed + i for i in range(n)]


CPU_CHUNK = 8  # clips per Griffin-Lim batch on the CPU: small tensors stay in the cache and the allocator


@lru_cache(maxsize=8)
def _griffin_lim(n_fft: int, win_length: int, hop_length: int, n_iter: int, momentum: float) -> torch.nn.Module:
    # Zero initial phase (rand_init=False), as MATLAB's stftmag2sig does: the result is deterministic.
    return torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, win_length=win_length,
                                            hop_length=hop_length, window_fn=torch.hann_window, power=1.0,
                                            momentum=momentum, rand_init=False)


def invert(mag: torch.Tensor, feat: FeaturesConfig, render: RenderConfig, n_iter: int | None = None,
           return_padded: bool = False) -> torch.Tensor:
    """[N, 129, T] linear magnitude -> [N, samples] audio in [-1, 1] (batched, on ``mag``'s device).

    Pads ``pad_frames`` silent frames on both sides, runs fast Griffin-Lim, peak-normalizes each clip
    and cuts the padding's ``pad_frames * hop`` samples from each end."""
    pad = render.pad_frames
    padded = torch.nn.functional.pad(mag, (pad, pad))
    gl = _griffin_lim(feat.n_fft, feat.win_length, feat.hop_length, n_iter or render.griffin_lim_iters,
                      render.momentum).to(mag.device)
    # On the CPU, CPU_CHUNK clips at a time: a 256-clip batch's ~90 MB tensors, fresh at every step, made
    # it 5x slower (BENCHMARKS.md, "Griffin-Lim"); each clip's result is the same either way.
    step = CPU_CHUNK if mag.device.type == "cpu" else max(1, padded.shape[0])
    with torch.inference_mode():
        wave = torch.cat([gl(part) for part in padded.split(step)])
    peak = wave.abs().amax(dim=-1, keepdim=True)
    wave = torch.where(peak > 0, wave / peak.clamp_min(1e-12), wave)  # a silent clip stays silent, never NaN
    if return_padded:
        return wave
    cut = pad * feat.hop_length
    return wave[..., cut:wave.shape[-1] - cut] if cut else wave


def spectral_convergence(target_mag: torch.Tensor, wave: torch.Tensor, feat: FeaturesConfig) -> torch.Tensor:
    """|| |STFT(wave)| - target ||_F / || target ||_F per clip (the STFT framing Griffin-Lim uses)."""
    window = torch.hann_window(feat.win_length, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, feat.n_fft, feat.hop_length, feat.win_length, window, center=True,
                      pad_mode="reflect", return_complex=True).abs()
    t = min(spec.shape[-1], target_mag.shape[-1])
    spec, target = spec[..., :t], target_mag[..., :t]
    # Griffin-Lim recovers the magnitude only up to the scale the peak normalization removed.
    scale = (spec * target).sum((-1, -2)) / spec.square().sum((-1, -2)).clamp_min(1e-20)
    return (spec * scale[:, None, None] - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)


@dataclass
class DrumGenerator:
    """A trained generator with what defines it (weights, stats, configs); render settings come per call."""

    G: Generator
    stats: NormStats
    model: ModelConfig
    normalize: NormalizeConfig
    features: FeaturesConfig
    provenance: dict
    classes: tuple[str, ...] = ()  # a conditional model's class names; empty for an unconditional one

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> DrumGenerator:
        """Load ``generator.pt`` through its one reader (weights_only: no code runs from the file)."""
        payload = read_generator(path, device)
        try:
            model = ModelConfig(**payload["model"])
            classes = tuple(str(c) for c in payload["classes"])
            G = Generator(model, len(classes) if model.conditional else 0)
            G.load_state_dict(payload["state_dict"])
            stats = NormStats.from_dict(payload["stats"])
            normalize, features = NormalizeConfig(**payload["normalize"]), FeaturesConfig(**payload["features"])
        except (TypeError, KeyError, RuntimeError, ValueError) as exc:
            raise GeneratorFileError(f"{path} is a damaged generator file ({type(exc).__name__}: "
                                     f"{first_line(exc, 200)})") from None
        G.to(device).eval()
        return cls(G, stats, model, normalize, features, dict(payload["provenance"]), classes)

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def latents(self, seeds: list[int]) -> torch.Tensor:
        """One z per seed, uniform on [-1, 1]: the same seed always gives the same sound."""
        zs = [torch.rand(self.model.latent_dim, generator=torch.Generator().manual_seed(int(s))) * 2 - 1
              for s in seeds]
        return torch.stack(zs).to(self.device)

    @property
    def conditional(self) -> bool:
        return bool(self.classes)

    def class_ids(self, names: list[str] | None, n: int) -> torch.Tensor | None:
        """Class indices for ``n`` sounds: the named classes (one name for all, or one per sound), or for a
        conditional model without names every class in turn; None for an unconditional model."""
        if not self.conditional:
            if names:
                raise SpecganError("this model is unconditional: a class needs a model trained with "
                                   "model.conditional: true")
            return None
        if not names:
            return torch.arange(n, device=self.device) % len(self.classes)
        unknown = sorted(set(names) - set(self.classes))
        if unknown:
            raise SpecganError(f"unknown class {', '.join(unknown)}; this model knows {', '.join(self.classes)}")
        names = names * n if len(names) == 1 else names
        if len(names) != n:
            raise SpecganError(f"{len(names)} class names for {n} sounds")
        return torch.tensor([self.classes.index(c) for c in names], device=self.device)

    def spectrograms(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """[N, latent] (and a conditional model's [N] classes; default every class in turn) ->
        [N, 1, 128, 128] normalized generator output."""
        z = z.to(self.device, torch.float32)
        if self.conditional and y is None:
            y = self.class_ids(None, z.shape[0])
        with torch.inference_mode():
            return (self.G(z) if y is None else self.G(z, y.to(self.device))).float()

    def audio(self, z: torch.Tensor, render: RenderConfig, y: torch.Tensor | None = None) -> torch.Tensor:
        """[N, latent] -> [N, samples] audio at ``features.sample_rate``, inverted with ``render``'s settings."""
        mag = denormalize(self.spectrograms(z, y), self.stats, self.normalize, self.features.log_eps)
        return invert(mag, self.features, render)

    def normalized(self, clips: np.ndarray) -> torch.Tensor:
        """Real [N, clip_samples] clips (peak 1) -> [N, 1, 128, 128]: their features normalized as the
        training tensor was (clipping included), the generator's output domain."""
        from specgan.data.normalize import normalize
        from specgan.data.spectral import log_spectrogram

        return normalize(log_spectrogram(clips, self.features), self.stats, self.normalize, self.device)

    def round_trip(self, clips: np.ndarray, render: RenderConfig) -> torch.Tensor:
        """Real [N, clip_samples] clips as a perfect generator would make them: ``normalized``, then
        denormalized and inverted with ``render``'s settings."""
        mag = denormalize(self.normalized(clips), self.stats, self.normalize, self.features.log_eps)
        return invert(mag, self.features, render)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of one clip."""
    import io

    import soundfile as sf  # here: GPU scripts import this module without soundfile

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


LATENTS = "latents.npz"  # beside rendered or synthesized sounds: each sound's z (and class) to replay it


def save_latents(dest: str | Path, z: torch.Tensor, y: torch.Tensor | None, classes: tuple[str, ...]) -> Path:
    """Write each sound's z [N, latent] and, for a conditional model, its class name, as a .npz file."""
    import numpy as np

    names = np.asarray([classes[i] for i in y.tolist()] if y is not None else [], dtype=str)
    dest = Path(dest)
    with open(dest, "wb") as fh:
        np.savez(fh, z=z.detach().cpu().numpy().astype(np.float32), classes=names)
    return dest


def load_latents(path: str | Path, latent_dim: int) -> tuple[torch.Tensor, list[str] | None]:
    """z [N, latent] and class names (None when none were saved) from a latents file; one-line errors."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            z, names = np.asarray(data["z"], dtype=np.float32), [str(c) for c in data["classes"]]
    except (OSError, ValueError, KeyError) as exc:
        raise SpecganError(f"{path} is not a latents file from specgan ({type(exc).__name__})") from None
    if z.ndim != 2 or z.shape[1] != latent_dim or not np.isfinite(z).all() or len(z) == 0:
        raise SpecganError(f"{path}: expected finite z of shape [N, {latent_dim}], got {list(z.shape)}")
    if names and len(names) != len(z):
        raise SpecganError(f"{path}: {len(names)} class names for {len(z)} latents")
    return torch.from_numpy(z), names or None
