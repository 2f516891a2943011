"""The ``specgan`` command: one subcommand per pipeline step (each a thin wrapper over a library function)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from specgan.core.config import ConfigError, Params, load_params
from specgan.core.errors import SpecganError
from specgan.evaluation.metric_values import spread_text


def _params(args: argparse.Namespace) -> Params:
    return load_params(args.params, args.set or ())


def cmd_download(args: argparse.Namespace, p: Params) -> None:
    from specgan.data.download import download

    source = args.source or p.data.source
    res = download(source, args.out, p.download, sha256=p.data.sha256 if args.sha256 is None else args.sha256)
    print(f"{res.n_files} files in {res.out_dir} (data version {res.data_version[:12]})")


def cmd_synth_dataset(args: argparse.Namespace, p: Params) -> None:
    from specgan.data.synth_kit import make_kit

    out = make_kit(args.out, n_per_class=args.per_class, seed=args.seed)
    print(f"synthetic drum kit written to {out}")


def cmd_set_source(args: argparse.Namespace, p: Params) -> None:
    from specgan.data.source import set_source

    set_source(args.source, root=Path(args.params).parent, sha256=args.sha256)
    print(f"data.dvc and params.yaml now name {args.source}; run `dvc repro` to fetch and pin it")


def cmd_recipe(args: argparse.Namespace, p: Params) -> None:
    from specgan.core.config import safe_yaml
    from specgan.core.recipes import recipe_values, write_recipe

    path = Path(args.params)
    recipes = safe_yaml(path.read_text(), str(path)).get("recipes") or {}
    if args.name is None:
        print(f"{path}: recipe {p.recipe}")
        for name, body in recipes.items():
            print(f"  {name}: {len(recipe_values(recipes, name))} values" + (f" (extends {body['extends']})"
                                                                         if "extends" in body else ""))
        return
    label = write_recipe(path, args.name)
    print(f"{path} now holds recipe {label} ({len(recipe_values(recipes, args.name))} values written); "
          "`dvc repro` or `dvc exp run` trains it")


def cmd_features(args: argparse.Namespace, p: Params) -> None:
    from specgan.data.features import featurize_shard, run_features

    split = args.split or p.data.split
    if args.shard is not None:
        res = featurize_shard(args.data, args.out, args.shard, p.features.shards, split, p.features,
                              labels_mode=p.data.labels)
        print(f"shard {res.index}: {res.n_clips} clips, {len(res.rejects)} rejected")
        return
    summary = run_features(args.data, args.out, p.features, split, workers=args.workers, metrics=args.metrics,
                           labels_mode=p.data.labels)
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(summary["rejects_by_reason"].items()))
    print(f"{summary['clips']} clips featurized in {summary['seconds']} s"
          + (f"; {summary['rejected']} rejected ({reasons}): see {Path(args.out) / 'rejects.csv'}"
             if summary["rejected"] else "; none rejected"))


def cmd_stats(args: argparse.Namespace, p: Params) -> None:
    from specgan.data.download import read_source_info
    from specgan.data.stats import run_stats

    version = read_source_info(args.data).get("data_version", "") if args.data else ""
    stats = run_stats(args.features, args.out, p.features.n_frames, version)
    print(f"stats over {stats.clips} clips ({stats.frames} frames) written to {args.out}")


def cmd_train(args: argparse.Namespace, p: Params) -> None:
    from specgan.training.train import train

    summary = train(args.features, args.stats, args.out, p, resume=args.resume, fresh=args.fresh,
                    metrics_path=args.metrics, log_csv=args.log_csv)
    if summary.get("run_id"):
        print(f"trained {summary['iterations']} iterations ({summary['epochs']} epochs); "
              f"MLflow run {summary['run_id']}")


def cmd_render(args: argparse.Namespace, p: Params) -> None:
    from specgan.evaluation.render import render

    res = render(args.generator, args.out, p.render, n_samples=args.n, metrics_path=args.metrics,
                 data_dir=args.data, train_split=p.data.split, eval_cfg=p.evaluate, labels_mode=p.data.labels)
    print(f"{res['samples']} samples; gallery: {res['gallery']}")


def frechet_text(m: dict) -> str:
    """An evaluation's Frechet distance beside its real baseline and real clips through Griffin-Lim."""
    from specgan.evaluation.metric_values import baseline_text, value_text

    return (f"frechet_distance {value_text(m, 'frechet_distance')} (real {baseline_text(m, 'frechet_distance')}, "
            f"real through Griffin-Lim {m.get('frechet_distance_inverted', float('nan')):.4g})")


