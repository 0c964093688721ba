"""Hostile plans: a manifest EDITED and re-checksummed passes the header, checksum and schema
checks, so only the binders stand between it and a Numba kernel that does no bounds checks.

Small plans exercising every kernel of the element-wise, reduce, gemm, pool, resize, layout,
conv and norm families are tampered with systematically (each int/list param +1, -1, x1000, 0
and garbage types; weight blobs swapped for other blobs; index tables poked; tensor shapes and
dtypes changed in the "tensors" table; step operands and kernels swapped). Every variant is
loaded and run in ONE subprocess worker (tests/fuzz/load_tampered.py) so a segfault or a hang
is seen as such. Acceptable: an EngineError, or a run that completes with outputs of the
manifest's shapes and the arena's guard zones intact (an edit may be consistent). Anything
else fails the test. By default the conv and norm plans run every fourth variant; the slow
tests run them all, a 64x96 multistyle26 plan's too, and everything with Numba bounds checks.

Targeted edits (one per binder field: an index table entry out of range, a wrong dtype, group 0,
a huge stride, a negative pad, a shape that does not fit the kernel, ...) must each be refused
with a PlanFormatError naming the step, the kernel and the field: in-process (binding never
calls a kernel) and again through the worker.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import mobile_engine as me
from mobile_engine.compiler import plan_from_graph
from mobile_engine.ir.builder import GraphBuilder
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.plan import format as fmt
from mobile_engine.runtime.binders import BINDERS

ROOT = Path(__file__).resolve().parents[1]
# The binder modules whose checks these tests cover (the int8 families are not).
FAMILIES = {f"mobile_engine.runtime.binders.{m}"
            for m in ("elementwise", "reduce", "gemm", "pool", "resize", "layout", "conv",
                      "norm")}
OWNED = {k for k, fn in BINDERS.items() if fn.__module__ in FAMILIES}


# --- plans covering every kernel of the families ---------------------------------------------
def _f(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _elementwise(rng):
    b = GraphBuilder("elementwise")
    x = b.input("x", (1, 4, 5, 6))
    xi = b.input("xi", (2, 3), DType.INT64)
    return b.build(
        b.node(Op.RELU, x), b.node(Op.CLIP, x, min=-0.5, max=0.5), b.node(Op.SIGMOID, x),
        b.node(Op.ADD, x, x),                                                   # flat
        b.node(Op.MUL, x, b.const(np.float32(2.0))),                            # scalar
        b.node(Op.ADD, x, b.const(_f(rng, 6)), activation=Activation.RELU),     # rows
        b.node(Op.SUB, x, b.const(_f(rng, 1, 4, 1, 6)), activation=Activation.CLAMP,
               act_params=(-1, 1)),                                             # nd
        b.node(Op.PRELU, x, b.const(_f(rng, 6))),
        b.node(Op.ADD, xi, b.const(np.array([1, 2, 3], np.int64))),             # numpy
        b.node(Op.MUL, xi, b.const(np.array(3, np.int64)), activation=Activation.RELU),
        b.node(Op.DIV, xi, b.const(np.array([2, -3, 5], np.int64))),
        b.node(Op.NEG, xi), b.node(Op.CLIP, xi, min=-1.0, max=5.0))


def _reduce(rng):
    b = GraphBuilder("reduce")
    x = b.input("x", (2, 4, 5, 6))
    xi = b.input("xi", (3, 4), DType.INT32)
    return b.build(
        b.node(Op.REDUCE_MEAN, x, axes=(1, 2)),                                 # ori
        b.node(Op.REDUCE_SUM, x, axes=(1, 3), keepdims=False),                  # nd
        b.node(Op.REDUCE_SUM, x, axes=(3,)),
        b.node(Op.SOFTMAX, x, axis=-1), b.node(Op.SOFTMAX, x, axis=1),
        b.node(Op.REDUCE_SUM, xi, axes=(1,)),
        b.node(Op.REDUCE_MEAN, xi, axes=(0,), keepdims=False))


def _gemm(rng):
    b = GraphBuilder("gemm")
    a, bb = b.input("a", (3, 7)), b.input("b", (7, 20))
    a3, ai = b.input("a3", (2, 3, 7)), b.input("ai", (2, 3), DType.INT32)
    c = b.input("c", (1, 20))
    return b.build(
        b.node(Op.GEMM, a, b.const(_f(rng, 7, 20)), b.const(_f(rng, 20))),
        b.node(Op.GEMM, a, b.const(_f(rng, 5, 7)), b.const(_f(rng, 3, 1)), trans_b=True,
               alpha=0.5, beta=2.0, activation=Activation.RELU),
        b.node(Op.GEMM, a, bb),                                                 # packb
        b.node(Op.GEMM, b.node(Op.TRANSPOSE, a, perm=(1, 0)), bb, c, trans_a=True,
               beta=0.5),                                                       # runtime C
        b.node(Op.MATMUL, a3, b.const(_f(rng, 7, 40))),
        b.node(Op.MATMUL, a3, b.const(_f(rng, 2, 7, 5))),                       # batched
        b.node(Op.MATMUL, ai, b.const(np.arange(12, dtype=np.int32).reshape(3, 4))))


def _pool(rng):
    b = GraphBuilder("pool")
    x = b.input("x", (1, 9, 11, 5))
    return b.build(
        b.node(Op.MAX_POOL, x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
        b.node(Op.MAX_POOL, x, kernel=(2, 3), strides=(1, 2), dilations=(2, 1)),
        b.node(Op.AVG_POOL, x, kernel=(3, 3), pads=(1, 1, 1, 1)),
        b.node(Op.AVG_POOL, x, kernel=(2, 2), strides=(2, 2), count_include_pad=True,
               pads=(0, 0, 1, 1)),
        b.node(Op.GLOBAL_AVG_POOL, x))


def _resize(rng):
    b = GraphBuilder("resize")
    x, xu = b.input("x", (1, 4, 5, 3)), b.input("xu", (1, 4, 5, 3), DType.UINT8)
    return b.build(
        b.node(Op.RESIZE, x, size=(8, 10)), b.node(Op.RESIZE, xu, size=(7, 9)),
        b.node(Op.RESIZE, x, size=(6, 13), mode="linear"),
        b.node(Op.RESIZE, x, size=(3, 2), mode="linear", coordinate_mode="align_corners"),
        b.node(Op.RESIZE, x, size=(7, 3), mode="cubic", coordinate_mode="tf_crop_and_resize",
               roi=(0.1, -0.2, 0.9, 1.1), extrapolation_value=2.0, antialias=True))


def _layout(rng):
    b = GraphBuilder("layout")
    x, xu = b.input("x", (1, 4, 5, 3)), b.input("xu", (1, 4, 5, 3), DType.UINT8)
    t, idx = b.input("t", (2, 9, 20)), b.input("idx", (4,), DType.INT64)
    return b.build(
        b.node(Op.PAD, x, pads=(0, 1, 2, 0, 0, 1, 2, 0)),
        b.node(Op.PAD, x, pads=(0, 2, 1, 0, 0, 1, 2, 0), mode="reflect"),
        b.node(Op.PAD, xu, pads=(0, 1, 1, 0, 0, 0, 1, 0), mode="edge"),
        b.node(Op.CONCAT, x, b.const(_f(rng, 1, 4, 5, 2)), axis=3),
        b.node(Op.CONCAT, xu, xu, axis=3),
        b.node(Op.TRANSPOSE, x, perm=(0, 3, 1, 2)),
        b.node(Op.TRANSPOSE, b.node(Op.TRANSPOSE, xu, perm=(0, 3, 1, 2)), perm=(0, 2, 3, 1)),
        b.node(Op.TRANSPOSE, t, perm=(0, 2, 1)),                                # tiled
        b.node(Op.TRANSPOSE, t, perm=(1, 0, 2)),                                # strided
        b.node(Op.SLICE, x, starts=(1, 0), ends=(4, 5), axes=(1, 2), steps=(2, 2)),
        b.node(Op.SLICE, xu, starts=(-1,), ends=(-100,), axes=(2,), steps=(-1,)),
        b.node(Op.GATHER, x, b.const(np.array([2, 0, -1], np.int64)), axis=1),
        b.node(Op.GATHER, xu, b.const(np.array([1, 1], np.int64)), axis=2),
        b.node(Op.GATHER, t, idx, axis=1),
        b.node(Op.CAST, x, to="int32"),
        b.node(Op.CAST, x, to="float32"),
        b.node(Op.RESHAPE, b.const(_f(rng, 2, 6)), shape=(3, 4)))


def _conv(rng):
    b = GraphBuilder("conv")
    x, r = b.input("x", (1, 7, 9, 5)), b.input("r", (1, 7, 9, 24))
    xd, rn = b.input("xd", (1, 6, 7, 8)), b.input("rn", (1, 6, 7, 16))
    xw, rw = b.input("xw", (1, 9, 10, 24)), b.input("rw", (1, 9, 10, 40))
    normed = b.node(Op.INSTANCE_NORM, b.node(Op.CONV2D, xd, b.const(_f(rng, 16, 8, 3, 3)),
                                             pads=(1, 1, 1, 1)),
                    b.const(_f(rng, 16)), b.const(_f(rng, 16)))
    return b.build(
        b.node(Op.CONV2D, x, b.const(_f(rng, 24, 5, 3, 3)), b.const(_f(rng, 24)),
               b.const(_f(rng, 1, 7, 9, 24)), pads=(1, 1, 1, 1),
               activation=Activation.RELU),                     # igemm, constant residual
        b.node(Op.CONV2D, x, b.const(_f(rng, 24, 5, 3, 3)), None, r, pads=(1, 1, 1, 1),
               pad_mode="reflect"),                             # igemm, run-time residual
        b.node(Op.CONV2D, xd, b.const(_f(rng, 12, 4, 3, 1)), group=2, pads=(1, 0, 1, 0),
               strides=(2, 1)),                                 # grouped igemm
        b.node(Op.CONV2D, xd, b.const(_f(rng, 8, 1, 17, 17)), group=8,
               pads=(8, 8, 8, 8)),                              # depthwise, too many taps
        b.node(Op.CONV2D, x, b.const(_f(rng, 4, 5, 3, 3)), strides=(2, 2),
               activation=Activation.CLAMP, act_params=(-1.0, 1.0)),                  # kdot
        b.node(Op.CONV2D, x, b.const(_f(rng, 7, 5, 2, 2)), strides=(1, 2), dilations=(2, 1)),
        b.node(Op.CONV2D, x, b.const(_f(rng, 3, 5, 3, 3)), b.const(_f(rng, 3)),
               pads=(1, 1, 1, 1), pad_mode="edge"),                                    # pix
        b.node(Op.CONV2D, x, b.const(_f(rng, 4, 5, 3, 3)), pads=(1, 1, 1, 1), upsample=2),
        b.node(Op.CONV2D, xd, b.const(_f(rng, 8, 1, 3, 3)), b.const(_f(rng, 8)), group=8,
               strides=(2, 2), pads=(1, 1, 1, 1)),                                # depthwise
        b.node(Op.CONV2D, xd, b.const(_f(rng, 16, 1, 2, 3)), group=8, pads=(0, 1, 1, 1),
               activation=Activation.LEAKY_RELU, act_params=(0.1,)),           # multiplier 2
        b.node(Op.CONV_TRANSPOSE2D, xd, b.const(_f(rng, 8, 12, 3, 3)), b.const(_f(rng, 12)),
               strides=(2, 2), pads=(1, 1, 0, 0), output_padding=(1, 1)),
        b.node(Op.CONV_TRANSPOSE2D, xd, b.const(_f(rng, 8, 3, 2, 2)), group=2, strides=(1, 3)),
        b.node(Op.CONV2D, xw, b.const(_f(rng, 40, 24, 3, 3)), b.const(_f(rng, 40)), rw,
               pads=(1, 1, 1, 1), pad_mode="reflect",
               activation=Activation.SIGMOID),                  # Winograd, run-time residual
        b.node(Op.ADD, normed, rn))                              # conv + norm + add, one step


def _norm(rng):
    b = GraphBuilder("norm")
    x, xp = b.input("x", (2, 5, 6, 24)), b.input("xp", (1, 3, 5, 6))
    s, bb, m = b.input("s", (24,)), b.input("bb", (2, 24)), b.input("m", (24,))
    u = b.input("u", (3, 1))
    style = b.node(Op.REDUCE_SUM, b.node(Op.MUL, u, b.const(_f(rng, 3, 24))), axes=(0,),
                   keepdims=False)
    return b.build(
        b.node(Op.INSTANCE_NORM, x, b.const(_f(rng, 24)), b.const(_f(rng, 24))),
        b.node(Op.INSTANCE_NORM, x, s, bb, activation=Activation.RELU),
        b.node(Op.INSTANCE_NORM, x, style, b.const(_f(rng, 24))),
        b.node(Op.INSTANCE_NORM, xp, b.const(_f(rng, 3)), b.const(_f(rng, 3)), layout="nchw"),
        b.node(Op.BATCH_NORM, x, *(b.const(_f(rng, 24)) for _ in range(3)),
               b.const(np.abs(_f(rng, 24)) + 1)),
        b.node(Op.BATCH_NORM, x, b.const(_f(rng, 24)), b.const(_f(rng, 24)), m,
               b.const(np.abs(_f(rng, 24)) + 1), activation=Activation.SIGMOID))


BUILDERS = {"elementwise": _elementwise, "reduce": _reduce, "gemm": _gemm, "pool": _pool,
            "resize": _resize, "layout": _layout, "conv": _conv, "norm": _norm}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """{family: (path of the compiled plan, its Plan)}."""
    d = tmp_path_factory.mktemp("tamper")
    out = {}
    for i, (name, build) in enumerate(BUILDERS.items()):
        plan = plan_from_graph(build(np.random.default_rng(i)))
        path = plan.save(d / f"{name}.mplan")
        out[name] = (path, me.Plan.load(path))
    return out


@pytest.fixture(scope="module")
def ms26_plan(multistyle26_path, tmp_path_factory):
    """A small multistyle26 plan (64x96): fused conv + norm (+ add) steps, pix and pixup2
    convs over planar tensors, planar norms with style-computed scale and bias."""
    plan = me.compile(multistyle26_path, input_shapes={"image": (1, 3, 64, 96)})
    path = plan.save(tmp_path_factory.mktemp("ms26") / "ms26.mplan")
    return path, me.Plan.load(path)


def test_plans_cover_every_kernel_family(plans):
    kernels = {s["kernel"] for _, plan in plans.values() for s in plan.steps}
    assert kernels <= OWNED, sorted(kernels - OWNED)
    # by name: one closure per kernel id (conv tiles) counts once
    binders = {BINDERS[k].__qualname__ for k in OWNED}
    covered = {BINDERS[k].__qualname__ for k in kernels}
    assert binders == covered, sorted(binders - covered)


# --- tampering ---------------------------------------------------------------------------------
def _int_edits(v: int):
    return {"+1": v + 1, "-1": v - 1, "x1000": v * 1000, "0": 0, "neg": -v - 2}


GARBAGE = {"str": "7", "float": 2.5, "list": [1], "none": None, "huge": 1 << 70}


def _param_edits(params: dict):
    """(label, key, new value) for every int and list-of-int param, plus garbage types."""
    for key, v in sorted(params.items()):
        if isinstance(v, bool):
            yield f"{key}=not", key, not v
        elif isinstance(v, int):
            for label, new in _int_edits(v).items():
                yield f"{key}{label}", key, new
        elif isinstance(v, list) and all(isinstance(e, int) for e in v):
            for i, e in enumerate(v):
                for label, new in _int_edits(e).items():
                    yield f"{key}[{i}]{label}", key, v[:i] + [new] + v[i + 1:]
            yield f"{key}-short", key, v[:-1]
            yield f"{key}-long", key, v + [1]
        elif isinstance(v, str):
            for other in ("flat", "rows", "nd", "ori"):
                if other != v:
                    yield f"{key}={other}", key, other
        if not isinstance(v, float) or key in ("p0", "value"):
            for label, new in GARBAGE.items():
                yield f"{key}={label}", key, new


def _reshaped(t: dict) -> list[tuple[str, dict]]:
    """Edited versions of a tensor entry: same bytes in another shape or dtype, or other bytes."""
    shape, dtype = list(t["shape"]), t["dtype"]
    size = int(np.prod(shape, dtype=np.int64))
    isz = np.dtype(dtype).itemsize
    out = [("reversed", {"shape": shape[::-1]}), ("flat", {"shape": [size]}),
           ("rank+1", {"shape": [1] + shape})]
    if shape:
        out.append(("last+1", {"shape": shape[:-1] + [shape[-1] + 1],
                               "nbytes": (size // max(shape[-1], 1)) * (shape[-1] + 1) * isz}))
        out.append(("last-1", {"shape": shape[:-1] + [max(shape[-1] - 1, 0)],
                               "nbytes": (size // max(shape[-1], 1)) * max(shape[-1] - 1, 0)
                               * isz}))
        out.append(("first*2", {"shape": [shape[0] * 2] + shape[1:], "nbytes": 2 * size * isz}))
    same = {"float32": "int32", "int32": "float32", "uint8": "int8", "int8": "uint8",
            "int64": "int64", "bool": "uint8"}[dtype]
    if same != dtype:
        out.append((f"dtype={same}", {"dtype": same}))
    if shape and isz == 4:
        out.append(("as-uint8", {"dtype": "uint8", "shape": shape[:-1] + [shape[-1] * 4]}))
        out.append(("as-int64", {"dtype": "int64", "shape": shape[:-1] + [shape[-1] // 2],
                                 "nbytes": size // max(shape[-1], 1) * (shape[-1] // 2) * 8}))
    if shape and isz == 1:
        out.append(("as-float32", {"dtype": "float32", "shape": shape[:-1] + [shape[-1] // 4],
                                   "nbytes": size // max(shape[-1], 1) * (shape[-1] // 4) * 4}))
    if shape and isz == 8:
        out.append(("as-float32", {"dtype": "float32", "shape": shape[:-1] + [shape[-1] * 2]}))
    return out


DROP = object()


def _edited(manifest: dict, path: tuple, value) -> dict:
    """A copy of ``manifest`` with the item at ``path`` set to ``value`` (or deleted); only the
    containers along ``path`` are copied (the rest is shared: never mutate it)."""
    m = dict(manifest)
    obj = m
    for key in path[:-1]:
        obj[key] = dict(obj[key]) if isinstance(obj[key], dict) else list(obj[key])
        obj = obj[key]
    if value is DROP:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return m


def _kernel_swaps(kernel: str, rng: np.random.Generator) -> list[str]:
    """Four other kernels of the families, and the x8/x32 sibling of a lane kernel."""
    others = sorted(k for k in OWNED if k != kernel)
    swaps = [str(k) for k in rng.choice(others, size=4, replace=False)]
    for a, b in (("x32_", "x8_"), ("x8_", "x32_")):
        if kernel.startswith(a) and b + kernel[len(a):] in OWNED:
            swaps.append(b + kernel[len(a):])
    return swaps


def variants(manifest: dict, rng: np.random.Generator):
    """(label, edited manifest) pairs for one plan's manifest."""
    n_blobs = len(manifest["blobs"])
    names = sorted(manifest["tensors"])
    for si, s in enumerate(manifest["steps"]):
        if s["kernel"] not in OWNED:
            continue
        tag = f"s{si}-{s['kernel']}"
        for label, key, new in _param_edits(s["params"]):
            yield f"{tag}-param-{label}", _edited(manifest, ("steps", si, "params", key), new)
        yield f"{tag}-param-drop-all", _edited(manifest, ("steps", si, "params"), {})
        for key, index in sorted(s["weights"].items()):
            others = [b for b in range(n_blobs) if b != index]
            for b in rng.choice(others, size=min(4, len(others)), replace=False):
                yield f"{tag}-weight-{key}=blob{b}", _edited(
                    manifest, ("steps", si, "weights", key), int(b))
            yield f"{tag}-weight-{key}-dropped", _edited(
                manifest, ("steps", si, "weights", key), DROP)
        for i in range(max(2, len(s["inputs"]))):
            if n_blobs:
                b = int(rng.integers(n_blobs))
                yield f"{tag}-weight-in{i}-added=blob{b}", _edited(
                    manifest, ("steps", si, "weights", f"in{i}"), b)
        for key in ("inputs", "outputs"):
            for i in range(len(s[key])):
                other = names[int(rng.integers(len(names)))]
                yield f"{tag}-{key}[{i}]={other}", _edited(manifest, ("steps", si, key, i), other)
        if s["inputs"]:
            yield f"{tag}-inputs-dropped", _edited(manifest, ("steps", si, "inputs", -1), DROP)
        for kernel in _kernel_swaps(s["kernel"], rng):
            yield f"{tag}-kernel={kernel}", _edited(manifest, ("steps", si, "kernel"), kernel)

    for name in names:
        for label, change in _reshaped(manifest["tensors"][name]):
            m = _edited(manifest, ("tensors", name), {**manifest["tensors"][name], **change})
            for key in ("inputs", "outputs"):              # graph inputs/outputs follow
                m[key] = [{**io, **{k: v for k, v in change.items() if k != "nbytes"}}
                          if io["name"] == name else io for io in m[key]]
            yield f"tensor-{name}-{label}", m

    for bi, blob in enumerate(manifest["blobs"]):
        for label, change in _reshaped(blob):
            yield f"blob{bi}-{label}", _edited(manifest, ("blobs", bi), {**blob, **change})


