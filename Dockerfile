# The image every Kubeflow component runs in (pipeline/cluster.yaml: base_image). Build it with
# scripts/build-image.sh (Docker or podman). The pinned torch wheel carries the CUDA runtime, cuBLAS, cuDNN and
# NCCL as pip packages (nvidia-* in constraints.txt), so a plain Python base is a complete CUDA runtime; the GPU
# node's driver is mounted by the NVIDIA container toolkit.
#
# BASE: the official Python image by default; any Debian 12 with python3 and python3-venv works the same (the
# script makes one with mmdebstrap where no image registry is reachable). Everything installs into a virtual
# environment, so Debian's own Python (PEP 668) and the official image give the same result.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# The host's pip settings for this build only (an index mirror, wheel folders): never kept in the image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ARG PIP_TRUSTED_HOST

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv

WORKDIR /opt/specgan
# Layer 1, the dependencies (minutes, gigabytes): only the pins and the dependency list invalidate it.
COPY constraints.txt pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Layer 2, the project (seconds): a code change rebuilds only this.
COPY README.md params.yaml dvc.yaml ./
COPY specgan ./specgan
COPY components ./components
COPY pipeline ./pipeline
RUN pip install --no-deps -c constraints.txt . \
    && specgan --version && specgan-kfp --version

RUN useradd --create-home --uid 1000 specgan
USER specgan
WORKDIR /home/specgan
ENTRYPOINT ["specgan"]
CMD ["--help"]
