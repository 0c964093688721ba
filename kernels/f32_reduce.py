"""fp32 reductions (REDUCE_SUM / REDUCE_MEAN over any axes) and SOFTMAX over any axis.

Compile time, :func:`reduce_plan` drops size-1 axes and merges adjacent axes that are both
reduced or both kept. One run of reduced axes gives ``[outer, red, inner]`` (kind ``ori``,
e.g. NHWC spatial mean = ``[N, H*W, C]``, last axis = ``[rows, L, 1]``); anything else (kind
``nd``, e.g. axes (0, 2)) is walked as up to 6 axes with output strides 0 on reduced axes.
Softmax uses the same ``[outer, L, inner]`` split of its axis.

Sums accumulate in float64 (the reference's precision); ``inner > 1`` accumulates whole
vectors of ``inner`` lanes so the loop still runs over contiguous memory. Softmax subtracts the
maximum (numerically stable), exponentiates in float32 and sums in float64.

Layout contract: ``x``: f32[...] flattened, C-contiguous, read only; ``out``: f32 flattened,
may not alias ``x``; scratch arrays come from the binder (allocated once).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import jit, pjit, use_parallel
from kernels.f32_elementwise import exp_f32, readonly

F32 = np.float32
U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code
MAX_RANK = 6
# NOTE: inner lanes per task: a 512-lane float64 accumulator (4 KiB) stays in L1.
CHUNK = 512


def _build(parallel: bool):
    loop = prange if parallel else range
    deco = pjit if parallel else jit

    @deco
    def reduce_ori(x, out, outer, red, inner, scale, acc):
        """out[o, i] = scale * sum_r x[o, r, i]; acc: f64[outer * inner] scratch."""
        if inner == 1:
            for o in loop(outer):
                s = 0.0
                for r in range(red):
                    s += x[U64(o * red + r)]
                out[o] = np.float32(s * scale)
            return
        nchunk = (inner + CHUNK - 1) // CHUNK
        for t in loop(outer * nchunk):
            o, k = t // nchunk, t % nchunk
            i0, i1 = k * CHUNK, min(inner, (k + 1) * CHUNK)
            a0 = o * inner
            for i in range(i0, i1):
                acc[a0 + i] = 0.0
            for r in range(red):
                base = (o * red + r) * inner
                for i in range(i0, i1):
                    acc[U64(a0 + i)] += x[U64(base + i)]
            for i in range(i0, i1):
                out[a0 + i] = np.float32(acc[a0 + i] * scale)

    @deco
    def softmax(x, out, outer, length, inner, mx, sm):
        """Softmax over the middle axis of [outer, length, inner]; mx: f32, sm: f64
        [outer * inner] scratch (unused when inner == 1)."""
        one = np.float32(1)
        if inner == 1:
            for o in loop(outer):
                b = o * length
                m = x[b]
                for i in range(1, length):
                    v = x[U64(b + i)]
                    m = v if v > m else m
                s = 0.0
                for i in range(length):
                    e = exp_f32(x[U64(b + i)] - m)
                    out[U64(b + i)] = e
                    s += e
                r = np.float32(1.0 / s)
                for i in range(length):
                    out[U64(b + i)] *= r
            return
        for o in loop(outer):
            a0 = o * inner
            b = o * length * inner
            for i in range(inner):
                mx[a0 + i] = x[b + i]
                sm[a0 + i] = 0.0
            for l in range(1, length):
                for i in range(inner):
                    v = x[U64(b + l * inner + i)]
                    m = mx[U64(a0 + i)]
                    mx[U64(a0 + i)] = v if v > m else m
            for l in range(length):
                for i in range(inner):
                    e = exp_f32(x[U64(b + l * inner + i)] - mx[U64(a0 + i)])
                    out[U64(b + l * inner + i)] = e
                    sm[U64(a0 + i)] += e
            for i in range(inner):
                mx[a0 + i] = np.float32(one / sm[a0 + i])        # reuse as 1 / sum
            for l in range(length):
                for i in range(inner):
                    out[U64(b + l * inner + i)] *= mx[U64(a0 + i)]

    return reduce_ori, softmax


class _Variants:
    def __init__(self, parallel: bool) -> None:
        self.reduce_ori, self.softmax = _build(parallel)


SERIAL = _Variants(False)
PARALLEL = _Variants(True)


@jit
def reduce_nd(x, out, shape, out_str, scale, acc):
    """General reduction: shape, out_str int64[6] (out_str 0 on reduced axes); serial."""
    for j in range(acc.shape[0]):
        acc[j] = 0.0
    idx = 0
    for i0 in range(shape[0]):
        for i1 in range(shape[1]):
            for i2 in range(shape[2]):
                for i3 in range(shape[3]):
                    for i4 in range(shape[4]):
                        o = (i0 * out_str[0] + i1 * out_str[1] + i2 * out_str[2]
                             + i3 * out_str[3] + i4 * out_str[4])
                        s5 = out_str[5]
                        for i5 in range(shape[5]):
                            acc[o + i5 * s5] += x[idx + i5]
                        idx += shape[5]
    for j in range(acc.shape[0]):
        out[j] = np.float32(acc[j] * scale)


# --------------------------------------------------------------------------------------------
# Compile-time plans (plain Python).
def reduce_plan(shape, axes) -> dict:
    """``{"kind": "ori", "outer", "red", "inner", "count"}`` or ``{"kind": "nd", "shape",
    "out_strides", "count"}``; ``count`` is the number of elements reduced into each output."""
    rank = len(shape)
    axes = {a % rank for a in axes} if axes else set(range(rank))
    count = int(np.prod([shape[a] for a in axes], dtype=np.int64)) if axes else 1
    groups: list[list] = []                                  # [size, reduced]
    for ax, d in enumerate(shape):
        if d == 1:
            continue
        red = ax in axes
        if groups and groups[-1][1] == red:
            groups[-1][0] *= d
        else:
            groups.append([d, red])
    flags = [g[1] for g in groups]
    if flags.count(True) <= 1:
        outer = red = inner = 1
        seen = False
        for d, r in groups:
            if r:
                red, seen = d, True
            elif seen:
                inner *= d
            else:
                outer *= d
        return {"kind": "ori", "outer": outer, "red": red, "inner": inner, "count": count}
    if len(groups) > MAX_RANK:
        raise ValueError(f"reducing axes {sorted(axes)} of {tuple(shape)} needs {len(groups)} "
                         f"axes after merging; at most {MAX_RANK} are supported")
    out_str, acc = [0] * len(groups), 1
    for i in range(len(groups) - 1, -1, -1):
        if not groups[i][1]:
            out_str[i] = acc
            acc *= groups[i][0]
    pad = MAX_RANK - len(groups)
    return {"kind": "nd", "shape": [1] * pad + [g[0] for g in groups],
            "out_strides": [0] * pad + out_str, "count": count}


def softmax_plan(shape, axis: int) -> dict:
    axis %= len(shape)
    return {"outer": int(np.prod(shape[:axis], dtype=np.int64)), "length": int(shape[axis]),
            "inner": int(np.prod(shape[axis + 1:], dtype=np.int64))}


def reduce_call(plan: dict, x, out, mean: bool, parallel: bool | None = None,
                threads: int | None = None):
    """``(fn, args)`` for the reduction ``plan`` (scratch allocated here: call at bind time);
    ``parallel`` None: ``use_parallel`` on ``threads`` threads."""
    scale = 1.0 / plan["count"] if mean and plan["count"] else 1.0
    x1, o1 = readonly(x.reshape(-1)), out.reshape(-1)
    acc = np.empty(out.size, np.float64)
    if plan["kind"] == "nd":
        return reduce_nd, (x1, o1, np.array(plan["shape"], np.int64),
                           np.array(plan["out_strides"], np.int64), scale, acc)
    if parallel is None:
        parallel = use_parallel(x.size, out.size, threads)
    k = PARALLEL if parallel else SERIAL
    return k.reduce_ori, (x1, o1, plan["outer"], plan["red"], plan["inner"], scale, acc)


def softmax_call(plan: dict, x, out, parallel: bool | None = None, threads: int | None = None):
    if parallel is None:
        parallel = use_parallel(x.size, plan["outer"], threads)
    k = PARALLEL if parallel else SERIAL
    n = plan["outer"] * plan["inner"] if plan["inner"] > 1 else 1
    return k.softmax, (readonly(x.reshape(-1)), out.reshape(-1), plan["outer"], plan["length"],
                       plan["inner"], np.empty(n, np.float32), np.empty(n, np.float64))


# --------------------------------------------------------------------------------------------
# Whole-array entry points and the kernel table.
def reduce(op: str, x, axes=(), keepdims=True, parallel=None):
    rank = x.ndim
    ax = {a % rank for a in axes} if axes else set(range(rank))
    shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in ax)
    out = np.empty(shape, np.float32)
    fn, args = reduce_call(reduce_plan(x.shape, axes), x, out, op == "reduce_mean", parallel)
    fn(*args)
    return out


def softmax(x, axis=-1, parallel=None):
    out = np.empty_like(x)
    fn, args = softmax_call(softmax_plan(x.shape, axis), x, out, parallel)
    fn(*args)
    return out


def _ref_reduce(op, x, axes=(), keepdims=True, parallel=None):
    return ref.reduce(op, x, axes, keepdims)


def _ref_softmax(x, axis=-1, parallel=None):
    return ref.softmax(x, axis)


# kernel -> (whole-array entry point, numpy reference with the same signature)
KERNELS = {
    "f32_reduce": (reduce, _ref_reduce),         # ori / nd chosen by reduce_plan
    "f32_softmax": (softmax, _ref_softmax),
}
