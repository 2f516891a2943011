#!/usr/bin/env bash
# Build the components' image (the Dockerfile) with Docker or podman, and print its size.
#
#   scripts/build-image.sh [TAG]            TAG defaults to specgan:<version>
#   SPECGAN_BASE=debian scripts/build-image.sh
#       where no image registry is reachable: a Debian 12 base made here with mmdebstrap (python3, venv),
#       imported as localhost/specgan-base:bookworm. Default: the official python:3.11-slim-bookworm.
#
# The host's pip settings (PIP_* variables, /etc/pip.conf, its certificates and the local wheel folders they
# name) are passed to the build, so pip inside it reaches the same package index as pip here.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
tag=${1:-specgan:$version}
engine=${SPECGAN_ENGINE:-$(command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && echo docker || echo podman)}
command -v "$engine" >/dev/null || { echo "error: neither a running Docker nor podman found" >&2; exit 1; }

args=()
base=python:3.11-slim-bookworm
if [ "${SPECGAN_BASE:-}" = debian ]; then
  base=localhost/specgan-base:bookworm
  if ! "$engine" image exists "$base" 2>/dev/null && ! "$engine" image inspect "$base" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || { echo "error: SPECGAN_BASE=debian needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tmp/rootfs.tar"
    "$engine" import "$tmp/rootfs.tar" "$base" >/dev/null
  fi
fi
args+=(--build-arg "BASE=$base")
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT PIP_TRUSTED_HOST; do
  [ -n "${!var:-}" ] && args+=(--build-arg "$var=${!var}")
done
# pip's files on this host: config, certificates, and local wheel folders or indexes it names.
for path in /etc/pip.conf /etc/xdg/pip /root/.config/pip /etc/ssl/certs /usr/share/ca-certificates /opt/wheels \
            /opt/pypi /opt/pypi-more; do
  [ -e "$path" ] && [ "$engine" = podman ] && args+=(-v "$path:$path:ro")
done
[ "$engine" = podman ] && args+=(--isolation chroot)

start=$(date +%s)
"$engine" build "${args[@]}" -t "$tag" .
echo "built $tag with $engine from $base in $(( $(date +%s) - start )) s; size: $("$engine" image inspect "$tag" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')"
