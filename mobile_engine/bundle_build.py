"""Write a plan's kernel bundle: ``NAME.kernels/`` beside ``NAME.mplan`` (the reader and its trust
model: ``mobile_engine/runtime/bundle.py``).

The kernels are compiled by the target itself, in a fresh process with an empty Numba cache
(``python -m mobile_engine.runtime.warm``): on this machine for ``host``, under qemu-user on the
emulated core for an ARM core (the set-up of ``make test-arm``: ``tests/arm/setup.sh``, whose
aarch64 Python and wheels pin the host's Numba, llvmlite and numpy). The cache files it writes
become the bundle, each with its size and sha256 in ``manifest.json``, and the plan is saved
again with the manifest's sha256 in ``manifest["kernel_bundle"]``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mobile_engine.errors import EngineError
from mobile_engine.plan.plan import Plan
from mobile_engine.runtime import bundle

HOST = "host"
TIMEOUT = 7200          # seconds: a cold compile of a large plan under emulation


def targets() -> list[str]:
    from mobile_engine.emulator import CORES
    return [HOST, *CORES]


def check_target(name: str) -> str:
    """``name`` if the engine can build kernels for it, else an EngineError naming the choices
    (a compile target, ``mobile_engine/targets.py``, is not always one: the kernels are
    compiled by the target itself, natively or emulated)."""
    if name not in targets():
        why = f"kernel bundles are built for {', '.join(targets())}"
        raise EngineError(f"target {name!r}: {why}", cli=f"--kernels --target {name}: {why}")
    return name


def check_ready(target: str) -> None:
    """Raise (one line) when kernels cannot be built for ``target`` here: for an ARM core, the
    emulator of ``make test-arm`` must be set up. Checked before the model compiles."""
    if target != HOST:
        _emulator(target)


def _emulator(target: str):
    from mobile_engine import emulator
    try:
        return emulator.Emulator(emulator.arm_home(), target)
    except emulator.EmulatorMissing as exc:
        raise EngineError(f"kernels for {target}: {exc}") from None


def describe(plan: Plan) -> str:
    """One line for ``inspect``: the plan's kernel bundle, and whether it fits this machine."""
    record = plan.manifest.get(bundle.PLAN_FIELD)
    if record is None:
        return ("no kernel bundle (the kernels compile on the first start of each machine, then "
                "load from its Numba cache)")
    try:
        folder, manifest, files = bundle.read(Path(plan.path), record)
    except bundle.Refused as why:
        return f"kernel bundle {record.get('path')}: not usable here: {why}"
    env = manifest["environment"]
    return (f"kernel bundle {folder.name} ({manifest.get('target')}): {len(files)} files for "
            f"{env['cpu']} ({env['triple']}), Python {env['python']}, Numba {env['numba']}: "
            f"fits this machine")


def bundle_path(plan_path: Path) -> Path:
    return Path(plan_path).with_suffix(".kernels")


def _worker(target: str, plan: Path, cache: Path) -> tuple[list[str], dict, Path | None]:
    """(argv, env, cwd) of the process that compiles the plan's kernels for ``target``."""
    args = ["-m", "mobile_engine.runtime.warm", str(plan)]
    if target == HOST:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_DISABLE_JIT")}
        return [sys.executable, *args], {**env, "NUMBA_CACHE_DIR": str(cache)}, None
    from mobile_engine import emulator
    emu = _emulator(target)
    emu.prepare()
    return emu.argv(*args), emu.env(NUMBA_CACHE_DIR=cache), emulator.REPO


def _collect(cache: Path) -> dict[str, Path]:
    """The kernel cache files the worker wrote (kernels/ only: ``kernels.config`` keys them),
    and Numba's runtime (``kernels_runtime/``, ``runtime/warm.py``)."""
    found = {}
    for folder in sorted(cache.glob("kernels_*")):
        for f in sorted(folder.iterdir()):
            if f.suffix in (".nbi", ".nbc"):
                found[f.name] = f
    return found


def build(plan_path: str | Path, target: str = HOST, say=print) -> Path:
    """Compile ``plan_path``'s kernels for ``target`` into ``NAME.kernels/`` and record the
    bundle in the plan. Returns the bundle's folder."""
    plan_path = Path(plan_path)
    plan = Plan.load(plan_path)
    out = bundle_path(plan_path)
    with tempfile.TemporaryDirectory(prefix="me-kernels-") as tmp:
        tmp = Path(tmp)
        bare = Plan(dict(plan.manifest), plan.blobs)       # the worker sees no bundle record
        bare.manifest.pop(bundle.PLAN_FIELD, None)
        bare.save(tmp / "plan.mplan")
        argv, env, cwd = _worker(target, tmp / "plan.mplan", tmp / "cache")
        say(f"kernels: compiling every kernel of {plan_path.name} for {target} in a fresh "
            f"process (1 and 2 threads; minutes on a cold cache"
            f"{', much longer under emulation' if target != HOST else ''})")
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=TIMEOUT)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EngineError(f"kernels for {target}: the compiling process failed "
                              f"(exit {proc.returncode}): {tail[0]}")
        environment = json.loads(proc.stdout.strip().splitlines()[-1])
        files = _collect(tmp / "cache")
        if not files:
            raise EngineError(f"kernels for {target}: the compiling process cached no kernel "
                              f"(is Numba's cache disabled?)")
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        entries = {}
        for name, src in files.items():
            data = src.read_bytes()
            (partial / name).write_bytes(data)
            entries[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {"format": bundle.FORMAT, "target": target, "plan": plan_path.name,
                "environment": environment, "files": entries}
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (partial / bundle.MANIFEST).write_bytes(raw)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    plan.manifest[bundle.PLAN_FIELD] = {"path": out.name, "target": target,
                                        "sha256": hashlib.sha256(raw).hexdigest()}
    tmp_plan = plan_path.with_name(plan_path.name + ".partial")
    plan.save(tmp_plan)
    os.replace(tmp_plan, plan_path)
    size = sum(e["bytes"] for e in entries.values())
    say(f"kernels: {out} ({len(entries)} files, {size / 2**20:.1f} MiB) for "
        f"{environment['cpu']} ({environment['triple']}), Python {environment['python']}, "
        f"Numba {environment['numba']}")
    return out