def timing_text(m: dict) -> str:
    """How far the hits' attack and decay times are from real ones' (Wasserstein-1, seconds), beside real clips'."""
    return (f"hit timing against held-out clips: attack {m['attack_time_w1']:.3f} s "
            f"(real {m['attack_time_w1_real']:.3f}), 20 dB decay {m['decay_time_w1']:.3f} s "
            f"(real {m['decay_time_w1_real']:.3f})")


def cmd_evaluate(args: argparse.Namespace, p: Params) -> None:
    from specgan.evaluation.evaluate import run_evaluate

    m = run_evaluate(args.generator, args.data, args.out, p.evaluate, p.data.split, p.render,
                     labels_mode=p.data.labels)
    print(f"{frechet_text(m)}, ndb_k {m['ndb_k']:.3f} (real {m['ndb_k_real']:.3f}), nn_self {m['nn_self']:.4g} "
          f"(real {m['nn_self_real']:.4g}), nn_train {m['nn_train']:.4g} (real {m['nn_train_real']:.4g})"
          + (" [MODE COLLAPSE]" if m["collapse_flag"] else "") + (" [MEMORIZATION]" if m["memorization_flag"] else "")
          + f"\n{timing_text(m)}"
          + (f"\nclass share: {', '.join(f'{c} {v:.0%}' for c, v in sorted(m['class_share'].items()))}"
             if m.get("class_share") else "")
          + (f" (the classifier is right on {m['classifier_accuracy_real']:.0%} of held-out clips, "
             f"{m['classifier_accuracy_inverted']:.0%} through Griffin-Lim)" if "classifier_accuracy_inverted" in m
             else "")
          + (f"\nasked class heard: {m['conditional_accuracy']:.0%} (real clips "
             f"{m.get('classifier_accuracy_real', 0):.0%}, chance {m['conditional_chance']:.0%})"
             if "conditional_accuracy" in m else "")
          + (f"\nspread within each class x its training clips' (1: as varied): {spread_text(m)}"
             if "nn_self_by_class" in m else ""))


def cmd_register(args: argparse.Namespace, p: Params) -> None:
    from specgan.registry.promotion import CHALLENGER, register

    res = register(args.generator, p, eval_metrics_path=args.metrics, out_json=args.out)
    gate = "no gate metric" if res.gate_value is None else f"{p.registry.gate_metric}={res.gate_value:.6g}"
    print(f"registered {res.name} version {res.version} as @{CHALLENGER} ({gate}); run {res.run_id}")


def cmd_promote(args: argparse.Namespace, p: Params) -> None:
    from dataclasses import replace

    from specgan.registry.promotion import promote

    cfg = replace(p.registry, model_name=args.name) if args.name else p.registry
    print(promote(cfg, version=args.version, force=args.force))


def _model_and_settings(args: argparse.Namespace, p: Params | None):
    """The model of ``--model`` and its render and synthesize settings: the project's params at the time of
    use, or with no project folder the settings registered with the model."""
    from dataclasses import asdict

    from specgan.core.config import override
    from specgan.playback.synthesize import load_model

    gen, registered = load_model(args.model)
    if p is not None:
        return gen, {"render": asdict(p.render), "synthesize": asdict(p.synthesize)}
    if registered is not None:
        return gen, override(registered, args.set or ())
    raise SpecganError(f"{args.model} is a bare generator file: run in the project folder (params.yaml holds "
                       "its render settings), pass --params, or use a registered model (models:/NAME@ALIAS)")


def _render_config(settings: dict):
    from specgan.core.config import RenderConfig, build_section

    return build_section(RenderConfig, settings["render"], "render")


