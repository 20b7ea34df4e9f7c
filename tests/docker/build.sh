#!/bin/sh
# Build the dbsal image with podman for `make test-docker` (docs/docker.md).
#
# - installs podman, mmdebstrap and runc with apt-get if they are missing (root only);
# - makes the base image $DBSAL_DOCKER_BASE (default localhost/debian-py:12: Debian 12 with
#   Python 3.11 from Debian's own packages, mmdebstrap + podman import) if it is missing, since
#   registry images (python:3.11-slim) may not be pullable;
# - builds the repository's Dockerfile as $DBSAL_DOCKER_IMAGE (default localhost/dbsal:test) on
#   it. Local package indexes $DBSAL_DOCKER_INDEXES (space-separated file:// URLs of "simple"
#   folders; default: the file:// extra-index-url entries of the host's pip config) are mounted
#   read-only into the build (their parent folder, where the index pages link to) and passed as
#   the PIP_EXTRA_INDEX_URL build argument: for a file that PyPI has too (torch, the CUDA
#   libraries) pip takes the extra index's copy, so the GB-sized wheels come from local disk.
#   (PIP_FIND_LINKS would not do: pip 23 takes PyPI's copy over a find-links one of the same file.)
#   DBSAL_DOCKER_INDEXES="" builds from the package index alone.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${DBSAL_DOCKER_IMAGE:-localhost/dbsal:test}
BASE=${DBSAL_DOCKER_BASE:-localhost/debian-py:12}
export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/tests/docker/containers.conf}"

missing=""
for tool in podman mmdebstrap runc; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing:$missing; install them (apt-get install -y$missing) and run again" >&2
        exit 1
    fi
    echo "installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

if ! podman image exists "$BASE"; then
    echo "making $BASE (mmdebstrap, Debian 12 minbase + python3)"
    base_start=$(date +%s)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$tmp/rootfs.tar"
    podman import "$tmp/rootfs.tar" "$BASE"
    rm -rf "$tmp"
    trap - EXIT
    echo "made $BASE in $(($(date +%s) - base_start)) s"
fi

if [ -z "${DBSAL_DOCKER_INDEXES+set}" ]; then
    DBSAL_DOCKER_INDEXES=""
    for url in $(python3 -m pip config get global.extra-index-url 2>/dev/null || true); do
        case "$url" in file://*) DBSAL_DOCKER_INDEXES="$DBSAL_DOCKER_INDEXES $url" ;; esac
    done
fi
set --
for url in $DBSAL_DOCKER_INDEXES; do
    root=$(dirname "${url#file://}")
    set -- "$@" -v "$root:$root:ro"
done
indexes=$(echo $DBSAL_DOCKER_INDEXES)  # trimmed
# pip and apt inside the build trust what the host trusts
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] && set -- "$@" -v "$ca:$ca:ro"

echo "building $IMAGE on $BASE (extra indexes: ${indexes:-none})"
start=$(date +%s)
# --format docker keeps the Dockerfile's HEALTHCHECK (the OCI format drops it)
podman build --format docker --network=host "$@" \
    --build-arg "BASE_IMAGE=$BASE" --build-arg "PIP_EXTRA_INDEX_URL=$indexes" \
    -t "$IMAGE" "$repo"
end=$(date +%s)
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE in $((end - start)) s; size $((size / 1000000)) MB"
