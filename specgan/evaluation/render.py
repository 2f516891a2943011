"""The render step: seeded samples from a trained generator to WAV files, plots and an HTML gallery."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from specgan.audio.plots import spectrogram_grid, waveforms_and_spectrograms
from specgan.audio.synthesis import LATENTS, DrumGenerator, sample_seeds, save_latents
from specgan.core.atomic import atomic_dir, atomic_path, check_out_dir, write_json
from specgan.core.config import EvaluateConfig, RenderConfig
from specgan.data.normalize import to_db

GALLERY = "index.html"


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of one clip."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


GALLERY_METRICS = ("frechet_distance", "ndb_k", "nn_self", "nn_train", "inception_score", "attack_time_w1",
                   "decay_time_w1")


def metrics_html(m: dict) -> str:
    """The evaluation beside its real-vs-real baselines, and its flags in words."""
    rows = []
    for k in GALLERY_METRICS:
        if k in m:
            se = f" &plusmn; {m[k + '_se']:.3g}" if k + "_se" in m else ""
            real = f"{m[k + '_real']:.4g}" + (f" &plusmn; {m[k + '_real_se']:.3g}" if k + "_real_se" in m else "")
            rows.append(f"<tr><td>{k}</td><td>{m[k]:.4g}{se}</td><td>{real}</td></tr>")
    if "frechet_distance_inverted" in m:
        rows.append(f"<tr><td>frechet_distance of real clips through Griffin-Lim (the best this model's "
                    f"spectrograms can do)</td><td></td><td>{m['frechet_distance_inverted']:.4g}</td></tr>")
    flags = [w for f, w in (("collapse_flag", "MODE COLLAPSE: the samples are too alike"),
                            ("memorization_flag", "MEMORIZATION: the samples copy training clips")) if m.get(f)]
    shares = ", ".join(f"{c} {v:.0%}" for c, v in sorted(m.get("class_share", {}).items()))
    return (f"<h2>Evaluation ({m.get('n_generated', '?')} generated against {m.get('n_heldout', '?')} held-out "
            f"clips)</h2><table><tr><th>metric</th><th>generated</th><th>real baseline</th></tr>{''.join(rows)}"
            f"</table><p><b>{'; '.join(flags) if flags else 'no collapse or memorization flag'}</b></p>"
            + (f"<p>class share of generated samples: {html.escape(shares)}</p>" if shares else ""))


def gallery_html(names: list[str], wavs: list[bytes], images: dict[str, bytes], title: str, info: dict,
                 metrics: dict | None = None, classes: list[str] | None = None) -> str:
    """A self-contained page: audio players and images inline as data: URIs, nothing fetched."""
    captions = [f"{n} ({c})" for n, c in zip(names, classes, strict=True)] if classes else names
    rows = "\n".join(
        f'<figure><figcaption>{html.escape(n)}</figcaption>'
        f'<audio controls preload="none" src="data:audio/wav;base64,{base64.b64encode(w).decode()}"></audio></figure>'
        for n, w in zip(captions, wavs, strict=True))
    imgs = "\n".join(f'<h2>{html.escape(k)}</h2><img alt="{html.escape(k)}" '
                     f'src="data:image/png;base64,{base64.b64encode(v).decode()}">' for k, v in images.items())
    meta = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in info.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}figure{{display:inline-block;margin:.5em}}
img{{max-width:100%}}td,th{{padding:.2em .8em;text-align:right}}</style></head>
<body><h1>{html.escape(title)}</h1><ul>{meta}</ul>
{metrics_html(metrics) if metrics else ""}
<section>{rows}</section>
{imgs}
</body></html>
"""


def render(generator_path: str | Path, out_dir: str | Path, cfg: RenderConfig, n_samples: int | None = None,
           metrics_path: str | Path | None = None, data_dir: str | Path | None = None, train_split: str = "train",
           eval_cfg: EvaluateConfig | None = None, log_to_mlflow: bool = True, labels_mode: str = "manifest") -> dict:
    """Write ``sample_XXX.wav``, ``waveforms.png``, ``spectrograms.png`` and ``index.html`` to ``out_dir``.

    ``cfg`` (params' ``render``) decides the seeds and the Griffin-Lim settings; ``metrics_path`` (the evaluate
    step's JSON) adds the evaluation to the gallery; ``data_dir`` (labelled) with ``eval_cfg`` adds each sample's
    predicted class. ``latents.npz`` keeps each sample's z (and class) for ``specgan synthesize --z``."""
    check_out_dir(out_dir, "render", tuple(p for p in (generator_path, metrics_path, data_dir) if p))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = DrumGenerator.load(generator_path, device)
    n = n_samples or cfg.n_samples
    seeds = sample_seeds(cfg.seed, n)
    z = gen.latents(seeds)
    y = gen.class_ids(None, n)  # a conditional model: every class in turn
    asked = None if y is None else [gen.classes[i] for i in y.tolist()]
    specs = gen.spectrograms(z, y)
    audio = gen.audio(z, cfg, y).cpu().numpy()
    f = gen.features
    sr = f.sample_rate
    names = [f"sample_{i:03d}.wav" for i in range(n)]
    metrics = json.loads(Path(metrics_path).read_text()) if metrics_path else None
    classes = None
    if data_dir is not None and eval_cfg is not None:
        from specgan.evaluation.evaluate import predict_classes

        classes = predict_classes(audio, data_dir, train_split, f, eval_cfg, labels_mode)
    if asked is not None:
        classes = [f"{c} (asked {a})" for c, a in zip(classes, asked, strict=True)] if classes else \
            [f"asked {a}" for a in asked]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, "render") as tmp:
        wavs = [wav_bytes(a, sr) for a in audio]
        for name, data in zip(names, wavs, strict=True):
            (tmp / name).write_bytes(data)
        waveforms_and_spectrograms(audio, sr, tmp / "waveforms.png", names)
        spectrogram_grid(to_db(specs, gen.stats, gen.normalize, f.log_eps), tmp / "spectrograms.png",
                         "generated spectrograms",
                         [n[:-4] + (f" {asked[i]}" if asked else "") for i, n in enumerate(names)], sr,
                         f.hop_length, f.n_fft)
        save_latents(tmp / LATENTS, z, y, gen.classes)
        info = {"samples": n, "seeds": f"{seeds[0]}..{seeds[-1]}", "sample rate": sr,
                "griffin-lim iterations": cfg.griffin_lim_iters, "griffin-lim momentum": cfg.momentum,
                **gen.provenance}
        page = gallery_html(names, wavs, {p: (tmp / p).read_bytes() for p in ("spectrograms.png", "waveforms.png")},
                            "SpecGAN drum samples", info, metrics, classes)
        with atomic_path(tmp / GALLERY) as page_tmp:
            page_tmp.write_text(page)
        write_json(tmp / "render.json", {"seeds": seeds, "files": names, "sample_rate": sr, "classes": classes,
                                         "asked_classes": asked, "latents": LATENTS,
                                         "griffin_lim_iters": cfg.griffin_lim_iters,
                                         "run_id": gen.provenance.get("run_id", "")})
    run_id = gen.provenance.get("run_id")
    if log_to_mlflow and run_id:
        _log_to_run(run_id, out_dir)
    return {"samples": n, "out_dir": str(out_dir), "gallery": str(out_dir / GALLERY), "run_id": run_id or ""}


def _log_to_run(run_id: str, out_dir: Path) -> None:
    from specgan.core.tracking import client_for_run

    client = client_for_run(run_id, "render")
    if client is not None:
        client.log_artifacts(run_id, str(out_dir), "render")
