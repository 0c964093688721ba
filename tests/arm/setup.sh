#!/usr/bin/env bash
# An emulated aarch64 Python for `make test-arm`, cached under $MOBILE_ENGINE_HOME/arm
# (default ~/.cache/mobile-engine/arm). Idempotent: each stage is skipped once its stamp exists.
#   1. qemu-user-static + debootstrap (apt-get install when missing; qemu runs aarch64 binaries
#      directly, no binfmt registration needed)
#   2. an arm64 Debian userland with python3 (debootstrap --foreign downloads the packages;
#      dpkg-deb -x unpacks them: no emulated install step)
#   3. the project's aarch64 wheels (pyproject dependencies + test extras, numba/llvmlite/numpy
#      pinned to the host venv's versions) installed by the host's pip into a --target dir
# Usage: tests/arm/setup.sh HOST_PYTHON   (prints nothing but progress; env for the runner is
# derived by tests/arm/run.py from the same paths)
set -euo pipefail
HOST_PY=${1:-.venv/bin/python}
case $HOST_PY in /*) ;; */*) HOST_PY=$PWD/$HOST_PY ;; esac   # absolute, symlinks kept (a venv)
cd "$(dirname "$0")/../.."                   # the repository: pyproject.toml lists the wheels
ARM_HOME=${MOBILE_ENGINE_HOME:-$HOME/.cache/mobile-engine}/arm
ROOTFS=$ARM_HOME/rootfs
SUITE=${ARM_DEBIAN_SUITE:-bookworm}          # its python3 (3.11) decides the wheels' ABI
MIRROR=${ARM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$ARM_HOME"

# 1. tools
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    echo "test-arm: installing qemu-user-static and debootstrap"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user-static debootstrap >/dev/null
fi
CPUS=$(qemu-aarch64-static -cpu help || true)     # NOTE: help exits 1
for cpu in cortex-a53 cortex-a72 cortex-a76; do
    grep -qw "$cpu" <<<"$CPUS" \
        || { echo "test-arm: this qemu cannot emulate $cpu" >&2; exit 1; }
done

# 2. arm64 userland
if [ ! -f "$ROOTFS/.complete" ]; then
    echo "test-arm: unpacking an arm64 $SUITE userland into $ROOTFS"
    tmp=$ROOTFS.partial
    rm -rf "$tmp"
    # libgomp1: Numba's omp threading layer (kernels/config.py picks omp)
    debootstrap --foreign --arch=arm64 --variant=minbase \
        --include=python3,libstdc++6,libgomp1 "$SUITE" "$tmp" "$MIRROR" >"$ARM_HOME/debootstrap.log" 2>&1 \
        || { tail -20 "$ARM_HOME/debootstrap.log" >&2; exit 1; }
    for deb in "$tmp"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$tmp"
    done
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    test -x "$tmp/usr/bin/python3" || { echo "test-arm: no python3 in the arm64 userland" >&2; exit 1; }
    touch "$tmp/.complete"
    mv "$tmp" "$ROOTFS"
fi
PYBIN=$(readlink "$ROOTFS/usr/bin/python3")          # e.g. python3.11
PYVER=${PYBIN#python}

# 3. aarch64 wheels
REQS=$("$HOST_PY" - <<'PY'
import importlib.metadata as md, tomllib
from packaging.requirements import Requirement
proj = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(proj["dependencies"]) + list(proj.get("optional-dependencies", {}).get("test", []))
pins = {}
for name in ("numba", "llvmlite", "numpy"):       # the same compiler as the host runs
    try:
        pins[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
# host-only test tools: the x86 oracles and linters the emulated sessions never import (LiteRT
# has no aarch64 wheel of the pinned version for this interpreter)
HOST_ONLY = {"ai-edge-litert", "import-linter"}
# the emulated userland's platform decides the environment markers (tbb: x86-64 only)
ARM = {"platform_machine": "aarch64", "sys_platform": "linux"}
out = []
for r in map(Requirement, reqs):
    if r.name in HOST_ONLY or (r.marker is not None and not r.marker.evaluate(ARM)):
        continue
    out.append(f"{r.name}=={pins[r.name]}" if r.name in pins else f"{r.name}{r.specifier}")
out += [f"{n}=={v}" for n, v in pins.items() if n not in {o.split("=")[0] for o in out}]
print(" ".join(sorted(out)))
PY
)
KEY=$(printf '%s %s' "$PYVER" "$REQS" | sha256sum | cut -c1-12)
SITE=$ARM_HOME/site-$KEY
if [ ! -f "$SITE/.complete" ]; then
    echo "test-arm: aarch64 wheels for python $PYVER: $REQS"
    rm -rf "$SITE.partial"
    # shellcheck disable=SC2086
    "$HOST_PY" -m pip install -q --disable-pip-version-check --no-warn-conflicts \
        --target "$SITE.partial" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
        --platform manylinux_2_17_aarch64 --python-version "$PYVER" --implementation cp \
        --only-binary=:all: $REQS
    touch "$SITE.partial/.complete"
    rm -rf "$SITE"
    mv "$SITE.partial" "$SITE"
fi
ln -sfn "$(basename "$SITE")" "$ARM_HOME/site"
find "$ARM_HOME" -maxdepth 1 -name 'site-*' ! -name "site-$KEY" -exec rm -rf {} +   # stale sets
echo "test-arm: aarch64 python $PYVER ready ($ROOTFS, $SITE)"
