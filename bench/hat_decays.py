"""Hat decays: real closed and open hats against the generated clips the evaluation hears as hats.

Run in a demo's work folder: `cd specgan-demo && python ../bench/hat_decays.py`. GEN, RAW and PARAMS
point it at another generator file, raw-data folder or params.yaml. Prints each group's median 20 dB
decay time, its median level (dB under the clip's loudest frame) at four frames, and a histogram of the
hats' decay times (BENCHMARKS.md, "Why closed hats are the rarest class").
"""

from __future__ import annotations

import os

import numpy as np
import torch

from specgan.audio.synthesis import DrumGenerator, sample_seeds
from specgan.core.config import load_params
from specgan.evaluation.evaluate import Descriptors, fit_judge, fit_length, load_real

HATS = ("closed_hat", "open_hat")
BINS = [0, 0.15, 0.3, 0.45, 0.6, 2]  # seconds of 20 dB decay
FRAMES = (5, 20, 60)  # the evaluation's RMS frames (evaluate.mel_n_fft samples, hop evaluate.mel_hop)


def frame_db(audio: np.ndarray, desc: Descriptors) -> torch.Tensor:
    """Each frame's power in dB under the clip's loudest frame, on the frames of ``Descriptors.vectors``."""
    power = torch.as_tensor(audio).unfold(-1, desc.n_fft, desc.hop).square().mean(-1)
    return 10 * torch.log10(power / power.amax(-1, keepdim=True) + 1e-12)


def main() -> None:
    torch.set_num_threads(1)
    p = load_params(os.environ.get("PARAMS", "params.yaml"))
    raw = os.environ.get("RAW", "data/raw")
    gen = DrumGenerator.load(os.environ.get("GEN", "outputs/train/generator.pt"))
    n = gen.features.clip_samples
    z = gen.latents(sample_seeds(p.evaluate.seed, p.evaluate.n_generated))
    audio = fit_length(gen.audio(z, p.render, None).cpu().numpy(), n)
    train = load_real(raw, p.data.split, gen.features, labels_mode=p.data.labels)
    held = load_real(raw, p.evaluate.real_split, gen.features, labels_mode=p.data.labels)
    inverted = fit_length(gen.round_trip(held.audio, p.render).cpu().numpy(), n)
    desc = Descriptors(p.evaluate, gen.features.sample_rate)
    clf = fit_judge(desc, train, len(audio), p.evaluate.seed, lambda a: gen.round_trip(a, p.render).cpu().numpy())
    gen_vec, held_vec, inv_vec = desc.vectors(audio), desc.vectors(held.audio), desc.vectors(inverted)
    heard, labels = clf.predict(gen_vec), np.array(held.labels)
    # the last column of Descriptors.vectors is the 20 dB decay time
    groups = [(f"real {h}", held_vec[labels == h], held.audio[labels == h]) for h in HATS]
    groups += [(f"Griffin-Lim {h}", inv_vec[labels == h], inverted[labels == h]) for h in HATS]
    groups += [(f"generated, heard {h}", gen_vec[heard == h], audio[heard == h]) for h in HATS]
    for name, vec, clips in groups:
        db = frame_db(clips, desc)
        levels = " ".join(f"{float(db[:, k].median()):6.1f}" for k in (*FRAMES, db.shape[1] - 10))
        print(f"{name:28s} n={len(vec):3d} decay {np.median(vec[:, -1]):.3f} s; dB at frames "
              f"{'/'.join(map(str, FRAMES))}/{db.shape[1] - 10}: {levels}")
    print("decay histogram, bins (s):", BINS)
    print("  real hats     ", np.histogram(held_vec[np.isin(labels, HATS)][:, -1], BINS)[0])
    print("  generated hats", np.histogram(gen_vec[np.isin(heard, HATS)][:, -1], BINS)[0])


if __name__ == "__main__":
    main()
