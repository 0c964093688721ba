"""What ``make test-arm`` checks first inside each emulated aarch64 core (tests/arm/run.py):
the core the engine sees, its int8 ISA dispatch, an int8 conv per ISA, and multistyle26 end to
end. Skipped on other machines. run.py then runs the kernel tests and, last,
test_instructions.py in the same pytest process (with ``-p tests.arm.plugin``).

Environment (set by run.py): ``ARM_CORE`` (the qemu CPU, e.g. ``cortex-a76``) and
``ARM_REPORT`` (a JSON file the instruction table is written to).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import platform
from pathlib import Path

import numpy as np
import pytest

from tests.arm.plugin import PLAN_KERNELS

pytestmark = pytest.mark.skipif(platform.machine() != "aarch64",
                                reason="runs on (emulated) aarch64: make test-arm")

CORE = os.environ.get("ARM_CORE", "")
PLANS = os.environ.get("ARM_PLANS", "")         # plans compiled on the host (tests/arm/crossing.py)
REAL_CORES = os.environ.get("ARM_REAL", "").split(",")   # cores that also run the real network
PLAN_OUT = os.environ.get("ARM_PLAN_OUT", "")   # where this core saves the plan it compiles


def cpu_features() -> set[str]:
    """The Features of /proc/cpuinfo: what the core reports (run.py serves the emulated core's)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("Features"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_the_engine_sees_the_emulated_core():
    """LLVM's host CPU (what Numba compiles for) and the bench's machine facts name the core."""
    import llvmlite.binding as llvm

    from mobile_engine.machine import machine_facts
    assert CORE, "ARM_CORE is not set (run through tests/arm/run.py)"
    assert llvm.get_host_cpu_name() == CORE
    facts = machine_facts()
    assert facts["arch"] == "aarch64"
    assert facts["cpu"].lower() == CORE.lower(), facts["cpu"]
    assert "neon" in facts["isa"]


def test_every_kernel_module_imports_without_x86():
    """Nothing x86-only at import time: every kernels/, planning family and binder module
    imports, and no x86 feature is reported."""
    import kernels
    import mobile_engine.planning.families as fam
    import mobile_engine.runtime.binders as binders
    from kernels import config
    for pkg in (kernels, fam, binders):
        for mod in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    assert not config.has_avx512() and not config.has_avx512_vnni()


def test_int8_isa_dispatch_follows_the_cpu():
    """The qu8 kernels pick ``sdot`` exactly when the core reports dot product (asimddp)."""
    from kernels import config, qu8_conv2d
    want = "sdot" if "asimddp" in cpu_features() else "portable"
    got = qu8_conv2d.host_isa()
    assert got == want, (
        f"{CORE} reports Features {sorted(cpu_features())}: expected the {want!r} qu8 variant, "
        f"host_isa() chose {got!r} (config.has_dotprod() = {config.has_dotprod()}; LLVM's host "
        f"features are {__import__('llvmlite.binding').binding.get_host_cpu_features().flatten()})")


def _qu8_isas() -> list[str]:
    return ["portable", "sdot"] if "asimddp" in cpu_features() else ["portable"]


# The edge cases of the int8 kernel tests (tests/kernels/test_qu8_conv.py: channel counts 1..65,
# 1x1/3x3/9x9, strides, dilations, groups, reflect/edge padding, nearest upsampling, one pixel),
# run with the ISA variants this core has. One tile per method, so each ISA compiles two kernels
# (an emulated compile takes 10-30 s): igemm 6x32 (a partial vector when Co < 32) and kdot
# 10x8 (Co <= 8; the kernel the plans use for few output channels).
def _qu8_runs():
    from tests.kernels.test_qu8_conv import CASES, _ids, _methods
    runs = [(c, m) for c in CASES for m in _methods(c)]
    return runs, [f"{m}-{i}" for (_, m), i in zip(runs, _ids([c for c, _ in runs]))]


QU8_RUNS, QU8_IDS = _qu8_runs()
QU8_TILE = {"igemm": (6, 32), "kdot": (10, 2)}


@pytest.mark.parametrize("isa", ["portable", "sdot"])
@pytest.mark.parametrize("case,method", QU8_RUNS, ids=QU8_IDS)
def test_qu8_conv_is_bit_exact(case, method, isa):
    """int8 convs on this core, bit-exact against the integer numpy reference
    (kernels/reference_q8.py). ``sdot`` (the explicit dot-product instruction, activations
    shifted by -128 and the bias corrected) runs only on cores with dotprod."""
    if isa not in _qu8_isas():
        pytest.skip(f"{CORE} has no dot product instructions")
    from kernels import qu8_conv2d as q
    from kernels import reference_q8 as r
    from tests.kernels.test_qu8_conv import _data, _requant_params
    x, w, bias, geo, zx = _data(case)
    m, zy, qmin, qmax = _requant_params(x, w, bias, geo, zx)
    want = r.qu8_conv2d_reference(x, w, bias, m, zx, zy, qmin, qmax, **geo)
    got = q.conv2d(x, w, bias, m, zx, zy, qmin, qmax, **geo, isa=isa, method=method,
                   tile=QU8_TILE[method], parallel=False)
    bad = np.argwhere(got != want)
    assert not len(bad), f"{len(bad)} of {got.size} differ, first at {bad[:3].tolist()}"


@pytest.fixture(scope="module")
def style_plan():
    """multistyle26 at 64x64 compiled on the x86 host (run.py's ``ARM_PLANS``; compiled on this
    core when run alone), and a Session on 2 threads."""
    import mobile_engine as me
    from mobile_engine import zoo
    try:
        path = str(zoo.model_path("multistyle26"))
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    plan = (me.Plan.load(Path(PLANS) / "multistyle26.mplan") if PLANS else
            me.compile(path, input_shapes={"image": (1, 3, 64, 64)}))
    sess = me.Session(plan, threads=2)
    for _, kernel, fn in sess.bound_kernels():       # for test_instructions.py
        for disp in _dispatchers(fn):
            PLAN_KERNELS.setdefault(id(disp), set()).add(kernel)
    return path, sess


def _dispatchers(fn) -> list:
    """The Numba dispatcher a step calls: ``fn`` itself, or those a Python wrapper closes over."""
    if hasattr(fn, "py_func"):
        return [fn]
    found = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if hasattr(v, "py_func") and hasattr(v, "signatures"):
            found.append(v)
    return found


def test_multistyle26_plan_matches_the_numpy_interpreter(style_plan, photo):
    """End to end on this core: the compiled plan (Numba kernels, 2 threads) against the graph
    run node by node with the numpy references, and against onnxruntime's aarch64 build."""
    from mobile_engine.importers.onnx import import_onnx
    from mobile_engine.ir import interpret
    from tests.tolerances import MODEL_ATOL
    path, sess = style_plan
    w = np.zeros(26, np.float32)
    w[[3, 19]] = 0.5
    feeds = {"image": photo("chelsea.png", 64, 64), "style_weights": w}
    (ours,) = sess.run(None, feeds)
    want = interpret.run_graph(import_onnx(path, input_shapes={"image": (1, 3, 64, 64)}),
                               feeds)["stylized"]
    assert ours.shape == want.shape == (1, 3, 64, 64)
    err = float(np.abs(ours - want).max())
    assert err <= MODEL_ATOL, f"max abs error {err:.2e} against the numpy interpreter"
    try:
        import onnxruntime as ort
    except ImportError:
        return
    from tests.conftest import ort_run
    (ref,) = ort_run(ort, path, feeds)
    err = float(np.abs(ours - ref).max())
    assert err <= MODEL_ATOL, f"max abs error {err:.2e} against onnxruntime"


# --- plans cross devices (tests/arm/crossing.py) -----------------------------------------------
@pytest.mark.parametrize("name", ["multistyle26", "squeezenet"])
def test_a_plan_compiled_on_the_host_runs_here(name, style_plan):
    """The x86-compiled plan, copied as it is, runs on this core and agrees with onnxruntime's
    outputs computed on the host. multistyle26 on 2 threads; the real network on the ``--real``
    cores only, on 1 thread (only the serial kernel variants compile: every compile is
    emulated)."""
    from tests.arm import crossing
    if not PLANS:
        pytest.skip("no host plans (ARM_PLANS): run through tests/arm/run.py")
    if name != "multistyle26" and CORE not in REAL_CORES:
        pytest.skip(f"{name} runs on the --real cores only ({', '.join(REAL_CORES)})")
    import mobile_engine as me
    path, feeds, want = crossing.load(Path(PLANS), name)
    sess = style_plan[1] if name == "multistyle26" else me.Session(str(path), threads=1)
    made_on = sess.plan.manifest["provenance"].get("compiled_on", "")
    assert made_on and "aarch64" not in made_on, f"not a host-compiled plan: {made_on!r}"
    outs = sess.run(None, feeds)
    problems = crossing.compare([o.name for o in sess.get_outputs()], outs, want)
    assert not problems, f"{name} compiled on the host, run on {CORE}: {problems}"


def test_compile_a_plan_here_for_the_host():
    """The other way round: this core compiles multistyle26 and saves the plan; run.py runs it
    on the x86 host against onnxruntime afterwards (``crossing.reverse``)."""
    if not PLAN_OUT:
        pytest.skip("ARM_PLAN_OUT not set: run.py asks one --real core")
    import mobile_engine as me
    from mobile_engine import zoo
    from tests.arm import crossing
    plan = me.compile(str(zoo.model_path("multistyle26")),
                      input_shapes={"image": crossing.STYLE_SHAPE})
    plan.manifest["provenance"]["compiled_on"] = f"aarch64 ({CORE}, emulated)"
    plan.save(PLAN_OUT)
