# The image every Kubeflow component runs in (pipeline/cluster.yaml: base_image).
# The pinned torch wheel carries the CUDA runtime, cuBLAS, cuDNN and NCCL as pip packages
# (nvidia-* in constraints.txt), so a slim Python base is a complete CUDA runtime; the GPU node's
# driver is mounted by the NVIDIA container toolkit. Build and push: see README, "Kubeflow".
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/specgan
COPY constraints.txt pyproject.toml README.md params.yaml ./
COPY specgan ./specgan
COPY components ./components
COPY pipeline ./pipeline
RUN pip install -c constraints.txt . \
    && specgan --help >/dev/null

RUN useradd --create-home --uid 1000 specgan
USER specgan
WORKDIR /home/specgan
ENTRYPOINT ["specgan"]
CMD ["--help"]
