"""The onset of a trained generator's spectrograms against the training clips' (BENCHMARKS.md, "Matching the
envelope"): each frame's energy in dB under the clip's loudest frame, medians over 256 clips.

python bench/onset_profile.py WORKDIR   (a `bench/quality_run.py --workdir` folder: train/, features/)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from specgan.audio.synthesis import DrumGenerator, sample_seeds
from specgan.data.normalize import normalize
from specgan.data.shards import load_features
from specgan.training.envelope import TimeEnvelope

FRAMES = (0, 1, 2, 4, 8, 16, 32)


def profile(name: str, env: torch.Tensor) -> str:
    """Loudest frame, its share of the clip's energy, frames within 10 dB of it, and the median envelope."""
    lin = torch.pow(10.0, env / 10)
    med = env.median(0).values
    return (f"{name}: loudest frame {int(env.argmax(1).median())}, its share {float((1 / lin.sum(1)).median()):.3f}, "
            f"frames within 10 dB {int((env > -10).sum(1).median())}; "
            + " ".join(f"f{i} {float(med[i]):.1f}" for i in FRAMES))


def main(work: Path) -> None:
    g = DrumGenerator.load(work / "train" / "generator.pt")
    env = TimeEnvelope(g.stats, g.normalize, -200.0)
    real = normalize(load_features(work / "features")[:256], g.stats, g.normalize)
    with torch.no_grad():
        fake = g.spectrograms(g.latents(sample_seeds(1234, 256)))
    print(profile("real", env(real)))
    print(profile("generated", env(fake)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
