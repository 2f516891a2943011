"""What the Frechet baseline costs through Griffin-Lim: exact magnitudes against the model's domain.

The evaluation's `frechet_distance_inverted` sends the baseline's real clips through the model's
normalization (clipping included) and the render's Griffin-Lim. This splits that trip: the same clips'
exact STFT magnitudes through Griffin-Lim alone, and the whole trip, at several iteration counts, each
scored against the held-out clips as the evaluation scores them.

Run in a demo's work folder: `cd specgan-demo && python ../bench/inversion_floor.py [20 200]`. GEN, RAW
and PARAMS point it at another generator file, raw-data folder or params.yaml (BENCHMARKS.md, "What
Griffin-Lim costs the Frechet distance").
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import torch

from specgan.audio.synthesis import DrumGenerator, invert
from specgan.core.config import load_params
from specgan.evaluation.evaluate import Descriptors, fit_length, frechet_distance, load_real, reference_rows


def main() -> None:
    iters = [int(a) for a in sys.argv[1:]] or [20, 200]
    p = load_params(os.environ.get("PARAMS", "params.yaml"))
    raw = os.environ.get("RAW", "data/raw")
    gen = DrumGenerator.load(os.environ.get("GEN", "outputs/train/generator.pt"))
    f, e = p.features, p.evaluate
    held = load_real(raw, e.real_split, f, e.min_heldout, p.data.labels)
    train = load_real(raw, p.data.split, f, labels_mode=p.data.labels)
    desc = Descriptors(e, f.sample_rate)
    held_vec = desc.vectors(held.audio)
    clips = train.audio[reference_rows(train.audio.shape[0], e.n_generated, e.seed)]  # the evaluation's pick
    score = lambda audio: frechet_distance(desc.vectors(fit_length(audio, f.clip_samples)), held_vec)  # noqa: E731
    print(f"{clips.shape[0]} training clips against {held.audio.shape[0]} held out: real {score(clips):.1f}")
    window = torch.hann_window(f.win_length)
    mag = torch.stft(torch.as_tensor(clips), f.n_fft, f.hop_length, f.win_length, window, center=True,
                     pad_mode="constant", return_complex=True).abs()
    for n in iters:
        render = replace(p.render, griffin_lim_iters=n)
        exact = score(invert(mag, f, render).numpy())
        trip = score(gen.round_trip(clips, render).numpy())
        print(f"Griffin-Lim {n:4d} iterations: exact magnitudes {exact:6.1f}, the model's domain {trip:6.1f}")


if __name__ == "__main__":
    main()