def blob_edits(plan: me.Plan):
    """(label, blob index, new contents) for the integer blobs (index tables): one value set
    just past either end of any plausible range, and to a large value."""
    for bi, blob in enumerate(plan.blobs):
        if blob.dtype.kind not in "iu" or blob.size == 0:
            continue
        hi = int(blob.max())
        for label, value in (("max+1", hi + 1), ("-2", -2), ("huge", 1 << 30)):
            new = np.array(blob, copy=True)
            pos = int(np.argmax(new.reshape(-1)))
            new.reshape(-1)[pos] = np.array(value).astype(new.dtype)
            yield f"blob{bi}-value-{label}", bi, new


def _write(path: Path, manifest: dict, blobs: list[np.ndarray]) -> None:
    """An edited plan file with a valid checksum (as tests/test_plan_format.py does)."""
    fmt.write(path, manifest, [memoryview(np.ascontiguousarray(b)).cast("B") for b in blobs])


def _run_worker(paths: list[Path], tmp_path: Path, env: dict | None = None,
                timeout: float = 300) -> dict[str, str]:
    listing = tmp_path / "variants.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.fuzz.load_tampered", str(listing)],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, **(env or {})}, check=False)
    except subprocess.TimeoutExpired as exc:
        started = [ln for ln in (exc.stdout or b"").decode().splitlines()
                   if ln.startswith("start ")]
        pytest.fail(f"the worker hung (>{timeout} s) on {started[-1] if started else '?'}")
    lines = proc.stdout.splitlines()
    if proc.returncode != 0:
        started = [ln[6:] for ln in lines if ln.startswith("start ")]
        pytest.fail(f"the worker crashed (exit {proc.returncode}) on "
                    f"{started[-1] if started else '?'}:\n{proc.stderr[-3000:]}")
    verdicts = dict(ln.split(" ", 1) for ln in lines if not ln.startswith("start "))
    assert len(verdicts) == len(paths), "the worker stopped early"
    return verdicts


