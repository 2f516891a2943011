"""Hit timing by class: real held-out clips (their labels) against generated clips (the evaluation's classifier).

Run in a demo's work folder: `cd specgan-demo && python ../bench/timing_by_class.py`. GEN, RAW and PARAMS
point it at another generator file, raw-data folder or params.yaml (a harness folder: GEN=W/train/generator.pt
RAW=W/raw). For each class it prints the clip counts, the 10th, 50th and 90th percentiles of the 20 dB decay
time and the share of clips whose attack (to within 3 dB of the loudest frame) ends after 16 ms: the
per-class view of `decay_time_w1` and `attack_time_w1` (BENCHMARKS.md, "Every decay alike").
"""

from __future__ import annotations

import os

import numpy as np
import torch

from specgan.audio.synthesis import DrumGenerator, sample_seeds
from specgan.core.config import load_params
from specgan.evaluation.evaluate import Descriptors, fit_judge, fit_length, load_real

LATE_S = 0.016  # two analysis hops


def main() -> None:
    torch.set_num_threads(1)
    p = load_params(os.environ.get("PARAMS", "params.yaml"))
    raw = os.environ.get("RAW", "data/raw")
    gen = DrumGenerator.load(os.environ.get("GEN", "outputs/train/generator.pt"))
    z = gen.latents(sample_seeds(p.evaluate.seed, p.evaluate.n_generated))
    audio = fit_length(gen.audio(z, p.render, None).cpu().numpy(), gen.features.clip_samples)
    train = load_real(raw, p.data.split, gen.features, labels_mode=p.data.labels)
    held = load_real(raw, p.evaluate.real_split, gen.features, labels_mode=p.data.labels)
    desc = Descriptors(p.evaluate, gen.features.sample_rate)
    clf = fit_judge(desc, train, len(audio), p.evaluate.seed, lambda a: gen.round_trip(a, p.render).cpu().numpy())
    predicted = np.asarray(clf.predict(desc.vectors(audio)))
    times = {name: [t.numpy() for t in desc.envelope_times(torch.as_tensor(a))[1:]]
             for name, a in (("real", held.audio), ("generated", audio))}
    labels = {"real": np.asarray(held.labels), "generated": predicted}
    print("class       clips real/gen  decay p10/p50/p90 real -> generated (s)      attack > 16 ms real -> gen")
    for c in sorted(set(train.labels)):
        row = {}
        for name in ("real", "generated"):
            pick = labels[name] == c
            decay, attack = (t[pick] for t in times[name])
            q = np.quantile(decay, [0.1, 0.5, 0.9]) if pick.any() else [np.nan] * 3
            row[name] = (int(pick.sum()), "/".join(f"{v:.2f}" for v in q),
                         float((attack > LATE_S).mean()) if pick.any() else np.nan)
        print(f"{c:11s} {row['real'][0]:4d}/{row['generated'][0]:<4d}     {row['real'][1]} -> {row['generated'][1]}"
              f"          {row['real'][2]:.0%} -> {row['generated'][2]:.0%}")


if __name__ == "__main__":
    main()
