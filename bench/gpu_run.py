"""Every GPU measurement in one call (issues 15 and 11): results as JSON, a profile, a grid and WAVs in --out.

Sections, each timed and recorded even when another fails:
1. ``throughput``: one dcgan iteration at width 64, batch 64 -- plain eager fp32 textbook networks (the
   baseline) against the project's step (bf16, channels-last, TF32; with and without fused Adam), the
   project's step under torch.compile, and the whole iteration captured as one CUDA graph.
2. ``real_loop``: the `train` step's own code (``specgan.training.train.train``) on CUDA for both recipes on
   2,350 synthetic normalized clips resident on the device; checkpoint, resume, unbroken-vs-resumed weights.
3. ``render``: batched fast Griffin-Lim for 4,096 clips and the full render path (generator + Griffin-Lim).
4. ``quality``: the main job's recipe (``--recipe`` for another) at width 64 on a synthetic kit, evaluated at
   several points until the time budget runs out (needs soundfile: carry its wheels).

Needs torch, torchaudio, numpy, scipy, scikit-learn, matplotlib and PyYAML; no MLflow, DVC or kfp.
CPU check:  python bench/gpu_run.py --device cpu --small --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_train import plain_networks, plain_step, timed  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from specgan.core.config import load_params  # noqa: E402
from specgan.training.gan import GanState, fast_step  # noqa: E402

RESULTS: dict = {}


class Run:
    """Shared settings of one invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.t0 = time.perf_counter()
        self.p = load_params(ROOT / "params.yaml", [f"recipe={args.recipe}"] if args.recipe else [])
        self.width, self.batch = (8, 8) if args.small else (64, 64)

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t0)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def save(run: Run) -> None:
    (run.out / "gpu_results.json").write_text(json.dumps(RESULTS, indent=2, default=str))


def section(run: Run, name: str, fn: Callable[[Run], dict]) -> None:
    print(f"== {name} ({run.left():.0f} s left)", flush=True)
    t0 = time.perf_counter()
    try:
        RESULTS[name] = fn(run)
    except Exception:  # noqa: BLE001 -- one failed section must not cost the others
        RESULTS[name] = {"error": traceback.format_exc()[-3000:]}
        print(RESULTS[name]["error"], flush=True)
    RESULTS[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(RESULTS[name], default=str)[:2000], flush=True)
    save(run)


# ---------------------------------------------------------------- 1. throughput


def _configs(run: Run, loss: str = "dcgan", compile_: bool = False):
    model = replace(run.p.model, model_dim=run.width)
    train = replace(run.p.train, batch_size=run.batch, compile=compile_, device=run.device.type, loss=loss)
    return model, train


def _state(run: Run, model, train, fused: bool | None, capturable: bool = False) -> GanState:
    state = GanState.create(model, train, run.device)
    if fused is not None:  # rebuild the optimizers with the asked-for implementation
        for name, params, lr in (("opt_g", state.G.parameters(), train.optim.lr),
                                 ("opt_d", state.D.parameters(), train.optim.lr * train.optim.d_lr_scale)):
            old = getattr(state, name).defaults
            setattr(state, name, torch.optim.Adam(params, lr=lr, betas=old["betas"], eps=old["eps"], fused=fused,
                                                  capturable=capturable))
    return state


def _graphed(run: Run, state: GanState, train, latent: int, real: torch.Tensor) -> Callable[[], None]:
    """The whole iteration (D update + G update, z draws) as one CUDA graph; ``state`` must hold fused
    capturable Adam optimizers (``_state(..., fused=True, capturable=True)``)."""
    step = fast_step(state, train, latent)
    step.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    gen = torch.cuda.default_generators[run.device.index or 0]
    static = real.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step([static], gen)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step([static], gen)
    return graph.replay


