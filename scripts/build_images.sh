#!/usr/bin/env bash
# Build the docker images of the docker sandbox backend, without any container registry.
#
# Usage: bash scripts/build_images.sh [--rebuild-base] [NAME ...]
#   NAME        build only dockerfiles/NAME.Dockerfile (default: every dockerfiles/*.Dockerfile)
#   --rebuild-base  throw away the cached base rootfs and make it again with debootstrap
#
# 1. agent-rl/base:bookworm: a Debian bookworm minbase root filesystem with python3, made by
#    debootstrap from Debian's mirror and imported with `docker import` (no registry needed).
#    The rootfs tarball is cached under ${XDG_CACHE_HOME:-~/.cache}/agent-rl/ so that a rerun,
#    or a fresh docker engine, takes seconds instead of a minute.
# 2. agent-rl/NAME:latest for each dockerfiles/NAME.Dockerfile (all start FROM the base).
#
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER (client to use).
# Idempotent: present images are kept, and `docker build` reuses its layer cache.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base_image="agent-rl/base:bookworm"
suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/agent-rl"
rootfs_tar="$cache_dir/rootfs-$suite-minbase-python3.tar"

rebuild_base=0
names=()
for arg in "$@"; do
    case "$arg" in
        --rebuild-base) rebuild_base=1 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "error: unknown option $arg" >&2; exit 2 ;;
        *) names+=("$arg") ;;
    esac
done

die() { echo "error: $*" >&2; exit 1; }

# Pick a docker client that can talk to the engine: two can be installed side by side (Debian's
# and a newer one in /usr/local/bin), and either may be the one that works with this engine.
pick_docker() {
    local c
    for c in ${DOCKER:-} "$(command -v docker 2>/dev/null || true)" /usr/bin/docker /usr/local/bin/docker; do
        [[ -n "$c" && -x "$c" ]] || continue
        if timeout 15 "$c" info >/dev/null 2>&1; then
            echo "$c"
            return 0
        fi
    done
    return 1
}
docker_bin="$(pick_docker)" || die "no docker engine answers. Start one first: bash scripts/start_dockerd.sh"
echo "using docker client $docker_bin"

have_image() { "$docker_bin" image inspect "$1" >/dev/null 2>&1; }

make_rootfs_tar() {
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
    [[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root to build the base rootfs (rerun as root, or place a rootfs tarball at $rootfs_tar)"
    mkdir -p "$cache_dir"
    local work
    work="$(mktemp -d "$cache_dir/rootfs.XXXXXX")"
    # Remove a half-made rootfs on any exit; the cache only ever holds a finished tarball.
    trap 'rm -rf "$work"' EXIT
    echo "debootstrap $suite (minbase + python3) from $mirror into $work (about a minute)"
    debootstrap --variant=minbase --include=python3,ca-certificates "$suite" "$work/root" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        die "debootstrap failed (log above). Is $mirror reachable? Set DEBIAN_MIRROR to another mirror."
    }
    # Package caches and lists are dead weight in every image built from this one.
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* \
        "$work/root/var/log/"*.log "$work/root/tmp/"*
    tar --numeric-owner -C "$work/root" -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$rootfs_tar"
    rm -rf "$work"
    trap - EXIT
    echo "cached base rootfs at $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
}

if [[ $rebuild_base -eq 1 ]]; then
    rm -f "$rootfs_tar"
    "$docker_bin" image rm -f "$base_image" >/dev/null 2>&1 || true
fi

if have_image "$base_image"; then
    echo "$base_image is present"
else
    [[ -s "$rootfs_tar" ]] || make_rootfs_tar
    echo "importing $base_image from $rootfs_tar"
    "$docker_bin" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        "$rootfs_tar" "$base_image" >/dev/null
fi

shopt -s nullglob
files=()
if [[ ${#names[@]} -gt 0 ]]; then
    for n in "${names[@]}"; do
        f="$repo/dockerfiles/$n.Dockerfile"
        [[ -f "$f" ]] || die "no such image definition: $f"
        files+=("$f")
    done
else
    # sandbox first: it is the one the backend uses by default, and others may build on it.
    [[ -f "$repo/dockerfiles/sandbox.Dockerfile" ]] && files+=("$repo/dockerfiles/sandbox.Dockerfile")
    for f in "$repo"/dockerfiles/*.Dockerfile; do
        [[ "$f" == */sandbox.Dockerfile ]] || files+=("$f")
    done
fi

for f in "${files[@]}"; do
    name="$(basename "$f" .Dockerfile)"
    tag="agent-rl/$name:latest"
    echo "building $tag from ${f#"$repo"/}"
    # Classic builder on purpose: BuildKit is optional in engine 20.10 and may be missing.
    mkdir -p "$cache_dir"
    log="$cache_dir/build-$name.log"
    if ! DOCKER_BUILDKIT=0 "$docker_bin" build -t "$tag" -f "$f" "$repo/dockerfiles" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "docker build of $tag failed (full log: $log)"
    fi
done

echo "images:"
"$docker_bin" image ls --filter 'reference=agent-rl/*' --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | sed 's/^/  /'
