"""The instructions of every kernel's inner loops on this emulated core: the table
``make test-arm`` prints (tests/arm/run.py runs this file last, after the plan and the kernel
tests compiled their kernels in the same process; tests/arm/neon.py reads the loops).

Environment: ``ARM_CORE`` (the qemu CPU), ``ARM_REPORT`` (JSON rows for run.py), ``ARM_ASM_DIR``
(each kernel's assembly is saved there, for reading the loops by hand).
"""
from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import numpy as np
import pytest

from kernels.intrinsics import DOT_SDOT
from tests.arm.plugin import COMPILED, COMPILED_IN, PLAN_KERNELS
from tests.arm.test_emulated import CORE, cpu_features

pytestmark = pytest.mark.skipif(platform.machine() != "aarch64",
                                reason="runs on (emulated) aarch64: make test-arm")

REPORT = os.environ.get("ARM_REPORT")
ASM_DIR = os.environ.get("ARM_ASM_DIR")

# Kernel bodies (the Python function names of the Numba dispatchers) and what their hot loops
# must be (tests/arm/neon.py). Anything else compiled in the session is listed as "info".
KINDS = {
    "f32_conv2d_igemm": "fma", "f32_conv2d_kdot4": "fma", "f32_conv2d_pix": "fma",
    "f32_dwconv2d": "fma", "f32_gemm": "fma", "f32_conv2d_winograd": "fma",
    "qu8_conv2d_igemm": "dot", "qu8_conv2d_kdot16": "dot",
    "f32_instance_norm_nhwc": "vector", "f32_instance_norm_nhwc_any": "vector",
    "f32_instance_norm_nchw": "vector", "channel_affine": "vector", "vunary": "vector",
    "vbinary_flat": "vector", "vbinary_rows": "vector", "reduce_ori": "vector",
    "softmax": "vector", "act_inplace": "vector", "activate_span": "vector",
    "add_inplace": "vector", "map_row": "vector",
}


def _label(disp) -> str:
    """A kernel body's name with its compile-time constants: ``f32_conv2d_igemm[MR=16,NR=16]``."""
    fn = disp.py_func
    consts = []
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if name.isupper() and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            consts.append(f"{name}={v}")
        elif name == "loop" and getattr(v, "__name__", "") == "prange":
            consts.append("parallel")
    return f"{fn.__name__}[{','.join(consts)}]" if consts else fn.__name__


def _isa(disp) -> int | None:
    """The ``ISA`` compile-time constant of a qu8 kernel body (kernels/intrinsics.py DOT_*)."""
    fn = disp.py_func
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    return cells["ISA"].cell_contents if "ISA" in cells else None


def test_hot_loops_are_neon():
    """The instructions of every kernel's inner loops on this core (the table run.py prints):
    fmla v.4s in the float kernels, sdot/udot in the int8 ones on cores with dotprod, vector
    code in the element-wise ones, and no libm exp call per element anywhere."""
    from tests.arm import neon
    plan_ids = PLAN_KERNELS
    dotprod = "asimddp" in cpu_features()
    rows, failures = [], []
    for disp in COMPILED.values():
        fn = getattr(disp, "py_func", None)
        if fn is None or not fn.__module__.startswith("kernels."):
            continue
        kind = KINDS.get(fn.__name__, "info")
        for sig in disp.signatures:
            asm = disp.inspect_asm(sig)
            if "Inspection disabled" in asm or len(asm) < 200:
                continue                   # loaded from a cache: nothing to read
            v = neon.check(asm, kind, dotprod, require_dot=_isa(disp) == DOT_SDOT)
            label = _label(disp) + (f" #{disp.signatures.index(sig) + 1}"
                                    if len(disp.signatures) > 1 else "")
            if ASM_DIR:
                Path(ASM_DIR).mkdir(parents=True, exist_ok=True)
                safe = re.sub(r"[^\w.=,-]+", "_", label)[:120]
                Path(ASM_DIR, f"{safe}.{disp.signatures.index(sig)}.s").write_text(asm)
            in_plan = id(disp) in plan_ids or "multistyle26" in COMPILED_IN.get(id(disp), "")
            row = {"core": CORE, "kernel": label, "kind": kind, "ok": v.ok,
                   "in_plan": in_plan, "plan_steps": sorted(plan_ids.get(id(disp), ())),
                   "compiled_in": COMPILED_IN.get(id(disp), ""), "hot": v.hot.summary() if v.hot else "",
                   "hot_insns": v.hot.n_insns if v.hot else 0, "loops": v.n_loops,
                   "vector_loops": v.n_vector_loops, "scalar_fp_loops": v.n_scalar_fp_loops,
                   "spills": v.hot.classes["spill"] if v.hot else 0,
                   "vmem": v.hot.classes["vmem"] if v.hot else 0, "problems": v.problems,
                   "dot": bool(v.hot and v.hot.classes["dot"]),
                   "scalar_only": [lp.summary() for lp in v.scalar_only]}
            rows.append(row)
            if not v.ok and kind != "info":
                failures.append(f"{row['kernel']} ({kind}): {'; '.join(v.problems)}")
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(rows, f, indent=1)
    judged = [r["kernel"] for r in rows if r["kind"] != "info"]
    assert any(re.match(r"f32_conv2d_igemm", k) for k in judged), \
        f"no conv kernel was compiled in this session: {judged}"
    assert not failures, "\n".join(failures)
