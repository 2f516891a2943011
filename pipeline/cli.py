"""The ``specgan-kfp`` command (also ``python -m pipeline``): compile the Kubeflow pipeline, submit a run to a
Kubeflow Pipelines endpoint, or run it here with kfp.local. It lives beside the pipeline so that the core
``specgan`` package never imports kfp."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from specgan.cli import _version, run_reporting_errors
from specgan.core.config import load_params
from specgan.core.errors import SpecganError
from specgan.core.pipeline_params import typed_arguments

PLACEHOLDER_REGISTRY = "registry.example.com/"  # pipeline/cluster.yaml's shipped base_image: not a real image


def cmd_compile(args: argparse.Namespace) -> None:
    from pipeline.run import compile_pipeline
    from pipeline.specgan_pipeline import Cluster

    image = Cluster.load(args.cluster).base_image
    if image.startswith(PLACEHOLDER_REGISTRY):
        print(f"warning: {args.cluster} names the placeholder image {image}: a cluster cannot pull it. Build and "
              "push the image (scripts/build-image.sh, README: Kubeflow) and set base_image there",
              file=sys.stderr)
    out = compile_pipeline(args.out, args.params, args.cluster, tuple(args.set or ()), args.sweep)
    print(f"pipeline written to {out} (image {image}, recipe {load_params(args.params, args.set or ()).recipe})")


def cmd_run(args: argparse.Namespace) -> None:
    from pipeline.run import run_local, submit

    p = load_params(args.params, args.set or ())
    arguments = typed_arguments(args.arg or (), p.to_dict())
    overrides = tuple(args.set or ())
    if args.local:
        version = run_local(args.workdir, args.params, args.cluster, arguments, overrides,
                            verbose=args.verbose or args.verbose_run, sweep_path=args.sweep)
        from specgan.core.redact import redact_url
        from specgan.core.tracking import tracking_uri

        galleries = sorted(Path(args.workdir).glob("pipeline_root/**/index.html"), key=lambda g: g.stat().st_mtime)
        print(f"local pipeline run finished: {p.registry.model_name} version {version} is @challenger\n"
              + (f"  gallery: {galleries[-1].resolve()}\n" if galleries else "")
              + f"  MLflow:  {redact_url(tracking_uri())}\n  every artifact under {Path(args.workdir).resolve()}")
        return
    if not args.host:
        raise SpecganError("run needs --host URL (a Kubeflow Pipelines endpoint) or --local")
    run_id = submit(args.host, args.experiment, args.params, args.cluster, arguments, overrides, args.namespace,
                    args.sweep)
    print(f"submitted run {run_id}")


def cmd_pytorchjob(args: argparse.Namespace) -> None:
    from pipeline.pytorchjob import write_pytorchjob

    out = write_pytorchjob(args.out, args.cluster, args.nodes, args.data_pvc, args.namespace)
    print(f"PyTorchJob written to {out}: kubectl apply -f {out}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests that check the README's commands)."""
    parser = argparse.ArgumentParser(prog="specgan-kfp", description="SpecGAN on Kubeflow Pipelines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"specgan-kfp {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("compile", help="write the pipeline YAML (defaults from params.yaml and --set)")
    sp.add_argument("--out", default="pipeline.yaml", help="output YAML (default pipeline.yaml)")
    sp.set_defaults(func=cmd_compile)

    sp = sub.add_parser("run", help="submit a run to a Kubeflow endpoint (--host) or run it here (--local)")
    sp.add_argument("--host", help="Kubeflow Pipelines endpoint URL")
    sp.add_argument("--experiment", default="specgan", help="Kubeflow experiment name")
    sp.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs); token from KFP_TOKEN")
    sp.add_argument("--local", action="store_true", help="run with kfp.local in this environment")
    sp.add_argument("--workdir", default="outputs/kfp-local", help="--local: pipeline root folder")
    sp.add_argument("--arg", action="append", metavar="NAME=VALUE", help="a pipeline parameter (repeatable)")
    sp.add_argument("--verbose", dest="verbose_run", action="store_true",
                    help="--local: show kfp.local's whole output (executor input, every task's log)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("pytorchjob", help="write a Kubeflow Trainer PyTorchJob: training across several GPU nodes")
    sp.add_argument("--nodes", type=int, default=2, help="pods, each with cluster.yaml's accelerator_count GPUs")
    sp.add_argument("--data-pvc", required=True, help="a shared volume with features/, stats.json and params.yaml")
    sp.add_argument("--namespace", help="the job's namespace")
    sp.add_argument("--out", default="pytorchjob.yaml", help="output YAML (default pytorchjob.yaml)")
    sp.set_defaults(func=cmd_pytorchjob)

    for choice in sub.choices.values():
        choice.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        choice.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override one param in the compiled defaults (repeatable)")
        choice.add_argument("--cluster", default="pipeline/cluster.yaml",
                            help="cluster settings (image, GPU, secrets)")
        if choice.prog.split()[-1] in ("compile", "run"):
            choice.add_argument("--sweep", metavar="GRID.yaml",
                                help="the sweep pipeline: train every combination of this grid (pipeline/sweep.yaml), "
                                     "register the best by the promotion rules")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: errors the user can act on are one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # the client's retry chatter and version notice: the outcome is one line below
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("urllib3", "urllib3.connectionpool"):  # kfp's client resets their levels: disable them
            logging.getLogger(name).disabled = True
    return run_reporting_errors(f"specgan-kfp {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