def cmd_synthesize(args: argparse.Namespace, p: Params | None) -> None:
    from specgan.audio.synthesis import LATENTS as LATENTS_NAME
    from specgan.core.config import SynthesizeConfig, build_section
    from specgan.playback.synthesize import Reverb, synthesize

    gen, settings = _model_and_settings(args, p)
    # The command-line values go through params validation (ranges, finiteness): one line naming the key.
    given = {"count": args.count, "seed": args.seed, "tempo_bpm": args.tempo, "reverb_room_size": args.room_size,
             "reverb_damping": args.damping, "reverb_wet_level": args.wet_level}
    s = build_section(SynthesizeConfig, {**settings["synthesize"], **{k: v for k, v in given.items() if v is not None}},
                      "synthesize")
    render = _render_config(settings)
    reverb = Reverb(s.reverb_room_size, s.reverb_damping, s.reverb_wet_level) if args.reverb else None
    files = synthesize(gen, args.out, s, render, reverb=reverb, loop=args.sequence,
                       classes=args.drum_class, z_file=args.z)
    sounds = len(files) - (1 if args.sequence else 0)
    extras = ["loop.wav"] if args.sequence else []
    print(f"{sounds} sounds in {args.out} (drum_000.wav ...), with " + ", ".join([*extras, "drums.png", LATENTS_NAME])
          + (f"; reverb room_size {s.reverb_room_size}, damping {s.reverb_damping}, wet_level {s.reverb_wet_level}"
             if reverb else "") + (f"; loop at {s.tempo_bpm:g} bpm" if args.sequence else ""))


def cmd_interpolate(args: argparse.Namespace, p: Params | None) -> None:
    from specgan.audio.synthesis import load_latents
    from specgan.playback.explore import interpolate

    gen, settings = _model_and_settings(args, p)
    ends = []
    for seed, zfile, flag in ((args.from_seed, args.from_z, "from"), (args.to_seed, args.to_z, "to")):
        if (seed is None) == (zfile is None):
            raise SpecganError(f"give one of --{flag}-seed and --{flag}-z")
        ends.append(gen.latents([seed])[0] if zfile is None else load_latents(zfile, gen.model.latent_dim)[0][0])
    files = interpolate(gen, args.out, _render_config(settings), ends[0].cpu(), ends[1].cpu(), args.steps, args.mode,
                        args.drum_class)
    print(f"{len(files)} sounds along the {args.mode} path in {args.out} (interpolation.png, latents.npz)")


def cmd_invert(args: argparse.Namespace, p: Params | None) -> None:
    import numpy as np

    from specgan.audio.plots import waveforms_and_spectrograms
    from specgan.audio.synthesis import LATENTS, save_latents
    from specgan.core.atomic import write_json
    from specgan.evaluation.evaluate import fit_length
    from specgan.playback.explore import invert
    from specgan.playback.synthesize import write_wav

    gen, settings = _model_and_settings(args, p)
    if not 1 <= args.starts <= 64 or not 1 <= args.steps <= 5000:
        raise SpecganError("--starts must be 1 to 64 and --steps 1 to 5000")
    res = invert(gen, args.target, starts=args.starts, steps=args.steps, seed=args.seed,
                 training_features=args.features)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    y = gen.class_ids([res.drum_class] if res.drum_class else None, 1)
    audio = gen.audio(res.z[None], _render_config(settings), y).cpu().numpy()[0]
    write_wav(out / "resynthesized.wav", audio, gen.features.sample_rate)
    save_latents(out / LATENTS, res.z[None], y, gen.classes)
    report = {"target": str(args.target), "distance": res.distance, "random_z_distance": res.random_distance,
              "nearest_training_clip_distance": res.nearest_training, "class": res.drum_class}
    write_json(out / "inversion.json", report)
    n = gen.features.clip_samples
    pair = np.concatenate([fit_length(res.target_clip[None], n), fit_length(audio[None], n)])
    waveforms_and_spectrograms(pair, gen.features.sample_rate, out / "inversion.png",
                               ["target", f"resynthesized (distance {res.distance:.3f})"])
    near = (f"; the nearest training clip is at {res.nearest_training:.4f}" if res.nearest_training is not None
            else "")
    print(f"found z at distance {res.distance:.4f} (random z: {res.random_distance:.4f}{near})"
          + (f", class {res.drum_class}" if res.drum_class else "") + f"\n{out / LATENTS} holds it")