def _all_variants(plans, tmp_path: Path, every: int = 1) -> list[Path]:
    """Write every variant (every ``every``-th one) of every plan; returns their paths."""
    paths = []
    for family, (_, plan) in sorted(plans.items()):
        rng = np.random.default_rng(zlib.crc32(family.encode()))
        edits = [(label, manifest, plan.blobs)
                 for label, manifest in variants(plan.manifest, rng)]
        edits += [(label, plan.manifest, plan.blobs[:bi] + [new] + plan.blobs[bi + 1:])
                  for label, bi, new in blob_edits(plan)]
        for label, manifest, blobs in edits[::every]:
            path = tmp_path / f"{family}--{label}.mplan".replace("/", "_")
            _write(path, manifest, blobs)
            paths.append(path)
    return paths


def _bad(verdicts: dict[str, str]) -> dict[str, str]:
    return {Path(p).name: v for p, v in verdicts.items()
            if not (v.startswith("engine-error") or v == "ran")}


def _sweep(plans: dict, tmp_path: Path, every: int = 1, env: dict | None = None,
           timeout: float = 300) -> None:
    """Run the untouched plans and their edited variants in the worker; all must behave."""
    paths = _all_variants(plans, tmp_path, every)
    untouched = [plans[f][0] for f in sorted(plans)]
    verdicts = _run_worker(untouched + paths, tmp_path, env, timeout)
    for p in untouched:
        assert verdicts[str(p)] == "ran", (p, verdicts[str(p)])
    bad = _bad(verdicts)
    assert not bad, f"{len(bad)} of {len(paths)} edited plans misbehaved:\n" + \
        "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:30])
    refused = sum(v.startswith("engine-error PlanFormatError") for v in verdicts.values())
    assert refused > len(paths) // 2, f"only {refused} of {len(paths)} edits were refused"


