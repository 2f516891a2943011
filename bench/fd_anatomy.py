"""Where a generator's Frechet distance sits, and whether choosing among its samples could lower it.

Run in a demo's work folder: `cd specgan-demo && python ../bench/fd_anatomy.py` (GEN, RAW, PARAMS and CKPT
point it elsewhere, as in `bench/timing_by_class.py`). It prints, for the generated clips and for real
training clips taken through the render's round trip (the best a generator can do through Griffin-Lim):
- the distance split into its mean term and its covariance term, and per descriptor block;
- the distance after resampling the generated clips to equal class shares (the evaluation's classifier);
- per class, the distance between the generated and held-out clips of that class on every 4th log-mel band
  mean (10 dims), beside the training clips' own, and the whole distance were that class's clips made
  perfectly (swapped for round-trip training clips of the class): where fixing one class would pay most;
- for 3x the evaluation's clip count, the distance of random draws against the draws D rates most real
  (the checkpoint's discriminator: rejection sampling's ceiling, Azadi et al. 2019) and those the
  evaluation's classifier is surest of.
BENCHMARKS.md, "Where the Frechet distance sits".
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from specgan.audio.synthesis import DrumGenerator, sample_seeds
from specgan.core.config import load_params
from specgan.evaluation.evaluate import (
    Descriptors,
    asked_classes,
    fit_judge,
    fit_length,
    frechet_distance,
    load_real,
    reference_rows,
)
from specgan.model.networks import Discriminator
from specgan.training.checkpoints import list_checkpoints, load_checkpoint

BLOCKS = {"band means": slice(0, 40), "band stds": slice(40, 80), "shape and timing": slice(80, None)}


def split(v: np.ndarray, ref: np.ndarray) -> str:
    mean_term = float(((v.mean(0) - ref.mean(0)) ** 2).sum())
    total = frechet_distance(v, ref)
    blocks = ", ".join(f"{k} alone {frechet_distance(v[:, s], ref[:, s]):.1f}" for k, s in BLOCKS.items())
    return f"{total:.1f} = mean term {mean_term:.1f} + covariance term {total - mean_term:.1f}; {blocks}"


def main() -> None:
    p = load_params(os.environ.get("PARAMS", "params.yaml"))
    raw = os.environ.get("RAW", "data/raw")
    gen_path = Path(os.environ.get("GEN", "outputs/train/generator.pt"))
    gen = DrumGenerator.load(gen_path)
    feat, n = gen.features, p.evaluate.n_generated
    held = load_real(raw, p.evaluate.real_split, feat, labels_mode=p.data.labels)
    train = load_real(raw, p.data.split, feat, labels_mode=p.data.labels)
    z = gen.latents(sample_seeds(p.evaluate.seed, 3 * n))
    y = asked_classes(gen, train.labels, p.evaluate, 3 * n)  # as the evaluation asks (evaluate.class_mix)
    audio = fit_length(gen.audio(z, p.render, y).cpu().numpy(), feat.clip_samples)
    # the evaluation's baseline clips (not the first n: the training clips are sorted by class)
    pick = reference_rows(len(train.audio), n, p.evaluate.seed)
    trip = fit_length(gen.round_trip(train.audio[pick], p.render).cpu().numpy(), feat.clip_samples)
    desc = Descriptors(p.evaluate, feat.sample_rate)
    gv, hv, tv, rv = (desc.vectors(a) for a in (audio, held.audio, train.audio, trip))
    print("generated:   ", split(gv[:n], hv))
    print("round trip:  ", split(rv, hv))
    clf = fit_judge(desc, train, n, p.evaluate.seed, lambda a: gen.round_trip(a, p.render).cpu().numpy())
    pred, held_lab, train_lab = clf.predict(gv[:n]), np.asarray(held.labels), np.asarray(train.labels)
    classes, counts = np.unique(pred, return_counts=True)
    weight = 1.0 / counts[np.searchsorted(classes, pred)]
    rng = np.random.default_rng(0)
    balanced = [frechet_distance(gv[:n][rng.choice(n, n, p=weight / weight.sum())], hv) for _ in range(10)]
    print(f"equal class shares (10 resamples): {np.mean(balanced):.1f} +- {np.std(balanced):.1f}")
    bands = slice(0, 40, 4)
    trip_lab = train_lab[pick]
    for c in classes:
        mine, theirs = gv[:n][pred == c][:, bands], hv[held_lab == c][:, bands]
        if len(mine) > 10:
            # the whole distance with this class's generated clips swapped for as many round-trip training clips
            own = np.flatnonzero(trip_lab == c)
            swapped = np.concatenate([gv[:n][pred != c], rv[rng.choice(own, int((pred == c).sum()))]])
            print(f"  {c:<11} {len(mine):>3} clips: {frechet_distance(mine, theirs):7.2f}"
                  f"  (training clips {frechet_distance(tv[train_lab == c][:, bands], theirs):.2f}, through the"
                  f" round trip {frechet_distance(rv[trip_lab == c][:, bands], theirs):.2f}); the whole distance"
                  f" with these made perfectly: {frechet_distance(swapped, hv):.1f}")
    if gen.conditional:
        return  # D needs each draw's class; the selection check is for unconditional models
    ckpt = Path(os.environ.get("CKPT") or list_checkpoints(gen_path.parent / "checkpoints")[-1])
    D = Discriminator(gen.model, len(gen.classes))
    D.load_state_dict(load_checkpoint(ckpt)["state"]["discriminator"])
    D.eval()
    with torch.inference_mode():
        x = gen.spectrograms(z)
        logit = torch.cat([D(part) for part in x.split(64)]).numpy()  # batches of 64: the std groups fill
    draws = [frechet_distance(gv[rng.permutation(3 * n)[:n]], hv) for _ in range(5)]
    print(f"{n} of {3 * n} at random (5 draws): {np.mean(draws):.1f} +- {np.std(draws):.1f}; the {n} D rates most "
          f"real: {frechet_distance(gv[np.argsort(-logit)[:n]], hv):.1f}; the {n} it rates least: "
          f"{frechet_distance(gv[np.argsort(logit)[:n]], hv):.1f}; the {n} the classifier is surest of: "
          f"{frechet_distance(gv[np.argsort(-clf.predict_proba(gv).max(1))[:n]], hv):.1f}")


if __name__ == "__main__":
    main()