def cmd_demo(args: argparse.Namespace, p: Params) -> None:
    from specgan.core.config import plain_scalar
    from specgan.demo import run_demo

    overrides = {k: plain_scalar(v) for k, v in (kv.split("=", 1) for kv in args.set or ())}
    r = run_demo(args.workdir, overrides, source=args.source,
                 **({"kit_per_class": args.kit_per_class} if args.kit_per_class else {}))
    ui = (f"mlflow ui --backend-store-uri {r['tracking_uri']}" if r["tracking_uri"].startswith("sqlite")
          else f"open {r['tracking_uri']}")
    m = r["metrics"]
    shares = ", ".join(f"{c} {v:.0%}" for c, v in sorted(m.get("class_share", {}).items()))
    status = "promoted to @champion" if r["promoted"] else "not promoted"
    print(f"\ndemo finished in {r['seconds']} s\n"
          f"  gallery:  {r['gallery']}\n"
          f"  model:    {r['model']} version {r['version']} (@challenger, {status})\n"
          f"  MLflow:   {ui}   then open http://127.0.0.1:5000/#/experiments/{r['experiment_id']}/runs "
          f"(the training and evaluation runs)\n"
          f"  quality:  {frechet_text(m)}, "
          f"inception_score {m.get('inception_score', float('nan')):.3g} "
          f"(real {m.get('inception_score_real', float('nan')):.3g})"
          + (f"\n            class share: {shares}" if shares else "")
          + (f"\n            spread within each class x its training clips': {spread_text(m)}"
             if "nn_self_by_class" in m else "")
          + f"\n            {timing_text(m)}\n"
          f"  gate:     {'PASSES' if r['promoted'] else 'REFUSED'}: {r['verdict']}")


def _version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("specgan")
    except PackageNotFoundError:
        from specgan import __version__

        return __version__