CORE = ("elementwise", "reduce", "gemm", "pool", "resize", "layout")


def test_tampered_plans_never_crash_or_escape_the_arena(plans, tmp_path):
    _sweep({f: plans[f] for f in CORE}, tmp_path)


def test_tampered_conv_and_norm_plans(plans, tmp_path):
    """Every fourth variant of the conv and norm plans (all of them: the slow tests)."""
    _sweep({f: plans[f] for f in ("conv", "norm")}, tmp_path, every=4)


@pytest.mark.slow
def test_tampered_multistyle26(ms26_plan, tmp_path):
    _sweep({"ms26": ms26_plan}, tmp_path, timeout=1800)


@pytest.mark.slow
def test_tampered_plans_with_numba_bounds_checks(plans, tmp_path):
    """Every variant again, each kernel index checked by Numba (an out-of-bounds read that
    happens to land in mapped memory is an IndexError here). A private kernel cache: code
    compiled with bounds checks must not end up in the shared one."""
    env = {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    _sweep(plans, tmp_path, env=env, timeout=3000)


# --- the refusals name the step, the kernel and the field ------------------------------------
def _step(manifest: dict, key: str) -> dict:
    """The first step whose kernel (or name) is ``key``."""
    return next(s for s in manifest["steps"] if key in (s["kernel"], s["name"]))


def _scale(key, i, factor):
    def edit(manifest, step, blobs):
        step["params"][key][i] *= factor
    return edit


def _set(key, value):
    def edit(manifest, step, blobs):
        step["params"][key] = value
    return edit


def _poke(weight, value):
    """Set the largest entry of an index table to ``value`` (blob contents, re-checksummed)."""
    def edit(manifest, step, blobs):
        b = blobs[step["weights"][weight]] = np.array(blobs[step["weights"][weight]])
        b.reshape(-1)[np.argmax(b)] = value
    return edit


def _swap(weight, other):
    def edit(manifest, step, blobs):
        step["weights"][weight] = step["weights"][other]
    return edit


def _unset(key):
    def edit(manifest, step, blobs):
        del step["params"][key]
    return edit


def _kernel(kernel):
    def edit(manifest, step, blobs):
        step["kernel"] = kernel
    return edit


def _reblob(weight, shape=None, dtype=None):
    """Describe weight ``weight``'s blob with another shape (a function of the old one) or
    dtype: the same bytes read another way, or fewer of them."""
    def edit(manifest, step, blobs):
        entry = manifest["blobs"][step["weights"][weight]]
        if dtype is not None:
            entry["dtype"] = dtype
        if shape is not None:
            entry["shape"] = shape(entry["shape"])
        entry["nbytes"] = int(np.prod(entry["shape"])) * np.dtype(entry["dtype"]).itemsize
    return edit


def _retensor(key, i, shape=None, dtype=None):
    """Describe the step's ``key`` ("inputs"/"outputs") tensor ``i`` with another shape (a
    function of the old one; fewer bytes or as many) or dtype (of the same size); the graph's
    inputs and outputs follow."""
    def edit(manifest, step, blobs):
        name = step[key][i]
        t = manifest["tensors"][name]
        if dtype is not None:
            t["dtype"] = dtype
        if shape is not None:
            t["shape"] = shape(t["shape"])
        t["nbytes"] = int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize
        for io in manifest["inputs"] + manifest["outputs"]:
            if io["name"] == name:
                io.update(shape=t["shape"], dtype=t["dtype"])
    return edit


def _last(f):
    return lambda shape: shape[:-1] + [f(shape[-1])]


def _swapdims(i, j):
    def f(shape):
        shape = list(shape)
        shape[i], shape[j] = shape[j], shape[i]
        return shape
    return f


REFUSALS = [
    ("layout", "x32_pad_nd", _scale("run", 1, 1000), r"params\['run'\]"),
    ("layout", "x32_pad_nd", _poke("row_src", 99), r"weight 'row_src' holds indices .*99"),
    ("layout", "x8_pad_nd", _poke("col_src", -2), r"weight 'col_src' holds indices -2"),
    ("layout", "x32_copy_strided_nd", _scale("counts", 0, 1000), r"counts .* do not cover"),
    ("layout", "x8_copy_strided_nd", _scale("strides", 0, 1000), r"the input \(base"),
    ("layout", "x32_gather", _poke("in1", 4), r"the constant indices .*4"),
    ("layout", "x32_concat", _scale("inners", 0, 2), r"operand 0 .* is not"),
    ("layout", "x32_transpose_b2d_tiled", _set("lane", 1), r"params\['lane'\]=1"),
    ("elementwise", "f32_vbinary_add_rows_relu", _scale("a_strides", 0, 1000),
     r"operand a \(a_strides"),
    ("elementwise", "f32_vbinary_sub_bcast_minmax", _scale("b_strides", 5, 2),
     r"innermost step"),
    ("elementwise", "f32_vrelu", _set("code", 99), r"params\['code'\]=99"),
    ("elementwise", "np_binary_add", _set("p0", "x"), r"params\['p0'\]='x'"),
    ("reduce", "f32_reduce_sum_nd", _scale("out_strides", 4, 1000), r"the output \(out_strides"),
    ("reduce", "f32_reduce_mean_ori", _set("red", 9),
     r"reads .* values"),
    ("reduce", "f32_softmax_lastaxis", _set("length", 7), r"softmax plan"),
    ("reduce", "np_reduce_sum", _set("axes", [5]), r"params\['axes'\]"),
    ("gemm", "f32_gemm_4x32", _set("sam", 7000), r"A \(sam=7000"),
    ("gemm", "f32_gemm_4x32_packb", _set("nr", 17), r"params\['nr'\]=17"),
    ("gemm", "f32_gemm_4x32_packb", _set("sbk", 1000), r"B \(sbk=1000"),
    ("gemm", "f32_matmul_4x16", _set("batch_b", [3]), r"do not broadcast"),
    ("pool", "f32_maxpool2d_nhwc", _scale("kernel", 0, 1000), r"window 3000x3"),
    ("pool", "f32_avgpool2d_nhwc", _set("pads", [1, 1, 1]), r"params\['pads'\]"),
    ("pool", "f32_avgpool2d_nhwc", _set("pads", [1, -1, 1, 1]), r"params\['pads'\]"),
    ("pool", "f32_maxpool2d_nhwc", _unset("dilations"), r"params\['dilations'\] is missing"),
    ("pool", "f32_avgpool2d_nhwc", _kernel("f32_maxpool2d_nhwc"),
     r"params\['dilations'\] is missing"),
    ("pool", "f32_maxpool2d_nhwc", _set("strides", [1 << 30, 1]), r"window 3x3 strides"),
    ("pool", "f32_maxpool2d_nhwc", _set("kernel", [1 << 40, 3]), r"params\['kernel'\]"),
    ("resize", "f32_resize_bilinear_nhwc", _swap("y_index", "x_index"), r"weight 'y_index'"),
    ("resize", "x32_resize_nearest_nhwc", _poke("x_index", 5), r"weight 'x_index' holds"),
] + [
    # conv: igemm (constant residual: conv2d_3; run-time residual: conv2d_4; grouped: conv2d_5)
    ("conv", "conv2d_3", _poke("rowmap", 99), r"weight 'rowmap' holds indices .*99"),
    ("conv", "conv2d_3", _poke("colmap", -2), r"weight 'colmap' holds indices -2"),
    ("conv", "conv2d_3", _set("group", 0), r"params\['group'\]=0"),
    ("conv", "conv2d_3", _set("group", 5), r"params\['group'\]=5 does not divide"),
    ("conv", "conv2d_3", _set("group", -1), r"params\['group'\]=-1"),
    ("conv", "conv2d_3", _set("step", 1000), r"params\['step'\]=1000"),
    ("conv", "conv2d_3", _set("act", 8), r"params\['act'\]=8"),
    ("conv", "conv2d_3", _set("act_params", [0.0]), r"params\['act_params'\]"),
    ("conv", "conv2d_3", _set("act_params", ["a", 1]), r"params\['act_params'\]"),
    ("conv", "conv2d_3", _set("has_residual", "yes"), r"params\['has_residual'\]"),
    ("conv", "conv2d_3", _set("work", -1), r"params\['work'\]=-1"),
    ("conv", "conv2d_3", _set("in_nchw", True), r"weight 'colmap' holds indices"),
    ("conv", "conv2d_3", _set("in_nchw", "no"), r"params\['in_nchw'\]"),
    ("conv", "conv2d_3", _reblob("w", dtype="int32"), r"weight 'w' \(packed weights\) is int32"),
    ("conv", "conv2d_3", _reblob("rowmap", dtype="float32"), r"weight 'rowmap' is float32"),
    ("conv", "conv2d_3", _reblob("colmap", _last(lambda d: d // 2), "int64"),
     r"weight 'colmap' is int64"),
    ("conv", "conv2d_3", _reblob("w", _last(lambda d: d - 1)),
     r"weight 'w' \(packed weights\) has shape"),
    ("conv", "conv2d_3", _reblob("rowmap", lambda s: [s[0] - 1, s[1]]),
     r"weight 'rowmap' has shape .* needs 7 rows"),
    ("conv", "conv2d_3", _reblob("colmap", lambda s: [s[0], 0]),
     r"weight 'colmap' has shape .* at least 1 columns"),
    ("conv", "conv2d_3", _reblob("bias", _last(lambda d: d - 1)), r"weight 'bias' has shape"),
    ("conv", "conv2d_3", _reblob("residual", _last(lambda d: d - 1)), r"the residual has shape"),
    ("conv", "conv2d_3", _swap("residual", "bias"), r"the residual has shape"),
    ("conv", "conv2d_3", _retensor("outputs", 0, _swapdims(1, 2)),
     r"weight 'rowmap' has shape .* needs 9 rows"),
    ("conv", "conv2d_3", _retensor("outputs", 0, dtype="int32"), r"the output is int32"),
    ("conv", "conv2d_3", _retensor("outputs", 0, lambda s: s[:3]), r"the output .* rank 4"),
    ("conv", "conv2d_4", _retensor("inputs", 1, _last(lambda d: d - 1)),
     r"the residual has shape"),
    ("conv", "conv2d_4", _retensor("inputs", 1, dtype="int32"), r"the residual is int32"),
    ("conv", "conv2d_5", _set("group", 1), r"weight 'w' \(packed weights\) has shape"),
    ("conv", "conv2d_5", _set("group", 3), r"params\['group'\]=3 does not divide"),
    ("conv", "conv2d_5", _set("group", 9), r"params\['group'\]=9"),
    # conv + instance norm + add in one step
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_inputs", []),
     r"2 inputs for the conv's 1 and params\['norm_inputs'\]=\[\]"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_inputs", ["residual"] * 2),
     r"params\['norm_inputs'\]=.*distinct"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_inputs", ["scale"]),
     r"the scale input has 672 values"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_epsilon", "x"),
     r"params\['norm_epsilon'\]='x'"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_act", -1),
     r"params\['norm_act'\]=-1"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _set("norm_p1", [1]),
     r"params\['norm_p1'\]"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _reblob("norm_scale", _last(lambda d: 15)),
     r"weight 'norm_scale' has 15 values"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _reblob("norm_bias", dtype="int32"),
     r"weight 'norm_bias' is int32"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _retensor("inputs", 1, _swapdims(1, 2)),
     r"the norm's residual has shape"),
    ("conv", "f32_conv2d_igemm_16x16_instnorm_add", _poke("rowmap", 6),
     r"weight 'rowmap' holds indices .*6"),
    # kdot
    ("conv", "f32_conv2d_kdot4_16x4_minmax", _poke("colmap", 9), r"weight 'colmap' holds .*9"),
    ("conv", "f32_conv2d_kdot4_16x4_minmax", _set("group", 2), r"params\['group'\]=2"),
    ("conv", "f32_conv2d_kdot4_16x4_minmax", _reblob("wtap", _last(lambda d: 8)),
     r"weight 'wtap' has shape"),
    ("conv", "f32_conv2d_kdot4_16x4_minmax", _swap("w", "wtap"),
     r"weight 'w' \(kernel-row runs\) has shape"),
    ("conv", "f32_conv2d_kdot4_16x4_minmax", _set("step", 0), r"params\['step'\]=0"),
    ("conv", "conv2d_8", _kernel("f32_conv2d_kdot4_16x4_minmax"),     # 7 outputs: igemm
     r"the output .* has more than 4 channels"),
    # pix (planar row ring, folded taps)
    # the row ring and column plan are rebuilt at bind from these geometry params
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("kernel", [9]), r"params\['kernel'\]=\[9\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("kernel", [5, 5]),
     r"tables .* do not fit output"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("pads", [4, 4, 4, 1 << 20]),
     r"params\['pads'\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("pads", [40, 4, 40, 4]),
     r"tables \[85, 3\]/\[15, 3\] do not fit output rows and columns \[7, 9\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("upsample", 0), r"params\['upsample'\]=0"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("pad_mode", "wrap"), r"params\['pad_mode'\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("strides", [1, 0]), r"params\['strides'\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("dilations", None), r"params\['dilations'\]"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("in_nchw", True), r"tables .* do not fit"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _set("out_nchw", True), r"needs batch 1 and 3 chan"),
    ("conv", "f32_conv2d_pix_64x3_minmax", _reblob("w", _last(lambda d: d - 1)),
     r"weight 'w' \(weight bank\) has shape"),
    ("conv", "f32_conv2d_pixup2_32x4_minmax", _set("upsample", 1),
     r"tables .* do not fit output"),
    ("conv", "f32_conv2d_pixup2_32x4_minmax", _kernel("f32_conv2d_pix_64x4_minmax"),
     r"weight 'w' \(weight bank\) has shape"),
    # depthwise
    ("conv", "f32_dwconv2d_minmax", _set("mult", 0), r"params\['mult'\]=0"),
    ("conv", "f32_dwconv2d_minmax", _set("mult", 2), r"params\['mult'\]=2: output channels"),
    ("conv", "f32_dwconv2d_minmax", _set("group", 0), r"params\['group'\]=0"),
    ("conv", "f32_dwconv2d_minmax", _poke("rowmap", 6), r"weight 'rowmap' holds .*6"),
    ("conv", "f32_dwconv2d_minmax", _reblob("w", _last(lambda d: d - 1)),
     r"weight 'w' \(packed weights\) has shape"),
    ("conv", "conv2d_6", _kernel("f32_dwconv2d_minmax"), r"17x17 taps; the kernel holds at most"),
    # transposed
    ("conv", "f32_conv_transpose2d_igemm_16x16_minmax", _set("step", 0), r"params\['step'\]=0"),
    ("conv", "f32_conv_transpose2d_igemm_16x16_minmax", _set("step", 1 << 41),
     r"params\['step'\]"),
    ("conv", "f32_conv_transpose2d_igemm_16x16_minmax", _poke("colmap", 7),
     r"weight 'colmap' holds .*7"),
    ("conv", "f32_conv_transpose2d_igemm_16x16_minmax", _set("group", 0),
     r"params\['group'\]=0"),
    # norm
    ("norm", "f32_instance_norm_nhwc", _reblob("scale", _last(lambda d: d - 1)),
     r"weight 'scale' has 23 values"),
    ("norm", "f32_instance_norm_nhwc", _reblob("bias", dtype="int32"), r"weight 'bias' is int32"),
    ("norm", "f32_instance_norm_nhwc", _set("inputs", ["scale"]),
     r"1 inputs for x and params\['inputs'\]"),
    ("norm", "f32_instance_norm_nhwc", _set("inputs", "sb"), r"params\['inputs'\]='sb'"),
    ("norm", "f32_instance_norm_nhwc", _set("epsilon", None), r"params\['epsilon'\]=None"),
    ("norm", "f32_instance_norm_nhwc", _set("act", 9), r"params\['act'\]=9"),
    ("norm", "f32_instance_norm_nhwc", _retensor("outputs", 0, _last(lambda d: d - 1)),
     r"the output has shape .* needs \[2, 5, 6, 24\]"),
    ("norm", "f32_instance_norm_nhwc", _retensor("outputs", 0, dtype="int32"),
     r"the output is int32"),
    ("norm", "f32_instance_norm_nhwc_relu", _retensor("inputs", 1, lambda s: [12]),
     r"the scale input has 12 values"),
    ("norm", "f32_instance_norm_nhwc_relu", _retensor("inputs", 2, dtype="int32"),
     r"the bias input is int32"),
    ("norm", "f32_instance_norm_nhwc_relu", _set("inputs", ["scale", "style_scale"]),
     r"the scale is both"),
    ("norm", "instance_norm_5", _reblob("style_scale", _last(lambda d: d - 1)),
     r"weight 'style_scale' .* does not give 24 channels"),
    ("norm", "instance_norm_5", _retensor("inputs", 1, lambda s: [2, 1]),
     r"the style vector of the scale has 2 elements"),
    ("norm", "instance_norm_5", _swap("style_scale", "bias"),
     r"weight 'style_scale' has shape \[24\]; the kernel needs rank 2"),
    ("norm", "f32_instance_norm_nchw", _set("inputs", ["style_scale"]),
     r"1 inputs for x and params\['inputs'\]"),
    ("norm", "f32_instance_norm_nchw", _retensor("outputs", 0, _swapdims(2, 3)),
     r"the output has shape"),
    ("norm", "f32_instance_norm_nchw", _retensor("inputs", 0, lambda s: [1, 3, 0, 6]),
     r"the input \[1, 3, 0, 6\] is empty"),
    ("norm", "f32_batch_norm_nhwc", _reblob("b", _last(lambda d: d - 1)),
     r"weight 'b' has shape"),
    ("norm", "f32_batch_norm_nhwc", _reblob("a", dtype="int32"),
     r"weight 'a' is int32"),
    ("norm", "f32_batch_norm_nhwc", _retensor("outputs", 0, _last(lambda d: 12)),
     r"the output has shape"),
    ("norm", "f32_batch_norm_nhwc", _set("p0", "x"), r"params\['p0'\]='x'"),
    ("norm", "f32_batch_norm_nhwc_rt_sigmoid", _retensor("inputs", 1, lambda s: [20]),
     r"operand 3 \(mean\) has shape"),
    ("norm", "f32_batch_norm_nhwc_rt_sigmoid", _reblob("in1", dtype="int32"),
     r"operand 1 \(scale\) is int32"),
    ("norm", "f32_batch_norm_nhwc_rt_sigmoid", _set("epsilon", [1]), r"params\['epsilon'\]"),
    # multistyle26 (64x96)
    ("ms26", "/contract.0/Conv", _poke("rowmap", 64), r"weight 'rowmap' holds .*64"),
    ("ms26", "/contract.0/Conv", _set("in_nchw", False), r"weight 'rowmap' holds"),
    ("ms26", "/contract.0/Conv", _set("group", 0), r"params\['group'\]=0"),
    ("ms26", "/contract.0/Conv", _reblob("norm_style_bias", _last(lambda d: d - 1)),
     r"weight 'norm_style_bias' .* does not give 32 channels"),
    ("ms26", "/contract.1/Conv", _set("norm_inputs", ["style_scale"]),
     r"3 inputs for the conv's 1"),
    ("ms26", "/res.0.1/Conv", _set("group", 2), r"params\['group'\]=2"),       # Winograd
    ("ms26", "/res.0.1/Conv", _reblob("colmap", dtype="float32"), r"weight 'colmap' is float32"),
    ("ms26", "/expand.0/Conv", _set("pads", [1, 1, 1, 1 << 17]), r"params\['pads'\]"),
    ("ms26", "/expand.0/Conv", _set("out_nchw", False), r"the output .* needs batch"),
    ("ms26", "/expand.2/Conv", _set("kernel", [9, 7]), r"tables .* do not fit output"),
    ("ms26", "f32_instance_norm_nchw_sigmoid", _set("inputs", ["style_bias"]),
     r"params\['inputs'\]"),
]


def _plan(request, plans, family):
    return request.getfixturevalue("ms26_plan") if family == "ms26" else plans[family]


@pytest.mark.parametrize("family,key,edit,match", REFUSALS,
                         ids=[f"{k}-{m[:24]}" for _, k, _, m in REFUSALS])
def test_refusal_names_step_kernel_and_field(request, plans, tmp_path, family, key, edit, match):
    _, plan = _plan(request, plans, family)
    manifest = json.loads(json.dumps(plan.manifest))
    blobs = list(plan.blobs)
    step = _step(manifest, key)
    edit(manifest, step, blobs)
    edited = tmp_path / "edited.mplan"
    _write(edited, manifest, blobs)
    loaded = me.Plan.load(edited)                       # the schema sees nothing wrong
    with pytest.raises(me.PlanFormatError) as info:     # NOTE: binding runs no kernel
        me.Session(loaded)
    msg = str(info.value)
    assert f"step {step['name']!r} (kernel {step['kernel']!r})" in msg, msg
    assert re.search(match, msg), msg


def test_refusals_in_the_worker(request, plans, tmp_path):
    """The targeted edits again, loaded and run by the worker: had a check gone missing, the
    kernel would run there (a crash is seen as such) instead of in this process."""
    cases, paths = [], []
    for i, (family, key, edit, match) in enumerate(REFUSALS):
        try:
            _, plan = _plan(request, plans, family)
        except pytest.skip.Exception:
            continue                                    # no multistyle26 here
        manifest = json.loads(json.dumps(plan.manifest))
        blobs = list(plan.blobs)
        step = _step(manifest, key)
        edit(manifest, step, blobs)
        path = tmp_path / f"refusal{i}.mplan"
        _write(path, manifest, blobs)
        cases.append((path, step, match))
        paths.append(path)
    verdicts = _run_worker(paths, tmp_path)
    wrong = []
    for path, step, match in cases:
        verdict = verdicts[str(path)]
        if not (verdict.startswith("engine-error PlanFormatError") and
                f"step {step['name']!r} (kernel {step['kernel']!r})" in verdict and
                re.search(match, verdict)):
            wrong.append(f"{path.name} ({step['name']}, {match}): {verdict}")
    assert not wrong, "\n".join(wrong)


def test_empty_reduction_with_a_huge_axis_runs_at_once(tmp_path):
    """An empty input through the nd reduction with a tampered 2^40 axis before the empty one
    (the output walk has nothing to check): the kernel would loop for hours; the binder hands
    it an empty walk, the result (zeros) is the same."""
    b = GraphBuilder("empty")
    x = b.input("x", (2, 0, 3, 4))
    plan = plan_from_graph(b.build(b.node(Op.REDUCE_SUM, x, axes=(0, 2))))
    manifest = json.loads(json.dumps(plan.manifest))
    step = _step(manifest, "f32_reduce_sum_nd")
    assert step["params"]["shape"][:4] == [1, 1, 2, 0]
    step["params"]["shape"][0] = 1 << 40
    path = tmp_path / "empty.mplan"
    _write(path, manifest, plan.blobs)
    assert _run_worker([path], tmp_path, timeout=120)[str(path)] == "ran"


def test_runtime_gather_index_out_of_range_is_an_engine_error(plans):
    sess = me.Session(plans["layout"][0], threads=1)
    feeds = {a.name: np.zeros(a.shape, np.dtype(s["dtype"]))
             for a, s in zip(sess.get_inputs(), sess.plan.inputs)}
    sess.run(None, feeds)
    feeds["idx"] = np.array([0, 1, 9, 2], np.int64)          # axis 1 of t has 9 rows
    with pytest.raises(me.EngineError, match="out of range for an axis of 9"):
        sess.run(None, feeds)
    with pytest.raises(IndexError):                           # still an IndexError as before
        sess.run(None, feeds)


def test_worker_sees_writes_outside_the_arena():
    from tests.fuzz import load_tampered as w
    w._arenas.clear()
    arena = w._guarded_arena(100)
    assert w._guards_intact() is None
    raw, start, n = w._arenas[0]
    assert arena.ctypes.data % 64 == 0 and arena.size == 100
    raw[start + n] = 0                                        # one byte past the end
    assert "past the end" in w._guards_intact()
    raw[start + n] = w.PATTERN
    raw[start - 1] = 0
    assert "before the arena" in w._guards_intact()
    w._arenas.clear()