def throughput(run: Run) -> dict:
    model, train = _configs(run)
    latent, iters = model.latent_dim, run.args.iters
    real = torch.rand(run.batch, 1, 128, 128, device=run.device) * 2 - 1
    res: dict = {"width": run.width, "batch": run.batch, "iters": iters}
    if run.cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    G, D = (m.to(run.device) for m in plain_networks(run.width, latent))
    kw = {"lr": 2e-4, "betas": (0.5, 0.999)}
    opt_g, opt_d = torch.optim.Adam(G.parameters(), **kw), torch.optim.Adam(D.parameters(), **kw)
    with FlopCounterMode(display=False) as counter:
        plain_step(G, D, opt_g, opt_d, real, latent)
    flops = counter.get_total_flops()
    res["flops_per_iter"] = flops
    res["plain_fp32_s"] = timed(lambda: plain_step(G, D, opt_g, opt_d, real, latent), iters, run.device)
    cl = real.contiguous(memory_format=torch.channels_last) if run.cuda else real

    def project(fused: bool | None) -> float:
        m, t = _configs(run)
        state = _state(run, m, t, fused)
        step = fast_step(state, t, latent)
        gen = torch.Generator(device=run.device).manual_seed(0)
        return timed(lambda: step([cl], gen), iters, run.device)

    res["project_eager_s"] = project(fused=False)
    res["project_eager_fused_adam_s"] = project(fused=True if run.cuda else None)
    if run.cuda:
        try:
            m, t = _configs(run)
            replay = _graphed(run, _state(run, m, t, True, capturable=True), t, latent, cl)
            res["project_cuda_graph_s"] = timed(replay, iters, run.device)
        except Exception:  # noqa: BLE001
            res["project_cuda_graph_error"] = traceback.format_exc()[-1500:]
        # A profile of the eager project step: kernel time against wall time.
        res.update(_profile(run, latent, cl))
    return _ratios(res)


def _ratios(res: dict) -> dict:
    flops, base = res["flops_per_iter"], res["plain_fp32_s"]
    timings = {k: v for k, v in res.items() if k.endswith("_s") and k.startswith(("plain", "project"))}
    for k, v in timings.items():
        res[k[:-2] + "_tflops"] = flops / v / 1e12
        res[k[:-2] + "_speedup"] = base / v
    best = min(v for k, v in timings.items() if k.startswith("project"))
    res["best_s_per_iter"] = best
    res["seed_1000_epochs_minutes_at_best"] = 36_700 * best / 60
    return res


def compiled(run: Run) -> dict:
    """The project's step under torch.compile (last: compiling costs a minute or more)."""
    res = dict(RESULTS.get("throughput", {}))
    if "flops_per_iter" not in res or not run.cuda:
        return {"skipped": "needs the throughput section on CUDA"}
    model, train = _configs(run, compile_=True)
    state = _state(run, model, train, True)
    step = fast_step(state, train, model.latent_dim)
    real = (torch.rand(run.batch, 1, 128, 128, device=run.device) * 2 - 1).contiguous(
        memory_format=torch.channels_last)
    gen = torch.Generator(device=run.device).manual_seed(0)
    t0 = time.perf_counter()
    res["project_compiled_s"] = timed(lambda: step([real], gen), run.args.iters, run.device, warmup=6)
    res["compile_wall_s"] = round(time.perf_counter() - t0, 1)
    RESULTS["throughput"] = _ratios(res)
    return {"project_compiled_s": res["project_compiled_s"], "compile_wall_s": res["compile_wall_s"]}


def _profile(run: Run, latent: int, real: torch.Tensor) -> dict:
    from torch.profiler import ProfilerActivity, profile

    m, t = _configs(run)
    state = _state(run, m, t, True)
    step = fast_step(state, t, latent)
    gen = torch.Generator(device=run.device).manual_seed(0)
    for _ in range(3):
        step([real], gen)
    run.sync()
    n = 10
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(n):
            step([real], gen)
        run.sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    (run.out / "profile.txt").write_text(events.table(sort_by="self_cuda_time_total", row_limit=25))
    kernel_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
    return {"profile_wall_ms_per_iter": wall / n * 1e3, "profile_kernel_ms_per_iter": kernel_us / n / 1e3,
            "profile_kernel_share": kernel_us / 1e6 / wall}


# ---------------------------------------------------------------- 2. the real training loop


