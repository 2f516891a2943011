"""The components' image, built and run: the whole Kubeflow pipeline runs inside it, as its non-root user.

Inside the image, `specgan-kfp run --local` runs every component through kfp.local's subprocess runner: each
task's command exactly as the compiled pipeline states it (the launcher's `pip install kfp==...` check, the
embedded component source, `kfp.dsl.executor_main`), in the image's Python and packages, not this machine's.
No container runtime runs here (podman's runtime cannot set RLIMIT_NPROC in this sandbox), so the test mounts
a container's file system and chroots into it as the image's user. The image is built by
`scripts/build-image.sh` (SPECGAN_BASE=debian: no image registry is reachable) unless SPECGAN_IMAGE names one.
CI runs this file as its own step (`SPECGAN_CI_IMAGE=1 bash .ci/run`; not by default: the build slows the
suite by half on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.services import ROOT
from tests.tiny import NO_RULES, TINY, sets

PODMAN = shutil.which("podman")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHROOT = shutil.which("chroot", path=SYSTEM_PATH) or "chroot"
pytestmark = [pytest.mark.image,
              pytest.mark.skipif(not PODMAN, reason="podman is absent (apt-get install podman mmdebstrap)"),
              pytest.mark.skipif(bool(os.environ.get("SPECGAN_IMAGE_BUILDING")),
                                 reason="CI runs this file as its own step, with SPECGAN_CI_IMAGE=1")]
TAG = os.environ.get("SPECGAN_IMAGE", "localhost/specgan:smoke")


def podman(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def rootfs():
    """A writable file system of a container of the image (built first if need be), with /proc and /dev."""
    if subprocess.run([PODMAN, "image", "exists", TAG]).returncode != 0:
        build = subprocess.run([str(ROOT / "scripts" / "build-image.sh"), TAG], cwd=ROOT, capture_output=True,
                               text=True, timeout=3000, env={**os.environ, "SPECGAN_BASE": "debian"})
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        print(build.stdout.strip().splitlines()[-1])
    container = podman("create", TAG)
    root = Path(podman("mount", container))
    mounts = []
    try:
        for sub, how in (("proc", ["-t", "proc", "proc"]), ("dev", ["--rbind", "/dev"])):
            subprocess.run(["mount", *how, str(root / sub)], check=True)
            mounts.append(root / sub)
        yield root
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-R", str(m)], check=False)
        podman("unmount", container)
        podman("rm", "-f", container)


def inside(root: Path, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command in the image's file system as its user (uid 1000), with the image's environment."""
    env = {"PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin", "HOME": "/home/specgan", "LANG": "C.UTF-8",
           "VIRTUAL_ENV": "/opt/venv", "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": "", "SPECGAN_DEVICE": "cpu"}
    script = f"cd /home/specgan && {' '.join(cmd)}"
    return subprocess.run([CHROOT, "--userspec=1000:1000", str(root), "sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_the_image_has_the_commands_and_runs_as_a_user(rootfs):
    for command in ("specgan --version", "specgan-kfp --version", "id -u"):
        proc = inside(rootfs, command)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert inside(rootfs, "id -u").stdout.strip() == "1000"
    assert inside(rootfs, "specgan --version").stdout.strip().startswith("specgan ")
    # The launcher's first line in every task: kfp is there at the compiled version, so it installs nothing.
    pinned = "kfp==$(python3 -c 'import kfp; print(kfp.__version__)')"
    proc = inside(rootfs, f"python3 -m pip install --quiet --no-deps {pinned}")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_component_runs_inside_the_image_as_compiled(rootfs):
    """download, the feature shards, stats, a one-epoch train at width 8, evaluate, render and register:
    kfp.local runs each task's compiled command in the image, on a procedural kit made there."""
    tiny = {**TINY, **NO_RULES, "model.model_dim": 8, "train.epochs": 1}
    proc = inside(rootfs, "specgan synth-dataset --out /home/specgan/kit.tar.gz --per-class 6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = " ".join(f"'{a}'" for a in sets(tiny))
    proc = inside(rootfs, "specgan-kfp run --local --workdir /home/specgan/run --params /opt/specgan/params.yaml",
                  "--cluster /opt/specgan/pipeline/cluster.yaml --arg data_source=/home/specgan/kit.tar.gz", args,
                  timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "local pipeline run finished: specgan-drums version 1 is @challenger" in proc.stdout
    run = rootfs / "home" / "specgan" / "run" / "pipeline_root"
    assert list(run.glob("**/generator.pt")) and list(run.glob("**/index.html"))
    assert list(run.glob("**/sample_000.wav"))
