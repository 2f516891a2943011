"""Hit shape by class, one folder of drum one-shots against another (issue 33's calibration table).

    python bench/kit_calibration.py KIT_DIR REAL_DIR [--json OUT.json]

For every clip (any rate, format and length; mono mix, resampled to the features' 16 kHz, first second):
- decay: from the loudest 20-ms RMS frame (5-ms hop) until the envelope falls 30 dB below it (capped at the
  clip's first second: a hit still ringing then counts as its end);
- attack: from the first 5-ms RMS frame (1-ms hop) within 30 dB of the loudest to the first within 3 dB of it;
- centroid: the spectral centroid in Hz of the frames within 30 dB of the loudest (power-weighted).
Per class it prints the median with the 10th-90th percentile for each folder and the ratio of each figure
(kit / real). Classes come from the folder a clip sits in when that names a class, else from keywords in
its file name (Hydrogen's `Kick-Hard.wav`, `808_Hat_Open.flac`; specgan.data.labelled); clips of no known
class are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from specgan.core.config import FeaturesConfig
from specgan.data.audio_files import list_audio
from specgan.data.labelled import CLASSES, class_by_keyword
from specgan.data.spectral import RejectedClip, decode_clip

SECONDS = 1.0
QUANTILES = (10, 50, 90)
FIGURES = ("decay_s", "attack_ms", "centroid_hz")
TOLERANCE = 0.25  # a kit's percentile within 25% of the recordings'...
FLOOR = {"decay_s": 0.02, "attack_ms": 2.0, "centroid_hz": 50.0}  # ...or this near (a few analysis hops)


def _rms_db(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    n = 1 + max(0, len(x) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n]
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def hit_shape(x: np.ndarray, sr: int) -> dict[str, float]:
    """Decay (s), attack (ms) and centroid (Hz) of one mono clip at ``sr`` (see the module's docstring)."""
    x = x[: int(sr * SECONDS)]
    hop = sr // 200
    env = _rms_db(x, sr // 50, hop)
    peak = int(np.argmax(env))
    below = np.flatnonzero(env[peak:] < env[peak] - 30)
    end = peak + below[0] if below.size else len(env)
    decay = min((end - peak) * hop / sr, SECONDS)
    fine = _rms_db(x, sr // 200, sr // 1000)
    loudest = fine.max()
    start = int(np.argmax(fine >= loudest - 30))
    top = int(np.argmax(fine >= loudest - 3))
    attack = (top - start) * (sr // 1000) / sr * 1000
    spec = np.abs(np.fft.rfft(np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512), axis=1))
    power = spec**2
    loud = 10 * np.log10(power.sum(1) + 1e-20)
    keep = loud >= loud.max() - 30
    freqs = np.fft.rfftfreq(512, 1 / sr)
    centroid = float((power[keep] * freqs).sum() / (power[keep].sum() + 1e-20))
    return {"decay_s": decay, "attack_ms": attack, "centroid_hz": centroid}


def measure(folder: str | Path, sr: int = 16000) -> dict[str, list[dict[str, float]]]:
    """Every usable clip's hit shape, by class."""
    cfg = FeaturesConfig(sample_rate=sr, clip_samples=int(sr * SECONDS), tail_pad=0, n_fft=256, win_length=256,
                         hop_length=128, log_eps=1e-6, shards=1, workers=1)
    out: dict[str, list[dict[str, float]]] = {c: [] for c in CLASSES}
    for rel in list_audio(folder):
        label = class_by_keyword(rel)
        if label is None:
            continue
        try:
            clip, peak, _ = decode_clip(Path(folder) / rel, cfg)
        except RejectedClip:
            continue
        out[label].append(hit_shape(clip / peak, sr))
    return out


def summary(shapes: dict[str, list[dict[str, float]]]) -> dict[str, dict]:
    """Per class: the clip count and each figure's 10th, 50th and 90th percentiles."""
    return {c: {"n": len(rows), **{f: [float(np.percentile([r[f] for r in rows], q)) for q in QUANTILES]
                                  for f in FIGURES}}
            for c, rows in shapes.items() if rows}


def ratios(kit: dict, real: dict) -> dict[str, dict[str, list[float]]]:
    """kit / real for every class both folders hold, figure and percentile."""
    return {c: {f: [k / r if r else float("inf") for k, r in zip(kit[c][f], real[c][f], strict=True)]
                for f in FIGURES}
            for c in CLASSES if c in kit and c in real}


def misses(kit: dict, real: dict) -> list[str]:
    """Every class, figure and percentile where the kit is off by more than TOLERANCE (and FLOOR)."""
    out = []
    for c in CLASSES:
        if c not in real:
            continue
        if c not in kit:
            out.append(f"{c}: no clips in the kit")
            continue
        for f in FIGURES:
            for q, k, r in zip(QUANTILES, kit[c][f], real[c][f], strict=True):
                if abs(k - r) > max(TOLERANCE * abs(r), FLOOR[f]):
                    out.append(f"{c} {f} p{q}: {k:.3g} against {r:.3g}")
    return out


def table(kit: dict, real: dict) -> str:
    fmt = {"decay_s": "{:.3f}", "attack_ms": "{:.1f}", "centroid_hz": "{:.0f}"}

    def cell(s: dict, f: str) -> str:
        lo, mid, hi = (fmt[f].format(v) for v in s[f])
        return f"{mid} ({lo}-{hi})"

    lines = ["| class | n kit/real | decay s kit | decay s real | attack ms kit | attack ms real "
             "| centroid Hz kit | centroid Hz real | worst ratio |", "| --- " * 9 + "|"]
    rat = ratios(kit, real)
    for c in CLASSES:
        if c not in kit or c not in real:
            continue
        worst = max((abs(np.log(v)) for f in FIGURES for v in rat[c][f] if 0 < v < float("inf")), default=0.0)
        lines.append(f"| {c} | {kit[c]['n']}/{real[c]['n']} | " + " | ".join(
            f"{cell(kit[c], f)} | {cell(real[c], f)}" for f in FIGURES) + f" | {np.exp(worst):.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kit", help="a folder of one-shots (the procedural kit: `specgan synth-dataset --out DIR`)")
    ap.add_argument("real", help="a folder of recorded one-shots (Hydrogen's: /usr/share/hydrogen/data/drumkits)")
    ap.add_argument("--json", help="also write both summaries and the ratios here")
    args = ap.parse_args(argv)
    kit, real = summary(measure(args.kit)), summary(measure(args.real))
    print(table(kit, real))
    off = misses(kit, real)
    floors = ", ".join(f"{v:g} {k.split('_')[1]}" for k, v in FLOOR.items())
    print(f"\n{len(off)} of {len(real) * len(FIGURES) * len(QUANTILES)} percentiles outside {TOLERANCE:.0%} "
          f"(or {floors})" + "".join(f"\n  {m}" for m in off))
    if args.json:
        Path(args.json).write_text(json.dumps({"kit": kit, "real": real, "ratios": ratios(kit, real), "misses": off},
                                              indent=1))
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
