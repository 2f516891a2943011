"""The playback demo (SPEC.md section 9): N drum sounds from a registered model, optional reverb, a loop."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from specgan.audio.plots import waveforms_and_spectrograms
from specgan.audio.synthesis import LATENTS, DrumGenerator, load_latents, save_latents
from specgan.core.atomic import atomic_path
from specgan.core.config import RenderConfig, SynthesizeConfig
from specgan.core.errors import SpecganError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Reverb:
    room_size: float
    damping: float
    wet_level: float


def load_model(ref: str) -> tuple[DrumGenerator, dict | None]:
    """A DrumGenerator from a local generator.pt, an MLflow model URI (models:/..., runs:/...) or a run id,
    with the registered model's render and synthesize settings (None for a bare generator file). A model URI is
    read without unpickling anything: its generator file and its MLmodel settings only."""
    if Path(ref).is_file():
        return DrumGenerator.load(ref), None
    import mlflow

    from specgan.core.tracking import check_tracking
    from specgan.registry.mlflow_model import ARTIFACT_KEY, MODEL_NAME_IN_RUN

    mlflow.set_tracking_uri(check_tracking())
    uri = f"runs:/{ref}/{MODEL_NAME_IN_RUN}" if RUN_ID.match(ref) else ref
    # The safe reader: the model's MLmodel (YAML) and its generator file (tensors only, torch's weights_only
    # loader). Its python_model.pkl is never unpickled: a model logged by someone else could run any code.
    import tempfile

    import yaml

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line of ours instead
    with tempfile.TemporaryDirectory(prefix="specgan-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise SpecganError(f"cannot load model {ref!r}: {str(exc).splitlines()[0]}") from None
        flavor = (yaml.safe_load((local / "MLmodel").read_text()) if (local / "MLmodel").is_file() else {}) or {}
        spec = (flavor.get("flavors") or {}).get("python_function") or {}
        rel = ((spec.get("artifacts") or {}).get(ARTIFACT_KEY) or {}).get("path")
        if not rel or not (local / rel).is_file():
            raise SpecganError(f"{ref!r} is not a specgan generator model (no {ARTIFACT_KEY} artifact): refused, "
                               "since loading another pyfunc model would run its pickled code")
        return DrumGenerator.load(local / rel), dict(spec.get("config") or {}) or None


def apply_reverb(audio: np.ndarray, sample_rate: int, reverb: Reverb) -> np.ndarray:
    """pedalboard's reverb on each clip separately (a [N, samples] batch is not N channels of one sound),
    its state reset between clips so nothing bleeds across, with a one-second tail; peak-normalized."""
    from pedalboard import Pedalboard
    from pedalboard import Reverb as PbReverb

    board = Pedalboard([PbReverb(room_size=reverb.room_size, damping=reverb.damping, wet_level=reverb.wet_level,
                                 dry_level=1.0 - reverb.wet_level / 2)])
    tail = np.zeros(sample_rate, dtype=np.float32)
    wet = [board(np.concatenate([clip, tail]).astype(np.float32)[None], sample_rate, reset=True)[0]
           for clip in audio]
    return _peak_normalize(np.stack(wet))


def sequence(audio: np.ndarray, sample_rate: int, tempo_bpm: float) -> np.ndarray:
    """Lay the clips out one per beat in a single loop (mixed, peak-normalized): whole beats, and the last
    clip's tail kept when it rings past them."""
    step = int(round(60.0 / tempo_bpm * sample_rate))
    n, length = audio.shape
    loop = np.zeros(max(step * n, step * (n - 1) + length), dtype=np.float32)
    for i, clip in enumerate(audio):
        loop[i * step:i * step + length] += clip
    return _peak_normalize(loop[None])[0]


def _peak_normalize(x: np.ndarray) -> np.ndarray:
    peak = np.abs(x).max(axis=-1, keepdims=True)
    return np.where(peak > 0, x / np.maximum(peak, 1e-12), x).astype(np.float32)


def synthesize(gen: DrumGenerator, out_dir: str | Path, cfg: SynthesizeConfig, render: RenderConfig,
               reverb: Reverb | None = None, loop: bool = False, classes: list[str] | None = None,
               z_file: str | Path | None = None) -> list[Path]:
    """Write ``cfg.count`` sounds from seed ``cfg.seed`` (or the sounds of ``z_file``) as ``drum_XXX.wav``
    (and ``loop.wav`` at ``cfg.tempo_bpm``), ``drums.png`` and their ``latents.npz`` to ``out_dir``; returns the
    WAV paths. A conditional model makes the named ``classes`` (default: every class in turn)."""
    if z_file is not None:
        z, saved = load_latents(z_file, gen.model.latent_dim)
        classes = classes or saved
    else:
        z = gen.latents(list(range(cfg.seed, cfg.seed + cfg.count)))
    y = gen.class_ids(classes, z.shape[0])
    audio = gen.audio(z, render, y).cpu().numpy()
    sr = gen.features.sample_rate
    if reverb is not None:
        audio = apply_reverb(audio, sr, reverb)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, clip in enumerate(audio):
        written.append(write_wav(out_dir / f"drum_{i:03d}.wav", clip, sr))
    if loop:
        written.append(write_wav(out_dir / "loop.wav", sequence(audio, sr, cfg.tempo_bpm), sr))
    names = [p.name for p in written[:len(audio)]]  # the sounds, not loop.wav
    if y is not None:
        names = [f"{name} ({gen.classes[i]})" for name, i in zip(names, y.tolist(), strict=True)]
    waveforms_and_spectrograms(audio, sr, out_dir / "drums.png", names)
    save_latents(out_dir / LATENTS, z, y, gen.classes)
    return written


def write_wav(dest: Path, audio: np.ndarray, sample_rate: int) -> Path:
    with atomic_path(dest, suffix=".wav") as tmp:
        sf.write(tmp, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16")
    return dest
