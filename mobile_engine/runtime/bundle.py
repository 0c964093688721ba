"""Kernel bundles: a plan's kernels compiled ahead of time for one target, checked before use.

``NAME.kernels/`` beside ``NAME.mplan`` holds the files Numba's cache wrote when every kernel of
the plan was compiled for the target (``mobile_engine/bundle_build.py``, on the desktop; under
the emulator for an ARM core) and ``manifest.json``: the machine the code is for (Numba's own
cache key for it: LLVM's target triple, CPU name and features), Python, Numba and llvmlite
versions, the stamp of the engine's kernel sources, and every file's size and sha256.

Trust: the plan records the sha256 of ``manifest.json`` (``manifest["kernel_bundle"]``), so the
plan, which the user already trusts to run, pins the manifest and the manifest pins every file.
The cache files are pickles (and machine code): they are read into memory, checked against the
manifest, and only the checked bytes are ever unpickled (``kernels/cache_bundle.py``). A bundle
that is missing, damaged, from another compile, or built for another CPU, Python, Numba or
kernel source is not used at all: one ``KernelBundleWarning`` says why, and the kernels compile
here as they would without a bundle.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import warnings
from pathlib import Path

from mobile_engine.errors import KernelBundleWarning

MANIFEST = "manifest.json"
FORMAT = 1
PLAN_FIELD = "kernel_bundle"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+\.(nbi|nbc)")
_SHA = re.compile(r"[0-9a-f]{64}")


def environment() -> dict:
    """What a kernel bundle must match in this process: the keys of ``manifest.json``'s
    ``environment``."""
    import llvmlite
    import numba
    from numba.core.registry import cpu_target

    from kernels import config
    triple, cpu, features = cpu_target.target_context.codegen().magic_tuple()
    return {"triple": triple, "cpu": cpu, "features": features,
            "python": f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
            "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "kernels": config.PACKAGE_STAMP.hex()}


def bundle_dir(plan_path: Path, record: dict) -> Path:
    return Path(plan_path).parent / record["path"]


class Refused(Exception):
    """Why a bundle is not used (the note's text)."""


def _checked_record(record) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get("path"), str) \
            or not isinstance(record.get("sha256"), str) or not _SHA.fullmatch(record["sha256"]):
        raise Refused("the plan's kernel_bundle record is malformed")
    name = record["path"]
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise Refused(f"the plan names the bundle {name!r}, not a folder beside it")
    return record


def _differences(built: dict, here: dict) -> list[str]:
    """What differs between the bundle's environment and this process's, in words."""
    names = {"cpu": "CPU", "features": "CPU features", "triple": "target", "python": "Python",
             "numba": "Numba", "llvmlite": "llvmlite", "kernels": "kernel sources"}
    out = []
    for key, label in names.items():
        if built.get(key) != here[key]:
            if key == "features":
                b, h = set(str(built.get(key)).split(",")), set(here[key].split(","))
                out.append(f"CPU features differ (only the bundle's: "
                           f"{', '.join(sorted(b - h)[:4]) or 'none'}; only here: "
                           f"{', '.join(sorted(h - b)[:4]) or 'none'})")
            elif key == "kernels":
                out.append("the engine's kernel sources differ from those it was built from")
            else:
                out.append(f"built for {label} {built.get(key)}, this is {here[key]}")
    return out


def read(plan_path: Path, record) -> tuple[Path, dict, dict[str, bytes]]:
    """(folder, manifest, the verified files) of the bundle ``record`` names; ``Refused``."""
    record = _checked_record(record)
    folder = bundle_dir(plan_path, record)
    try:
        raw = (folder / MANIFEST).read_bytes()
    except OSError as exc:
        raise Refused(f"cannot read {MANIFEST} ({exc.strerror or exc})") from None
    if hashlib.sha256(raw).hexdigest() != record["sha256"]:
        raise Refused(f"{MANIFEST} does not match the plan's record (damaged, or the bundle of "
                       f"another compile)")
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        built = manifest["environment"]
        if manifest.get("format") != FORMAT or not isinstance(files, dict) \
                or not isinstance(built, dict):
            raise ValueError("unknown layout")
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"{MANIFEST} is not a kernel bundle manifest ({exc})") from None
    diffs = _differences(built, environment())
    if diffs:
        raise Refused(f"built for {manifest.get('target', '?')}, not for this machine: "
                       f"{'; '.join(diffs)}")
    verified = {}
    for name, entry in files.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or not isinstance(entry, dict):
            raise Refused(f"{MANIFEST} lists a file {name!r} that is not a kernel cache file")
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise Refused(f"{name}: {exc.strerror or exc}") from None
        if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise Refused(f"{name} does not match its sha256 in {MANIFEST} (damaged)")
        verified[name] = data
    return folder, manifest, verified


def use(plan) -> str | None:
    """Serve the kernels of ``plan``'s bundle, if it records one that fits this machine.

    Returns a one-line description of the bundle used, or None (no bundle recorded, an
    in-memory plan, or a bundle refused with one ``KernelBundleWarning``)."""
    record = plan.manifest.get(PLAN_FIELD)
    if record is None or plan.path is None:
        return None
    try:
        folder, manifest, files = read(Path(plan.path), record)
    except Refused as why:
        where = record.get("path", "kernel bundle") if isinstance(record, dict) else "kernels"
        warnings.warn(f"{Path(plan.path).parent / str(where)}: kernel bundle not used: {why}; "
                      f"the kernels compile on this machine instead", KernelBundleWarning,
                      stacklevel=3)
        return None
    from kernels import cache_bundle
    cache_bundle.add(files)
    return f"{folder} ({manifest.get('target')}, {len(files)} files)"
