"""The features' resampler against another one: torchaudio's windowed sinc (what ``specgan features`` uses)
and scipy's polyphase ``resample_poly`` (Kaiser window), on the procedural kit's voices at 22.05, 32, 44.1
and 48 kHz. Both results go through the same log-magnitude STFT; prints, for bins within 60 dB of each
clip's peak (quieter ones are near the log floor, where any two resamplers differ), how much they differ in
dB below bin 100 (0-6.25 kHz) and from bin 100 up (6.25-8 kHz, the resamplers' transition bands).
Usage: python bench/bench_resampler.py [clips per class]
"""

from __future__ import annotations

import json
import sys
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from specgan.core.config import load_params
from specgan.data.spectral import _resample, log_spectrogram
from specgan.data.synth_kit import CLASSES, synth_hit

DB = 20 / np.log(10)  # natural log of a magnitude -> dB


def main(per_class: int = 8) -> dict:
    feat = load_params("params.yaml").features
    rng = np.random.default_rng(0)
    out = {}
    for rate in (22050, 32000, 44100, 48000):
        diffs: dict[str, list[np.ndarray]] = {}
        for label in CLASSES:
            for _ in range(per_class):
                x = synth_hit(label, rng, rate, 1.0)
                g = gcd(rate, feat.sample_rate)
                ours = _resample(x, rate, feat.sample_rate)
                theirs = resample_poly(x, feat.sample_rate // g, rate // g)
                n = min(ours.size, theirs.size, feat.clip_samples)
                clips = np.zeros((2, feat.clip_samples))
                clips[0, :n], clips[1, :n] = ours[:n], theirs[:n]
                clips /= np.abs(clips).max(axis=1, keepdims=True)
                spec = log_spectrogram(clips, feat) * DB  # dB
                loud = spec[1] > spec[1].max() - 60
                diff = np.abs(spec[0] - spec[1])
                for band, rows in (("below_6k", slice(0, 100)), ("above_6k", slice(100, None))):
                    diffs.setdefault(band, []).append(diff[rows][loud[rows]])
        out[rate] = {f"{band}_{stat}_db": round(float(fn(np.concatenate(v))), 3) for band, v in diffs.items()
                     for stat, fn in (("median", np.median), ("p99", lambda a: np.percentile(a, 99)))}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