def _add_common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--params", help="params file (default: params.yaml)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override one param, e.g. --set train.epochs=2 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests that check the README's commands)."""
    parser = argparse.ArgumentParser(prog="specgan", description="SpecGAN drum synthesis pipeline")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"specgan {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("download", help="fetch and safely extract the dataset")
    sp.add_argument("--source", help="http(s)://, s3://, archive or folder (default: data.source)")
    sp.add_argument("--out", required=True, help="folder for the extracted audio")
    sp.add_argument("--sha256", help="expected archive sha256 (default: data.sha256)")
    sp.set_defaults(func=cmd_download)

    sp = sub.add_parser("synth-dataset", help="write the procedural drum kit (archive or folder)")
    sp.add_argument("--out", required=True, help="path ending .tar.gz, .zip, or a folder")
    sp.add_argument("--per-class", type=int, default=8, help="clips per drum class (default 8)")
    sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sp.set_defaults(func=cmd_synth_dataset, params_free=True)

    sp = sub.add_parser("set-source", help="point data.dvc and params.yaml at another dataset")
    sp.add_argument("source", help="http(s)://, s3://, local archive or folder")
    sp.add_argument("--sha256", default="", help="expected archive sha256 (optional)")
    sp.set_defaults(func=cmd_set_source)

    sp = sub.add_parser("recipe", help="switch params.yaml to a named recipe (with no name: list the recipes it holds)")
    sp.add_argument("name", nargs="?", help="the recipe to write into params.yaml; none: list them")
    sp.set_defaults(func=cmd_recipe)

    sp = sub.add_parser("features", help="log-magnitude STFT features, sharded and parallel")
    sp.add_argument("--data", required=True, help="folder of audio (the download output)")
    sp.add_argument("--out", required=True, help="output folder of shards")
    sp.add_argument("--split", choices=["train", "valid", "test", "all"], help="default: data.split")
    sp.add_argument("--workers", type=int, help="worker processes (default: features.workers, 0 = all cores)")
    sp.add_argument("--shard", type=int, help="featurize only this shard index (Kubeflow fan-out)")
    sp.add_argument("--metrics", help="also write the summary (clips, rejects, seconds) to this JSON file")
    sp.set_defaults(func=cmd_features)

    sp = sub.add_parser("stats", help="per-bin normalization statistics from the shards")
    sp.add_argument("--features", required=True, help="features folder")
    sp.add_argument("--out", required=True, help="stats JSON file")
    sp.add_argument("--data", help="download folder, to record its data version")
    sp.set_defaults(func=cmd_stats)

    sp = sub.add_parser("train", help="train the GAN (checkpoints, resume, MLflow; torchrun for DDP)")
    sp.add_argument("--features", required=True, help="features folder")
    sp.add_argument("--stats", required=True, help="stats JSON file")
    sp.add_argument("--out", required=True, help="output folder (checkpoints/, generator.pt, grids/)")
    group = sp.add_mutually_exclusive_group()
    group.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint "
                       "(default: the latest in OUT/checkpoints when its params match)")
    group.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    sp.add_argument("--metrics", help="final losses and throughput as JSON (DVC metrics)")
    sp.add_argument("--log-csv", help="loss history CSV (DVC plots)")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("render", help="seeded samples to WAV, plots and an HTML gallery (logged to MLflow)")
    sp.add_argument("--generator", required=True, help="generator.pt from train")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--n", type=int, help="number of samples (default: render.n_samples)")
    sp.add_argument("--metrics", help="the evaluate step's metrics JSON, shown in the gallery")
    sp.add_argument("--data", help="download folder: label each sample with its predicted class (labelled data)")
    sp.set_defaults(func=cmd_render)

    sp = sub.add_parser("evaluate", help="quality metrics against held-out real clips (metrics.json, MLflow)")
    sp.add_argument("--generator", required=True, help="generator.pt from train")
    sp.add_argument("--data", required=True, help="download folder (real clips of every split)")
    sp.add_argument("--out", required=True, help="metrics JSON file")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("register", help="log the generator as an MLflow model; new version @challenger")
    sp.add_argument("--generator", required=True, help="generator.pt from train")
    sp.add_argument("--metrics", help="evaluate stage metrics JSON (the gate metric's source)")
    sp.add_argument("--out", help="write the registered name and version to this JSON file")
    sp.set_defaults(func=cmd_register)

    sp = sub.add_parser("promote", help="move @champion to @challenger if it passes the gate")
    sp.add_argument("--name", help="registered model (default: registry.model_name)")
    sp.add_argument("--version", help="version to promote (default: @challenger)")
    sp.add_argument("--force", action="store_true", help="promote even if the gate fails (recorded)")
    sp.set_defaults(func=cmd_promote)

    sp = sub.add_parser("synthesize", help="drum sounds from a model, optional reverb and loop")
    sp.add_argument("--model", required=True,
                    help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/generator, a run id or generator.pt. "
                         "A model URI is read safely (its generator file and settings; a pyfunc model's pickled "
                         "code is never run, and a model without a specgan generator is refused); note that "
                         "`mlflow models serve` and mlflow.pyfunc.load_model do unpickle it: serve only models "
                         "you trust")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--count", type=int, help="sounds (default: synthesize.count)")
    sp.add_argument("--seed", type=int, help="first seed (default: synthesize.seed)")
    sp.add_argument("--reverb", action="store_true", help="apply reverb (pedalboard)")
    sp.add_argument("--room-size", type=float, help="reverb room size 0-1")
    sp.add_argument("--damping", type=float, help="reverb damping 0-1")
    sp.add_argument("--wet-level", type=float, help="reverb wet level 0-1")
    sp.add_argument("--sequence", action="store_true", help="also write loop.wav, one sound per beat")
    sp.add_argument("--tempo", type=float, help="loop tempo in BPM (default: synthesize.tempo_bpm)")
    sp.add_argument("--class", dest="drum_class", action="append", metavar="NAME",
                    help="a conditional model's class for every sound, or once per sound (repeatable)")
    sp.add_argument("--z", metavar="FILE", help="replay the sounds of a latents.npz that render or synthesize wrote")
    sp.set_defaults(func=cmd_synthesize, params_optional=True)

    sp = sub.add_parser("interpolate", help="sounds along the latent path between two seeds or saved z")
    sp.add_argument("--model", required=True, help="as for synthesize")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--from-seed", type=int, help="the first sound's seed")
    sp.add_argument("--to-seed", type=int, help="the last sound's seed")
    sp.add_argument("--from-z", help="the first sound's latents.npz (its first row)")
    sp.add_argument("--to-z", help="the last sound's latents.npz (its first row)")
    sp.add_argument("--steps", type=int, default=8, help="sounds along the path, ends included (default 8)")
    sp.add_argument("--mode", choices=["slerp", "linear"], default="slerp", help="path shape (default slerp)")
    sp.add_argument("--class", dest="drum_class", help="a conditional model's class along the path")
    sp.set_defaults(func=cmd_interpolate, params_optional=True)

    sp = sub.add_parser("invert", help="find the z (and class) whose sound best matches a given clip")
    sp.add_argument("target", help="the audio file to match")
    sp.add_argument("--model", required=True, help="as for synthesize")
    sp.add_argument("--out", required=True, help="output folder: latents.npz, resynthesized.wav, inversion.json")
    sp.add_argument("--starts", type=int, default=8, help="random starting points (per class; default 8)")
    sp.add_argument("--steps", type=int, default=200, help="gradient steps (default 200)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the starting points (default 0)")
    sp.add_argument("--features", help="the training features folder: also report the nearest training clip")
    sp.set_defaults(func=cmd_invert, params_optional=True)

    sp = sub.add_parser("demo", help="offline demo: a drum kit through every stage with dvc repro (CPU)")
    sp.add_argument("--workdir", default="specgan-demo", help="a new folder for the demo project")
    sp.add_argument("--kit-per-class", type=int, help="clips per class in the synthetic kit (default 60)")
    sp.add_argument("--source", help="real one-shots instead of the kit: a folder labelled by folder "
                    "(DIR/kick/*.wav, ...), or `hydrogen` for Debian's hydrogen-data kits")
    sp.set_defaults(func=cmd_demo, params_free=True)

    for choice in sub.choices.values():
        _add_common(choice)
    return parser


