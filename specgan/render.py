"""The render step: seeded samples from a trained generator to WAV files, plots and an HTML gallery."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from specgan.atomic import atomic_dir, atomic_path, write_json
from specgan.plots import spectrogram_grid, waveforms_and_spectrograms
from specgan.synthesis import DrumGenerator

GALLERY = "index.html"


def sample_seeds(base_seed: int, n: int) -> list[int]:
    """The seeds of a render: consecutive from ``render.seed``, so sample i is reproducible alone."""
    return [base_seed + i for i in range(n)]


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes of one clip."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def gallery_html(names: list[str], wavs: list[bytes], images: dict[str, bytes], title: str, info: dict) -> str:
    """A self-contained page: audio players and images inline as data: URIs, nothing fetched."""
    rows = "\n".join(
        f'<figure><figcaption>{html.escape(n)}</figcaption>'
        f'<audio controls preload="none" src="data:audio/wav;base64,{base64.b64encode(w).decode()}"></audio></figure>'
        for n, w in zip(names, wavs, strict=True))
    imgs = "\n".join(f'<h2>{html.escape(k)}</h2><img alt="{html.escape(k)}" '
                     f'src="data:image/png;base64,{base64.b64encode(v).decode()}">' for k, v in images.items())
    meta = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in info.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}figure{{display:inline-block;margin:.5em}}
img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1><ul>{meta}</ul>
<section>{rows}</section>
{imgs}
</body></html>
"""


def render(generator_path: str | Path, out_dir: str | Path, n_samples: int | None = None,
           seed: int | None = None, log_to_mlflow: bool = True) -> dict:
    """Write ``sample_XXX.wav``, ``waveforms.png``, ``spectrograms.png`` and ``index.html`` to ``out_dir``."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = DrumGenerator.load(generator_path, device)
    n = n_samples or gen.render.n_samples
    seeds = sample_seeds(gen.render.seed if seed is None else seed, n)
    z = gen.latents(seeds)
    specs = gen.spectrograms(z)
    audio = gen.audio(z).cpu().numpy()
    sr = gen.features.sample_rate
    names = [f"sample_{i:03d}.wav" for i in range(n)]
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        wavs = [wav_bytes(a, sr) for a in audio]
        for name, data in zip(names, wavs, strict=True):
            (tmp / name).write_bytes(data)
        waveforms_and_spectrograms(audio, sr, tmp / "waveforms.png", names)
        spectrogram_grid(specs[:, 0].cpu().numpy(), tmp / "spectrograms.png", "generated spectrograms")
        info = {"samples": n, "seeds": f"{seeds[0]}..{seeds[-1]}", "sample rate": sr,
                "griffin-lim iterations": gen.render.griffin_lim_iters, **gen.provenance}
        page = gallery_html(names, wavs, {p: (tmp / p).read_bytes() for p in ("spectrograms.png", "waveforms.png")},
                            "SpecGAN drum samples", info)
        with atomic_path(tmp / GALLERY) as page_tmp:
            page_tmp.write_text(page)
        write_json(tmp / "render.json", {"seeds": seeds, "files": names, "sample_rate": sr,
                                         "run_id": gen.provenance.get("run_id", "")})
    run_id = gen.provenance.get("run_id")
    if log_to_mlflow and run_id:
        _log_to_run(run_id, out_dir)
    return {"samples": n, "out_dir": str(out_dir), "gallery": str(out_dir / GALLERY), "run_id": run_id or ""}


def _log_to_run(run_id: str, out_dir: Path) -> None:
    from specgan.tracking import client_for_run

    client = client_for_run(run_id, "render")
    if client is not None:
        client.log_artifacts(run_id, str(out_dir), "render")