def _synthetic_features(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    from specgan.data.stats import NormStats

    rng = np.random.default_rng(seed)
    feats_dir = folder / "features"
    feats_dir.mkdir(parents=True, exist_ok=True)
    base = np.linspace(-2, -9, 129, dtype=np.float32)[:, None]
    feats = (base + rng.standard_normal((n, 129, 128), dtype=np.float32)).astype(np.float32)
    np.save(feats_dir / "shard-00000-of-00001.npy", feats)
    flat = feats.transpose(1, 0, 2).reshape(129, -1).astype(np.float64)
    NormStats(flat.mean(1), flat.std(1), flat.shape[1], n, "synthetic").save(folder / "stats.json")
    return feats_dir, folder / "stats.json"


def real_loop(run: Run) -> dict:
    from specgan.training.train import train

    n = 64 if run.args.small else 2350
    res: dict = {"clips": n}
    feats, stats = _synthetic_features(run.work / "loop", n)
    for loss in ("dcgan", "wgan_gp"):
        p = run.p
        t = replace(p.train, loss=loss, batch_size=run.batch, epochs=2, checkpoint_every_epochs=1,
                    grid_every_epochs=1, log_every_iters=1, device=run.device.type)
        p = replace(p, model=replace(p.model, model_dim=run.width), train=t)
        out, whole = run.work / f"loop-{loss}", run.work / f"loop-{loss}-whole"
        run.sync()
        t0 = time.perf_counter()
        first = train(feats, stats, out, p, tracking=False, log_csv=out / "log.csv")
        run.sync()
        t1 = time.perf_counter()
        resumed = train(feats, stats, out, replace(p, train=replace(t, epochs=3)), tracking=False)
        train(feats, stats, whole, replace(p, train=replace(t, epochs=3)), tracking=False)
        a = torch.load(out / "generator.pt", weights_only=True)["state_dict"]
        b = torch.load(whole / "generator.pt", weights_only=True)["state_dict"]
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        res[loss] = {"first_run": first, "first_run_s": round(t1 - t0, 2), "resumed": resumed,
                       "checkpoints": sorted(x.name for x in (out / "checkpoints").iterdir()),
                       "grids": len(list((out / "grids").glob("*.png"))),
                       "resumed_vs_unbroken_max_abs_weight_diff": diff,
                       "finite": all(np.isfinite([first.get("d_loss", np.nan), first.get("g_loss", np.nan),
                                                  resumed.get("d_loss", np.nan)]))}
    return res


# ---------------------------------------------------------------- 3. Griffin-Lim and render


def render(run: Run) -> dict:
    from bench_griffinlim import magnitudes

    from specgan.audio.synthesis import invert, spectral_convergence
    from specgan.data.normalize import denormalize
    from specgan.data.stats import NormStats
    from specgan.model.networks import Generator

    f, r = run.p.features, run.p.render
    n = 64 if run.args.small else 4096
    mag = magnitudes(n, run.p).to(run.device)
    invert(mag[:64], f, r)
    run.sync()
    t0 = time.perf_counter()
    wave = invert(mag, f, r, return_padded=True)
    run.sync()
    gl_s = time.perf_counter() - t0
    padded = torch.nn.functional.pad(mag, (r.pad_frames, r.pad_frames))
    sc = float(spectral_convergence(padded[:256], wave[:256], f).mean())
    G = Generator(replace(run.p.model, model_dim=run.width)).to(run.device).eval()
    stats = NormStats(np.linspace(-2, -9, 129), np.full(129, 2.0), 1, 1, "synthetic")
    z = torch.rand(n, run.p.model.latent_dim, device=run.device) * 2 - 1

    def full() -> torch.Tensor:
        with torch.inference_mode():
            return invert(denormalize(G(z).float(), stats, run.p.normalize, f.log_eps), f, r)

    full()
    run.sync()
    t0 = time.perf_counter()
    audio = full()
    run.sync()
    full_s = time.perf_counter() - t0
    return {"clips": n, "griffin_lim_iters": r.griffin_lim_iters, "griffin_lim_clips_per_s": n / gl_s,
            "spectral_convergence": sc, "render_path_clips_per_s": n / full_s,
            "audio_shape": list(audio.shape), "generator_width": run.width}


# ---------------------------------------------------------------- 4. quality over training (issue 11)


def quality(run: Run) -> dict:
    import soundfile as sf

    from specgan.data.download import download
    from specgan.data.features import run_features
    from specgan.data.stats import run_stats
    from specgan.data.synth_kit import make_kit
    from specgan.evaluation.evaluate import run_evaluate
    from specgan.training.train import train

    w = run.work / "quality"
    per_class = 8 if run.args.small else run.args.per_class
    p = run.p
    p = replace(p, features=replace(p.features, workers=0),
                model=replace(p.model, model_dim=run.width),
                train=replace(p.train, seed=run.args.seed, batch_size=run.batch, checkpoint_every_epochs=10_000,
                              grid_every_epochs=10_000,
                              log_every_iters=100, device=run.device.type),
                evaluate=replace(p.evaluate, n_generated=64 if run.args.small else 512))
    t0 = time.perf_counter()
    download(str(make_kit(w / "kit.tar.gz", n_per_class=per_class)), w / "raw", p.download)
    run_features(w / "raw", w / "features", p.features, p.data.split)
    run_stats(w / "features", w / "stats.json", p.features.n_frames)
    rows: list[dict] = []
    res: dict = {"per_class": per_class, "data_prep_s": round(time.perf_counter() - t0, 1), "rows": rows}
    stages = [2, 4] if run.args.small else run.args.stages
    rate, t_train, last_epochs = None, 0.0, 0
    for epochs in stages:
        if rate is not None:  # skip a stage that the time left cannot hold (train + about 30 s to evaluate)
            its_per_epoch = rows[-1]["iterations"] / rows[-1]["epochs"]
            if (epochs - last_epochs) * its_per_epoch / rate + 30 > run.left() - 110:
                break
        run.sync()
        t1 = time.perf_counter()
        summary = train(w / "features", w / "stats.json", w / "train",
                        replace(p, train=replace(p.train, epochs=epochs)), tracking=False)
        run.sync()
        t_train += time.perf_counter() - t1
        rate = summary["iterations"] / t_train
        last_epochs = epochs
        gen_path = w / f"generator_e{epochs}.pt"
        (w / "train" / "generator.pt").replace(gen_path)
        m = run_evaluate(gen_path, w / "raw", w / f"eval_{epochs}.json", p.evaluate, p.data.split,
                         p.render, log_to_mlflow=False)
        rows.append({"epochs": epochs, "iterations": summary["iterations"], "train_s": round(t_train, 1),
                     "iterations_per_s": round(rate, 1),
                     **{k: v for k, v in m.items() if isinstance(v, (int, float, dict)) and k != "run_id"}})
        print(json.dumps(rows[-1]), flush=True)
        save(run)
    if rows:
        _quality_outputs(run, w / f"generator_e{rows[-1]['epochs']}.pt", sf)
    return res


def _quality_outputs(run: Run, gen_path: Path, sf) -> None:
    """The last generator's 16-sample grid and four WAVs into --out."""
    from specgan.audio.plots import spectrogram_grid
    from specgan.audio.synthesis import DrumGenerator
    from specgan.data.normalize import to_db

    gen = DrumGenerator.load(gen_path, run.device)
    z = gen.latents(list(range(16)))
    f = gen.features
    spectrogram_grid(to_db(gen.spectrograms(z), gen.stats, gen.normalize), run.out / "quality_grid.png",
                     gen_path.stem, [f"seed {i}" for i in range(16)], f.sample_rate, f.hop_length, f.n_fft)
    audio = gen.audio(z[:4], run.p.render).cpu().numpy()
    for i, clip in enumerate(audio):
        sf.write(run.out / f"quality_sample_{i}.wav", clip, gen.features.sample_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/specgan-gpu-work")
    ap.add_argument("--budget-s", type=float, default=460, help="stop starting new work after this many seconds")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="train.seed of the quality run")
    ap.add_argument("--stages", type=int, nargs="+", default=[10, 30, 60, 100, 200, 300, 450, 600, 800, 1000],
                    help="epochs at which the quality run evaluates")
    ap.add_argument("--small", action="store_true", help="tiny sizes, for checking the script on a CPU")
    ap.add_argument("--recipe", help="params.yaml's recipe to run (default: the main job's, params.yaml as it is; "
                                     "`seed` for the MATLAB recipe beside it)")
    ap.add_argument("--only", nargs="*", help="run only these sections")
    args = ap.parse_args()
    run = Run(args)
    RESULTS["machine"] = {"device": torch.cuda.get_device_name(run.device) if run.cuda
                          else f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
                          "torch": torch.__version__, "python": platform.python_version()}
    save(run)
    for name, fn in (("throughput", throughput), ("real_loop", real_loop), ("render", render),
                     ("quality", quality), ("compiled", compiled)):
        if name == "compiled" and run.left() < 60:
            RESULTS[name] = {"skipped": f"{run.left():.0f} s left"}
        elif not args.only or name in args.only:
            section(run, name, fn)
    print(f"done in {time.perf_counter() - run.t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
