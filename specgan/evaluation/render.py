"""The render step: seeded samples from a trained generator to WAV files, plots and an HTML gallery."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import torch

from specgan.audio.plots import sample_card, spectrogram_grid, waveforms_and_spectrograms
from specgan.audio.synthesis import LATENTS, DrumGenerator, sample_seeds, save_latents, wav_bytes
from specgan.core.atomic import MARKER, atomic_dir, atomic_path, check_out_dir, write_json
from specgan.core.config import EvaluateConfig, RenderConfig
from specgan.data.normalize import to_db
from specgan.evaluation.metric_values import baseline_text, spread_text, value_text

GALLERY = "index.html"


GALLERY_METRICS = ("frechet_distance", "ndb_k", "nn_self", "nn_train", "inception_score", "attack_time_w1",
                   "decay_time_w1")
STYLE = """
:root{--ink:#1a202c;--muted:#5a6474;--line:#e2e8f0;--card:#fff;--bg:#f6f7fb;--accent:#2b6cb0;--bad:#c53030}
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--ink);
background:var(--bg);margin:0}header{background:#1a202c;color:#fff;padding:1.2em 2em}header h1{margin:0;
font-size:1.5em}header p{margin:.3em 0 0;color:#cbd5e0;font-size:.9em}main{padding:1.2em 2em;max-width:90em}
h2{font-size:1.15em;margin:1.4em 0 .6em}.verdict{padding:.6em 1em;border-radius:6px;background:#e6fffa;
border:1px solid #81e6d9;display:inline-block}.verdict.bad{background:#fff5f5;border-color:#feb2b2;
color:var(--bad);font-weight:600}table{border-collapse:collapse;background:var(--card);border:1px solid
var(--line);border-radius:6px}td,th{padding:.35em .9em;border-bottom:1px solid var(--line);text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#edf2f7;font-weight:600}.grid{display:grid;
grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:1em}.card{background:var(--card);border:1px solid
var(--line);border-radius:8px;padding:.7em;box-shadow:0 1px 2px rgba(0,0,0,.04)}.card h3{margin:0 0 .4em;
font-size:.95em;display:flex;justify-content:space-between;gap:.5em}.tag{background:#ebf4ff;color:var(--accent);
border-radius:999px;padding:0 .6em;font-size:.85em;font-weight:600;white-space:nowrap}.card img{width:100%;
display:block;border-radius:4px}.card audio{width:100%;margin-top:.4em}details{margin-top:1.5em}
details img{max-width:100%}.meta{color:var(--muted);font-size:.85em}.meta b{color:var(--ink);font-weight:600}
"""


def metrics_html(m: dict) -> str:
    """The evaluation beside its real baselines (written as the console writes them), and its flags in words."""
    rows = [f"<tr><td>{k}</td><td>{value_text(m, k)}</td><td>{baseline_text(m, k)}</td></tr>"
            for k in GALLERY_METRICS if k in m and k + "_real" in m]
    if "frechet_distance_inverted" in m:
        rows.append(f"<tr><td>frechet_distance, real clips through Griffin-Lim (the floor any SpecGAN meets)"
                    f"</td><td></td><td>{m['frechet_distance_inverted']:.4g}</td></tr>")
    flags = [w for f, w in (("collapse_flag", "Mode collapse: the samples are too alike"),
                            ("memorization_flag", "Memorization: the samples copy training clips")) if m.get(f)]
    verdict = (f'<p class="verdict bad">{"; ".join(flags)}</p>' if flags
               else '<p class="verdict">No collapse or memorization flag</p>')
    shares = ", ".join(f"{c} {v:.0%}" for c, v in sorted(m.get("class_share", {}).items()))
    return (f"<h2>Evaluation: {m.get('n_generated', '?')} generated clips against {m.get('n_heldout', '?')} "
            f"held-out real clips</h2>{verdict}<table><tr><th>metric</th><th>generated</th><th>real baseline</th>"
            f"</tr>{''.join(rows)}</table>"
            + (f'<p class="meta"><b>class share of generated samples</b>: {html.escape(shares)}</p>' if shares else "")
            + (f'<p class="meta"><b>spread within each class</b>, x its training clips\' (1: as varied, near 0: one '
               f'sound): {html.escape(spread_text(m))}</p>' if "nn_self_by_class" in m else ""))


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def gallery_html(names: list[str], wavs: list[bytes], cards: list[bytes], images: dict[str, bytes], title: str,
                 info: dict, metrics: dict | None = None, classes: list[str] | None = None) -> str:
    """A self-contained page (audio and images inline as data: URIs, nothing fetched): the evaluation, then one
    card a sample with its class, its waveform and spectrogram and a player that shows its length."""
    tiles = "\n".join(
        f'<div class="card"><h3><span>{html.escape(n)}</span>'
        + (f'<span class="tag">{html.escape(classes[i])}</span>' if classes else "")
        + f'</h3><img alt="waveform and spectrogram of {html.escape(n)}" src="{_data_uri("image/png", c)}">'
        f'<audio controls preload="metadata" src="{_data_uri("audio/wav", w)}"></audio></div>'
        for i, (n, w, c) in enumerate(zip(names, wavs, cards, strict=True)))
    imgs = "\n".join(f'<h2>{html.escape(k)}</h2><img alt="{html.escape(k)}" src="{_data_uri("image/png", v)}">'
                      for k, v in images.items())
    meta = " &middot; ".join(f"<b>{html.escape(str(k))}</b> {html.escape(str(v))}" for k, v in info.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{meta}</p></header><main>
{metrics_html(metrics) if metrics else ""}
<h2>Samples</h2><section class="grid">{tiles}</section>
<details><summary>All spectrograms and waveforms</summary>{imgs}</details>
</main></body></html>
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

        def round_trip(clips: np.ndarray) -> np.ndarray:
            return gen.round_trip(clips, cfg).cpu().numpy()

        classes = predict_classes(audio, data_dir, train_split, f, eval_cfg, labels_mode, round_trip)
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
        cards = [sample_card(a, sr, tmp / (name[:-4] + ".png")).read_bytes() for a, name in zip(audio, names,
                                                                                               strict=True)]
        page = gallery_html(names, wavs, cards,
                            {p: (tmp / p).read_bytes() for p in ("spectrograms.png", "waveforms.png")},
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
        for path in sorted(out_dir.iterdir()):  # not the step's internal output marker
            if path.is_file() and path.name != MARKER:
                client.log_artifact(run_id, str(path), "render")