class Terminated(BaseException):
    """SIGTERM (a pod's eviction, `kill`, a CI timeout) as an exception: like Ctrl-C, it unwinds every ``with``
    block, so temporary folders beside an output are removed instead of left behind."""


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[list[int]]:
    """Raise :class:`Terminated` on SIGTERM while the block runs (main thread only; the old handler restored).
    The yielded list records the signals received: Python ignores an exception raised inside some hooks (after
    a fork), and then the caller still knows."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked worker inherited this: die as SIGTERM would, its parent cleans up
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        received.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)  # a full disk, a quota, a size limit


def run_reporting_errors(prog: str, call: Callable[[], int | None]) -> int:
    """Run a command; errors the user can act on become one line on stderr (credentials in URLs removed) and
    exit code 1. Shared by ``specgan`` and ``specgan-kfp``."""
    from specgan.core.redact import redact_url

    try:
        with terminate_as_exception() as received:
            rc = int(call() or 0)
        if received:  # the exception fell in a spot Python ignores (a fork hook): the work finished whole
            raise Terminated
        return rc
    except KeyboardInterrupt:  # Ctrl-C (also under dvc repro): what was written atomically stays consistent
        print(f"{prog}: interrupted; rerun the command to resume (partial outputs are never kept half-written)",
              file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); rerun the command to resume (partial outputs are never kept "
              "half-written)", file=sys.stderr)
        return 143
    except UnicodeDecodeError as exc:
        print(f"{prog}: error: a text file is not UTF-8 ({exc.reason} at byte {exc.start})", file=sys.stderr)
    except (ConfigError, SpecganError) as exc:
        print(f"{prog}: error: {redact_url(str(exc))}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        print(f"{prog}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
    except OSError as exc:
        if exc.errno not in WRITE_FAILURES:
            raise
        print(f"{prog}: error: {exc.strerror}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors the user can act on are one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")

    def call() -> int | None:
        explicit = args.params is not None
        args.params = args.params or "params.yaml"
        if getattr(args, "params_free", False) or (getattr(args, "params_optional", False) and not explicit
                                                   and not Path(args.params).exists()):
            params = None
        else:
            params = _params(args)
        return args.func(args, params)

    return run_reporting_errors(f"specgan {args.command}", call)


if __name__ == "__main__":
    sys.exit(main())
