"""fp32 element-wise kernels: unary maps, binary ops with numpy broadcasting, PReLU.

Every kernel works on flat (1-D) C-contiguous views; binders reshape the IR arrays, so a
handful of signatures serve every rank. One body per kernel, compiled as a serial and a
``prange`` variant (``SERIAL`` / ``PARALLEL``); op and activation are runtime int codes whose
branches sit *outside* the inner loops, so LLVM keeps each loop vectorised.

Broadcasting is described once, at compile time, by :func:`broadcast_plan`: the output shape
and both operands' element strides (0 on broadcast axes), with adjacent axes merged and size-1
axes dropped. The plan picks the fast path:

- ``flat``:   one axis; steps (1, 1) same shape, (1, 0) / (0, 1) one side a scalar
- ``rows``:   two axes [rows, cols], e.g. NHWC + per-channel vector ``[C]`` (strides (0, 1))
- ``nd``:     up to 6 axes, general strided broadcast (innermost axis still a vector loop)

Layout contract: ``a``, ``b``: f32[...] C-contiguous (read only); ``out``: f32[size]
C-contiguous; ``out`` may alias an operand of the output's shape (each element is read before
it is written), never a broadcast one.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import jit, pjit
from mobile_engine.ir.ops import Activation

F32 = np.float32

# Binary op codes (the kernels' ``op`` argument).
ADD, SUB, MUL, DIV, POW, PRELU = range(6)
BINARY_CODES = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "pow": POW, "prelu": PRELU}
# Unary map codes: 0..7 are the Activation codes, then the plain math functions.
SQRT, RECIPROCAL, NEG, EXP = 8, 9, 10, 11
UNARY_CODES = {"relu": int(Activation.RELU), "clip": int(Activation.CLAMP),
               "leaky_relu": int(Activation.LEAKY_RELU), "sigmoid": int(Activation.SIGMOID),
               "tanh": int(Activation.TANH), "hard_sigmoid": int(Activation.HARD_SIGMOID),
               "hard_swish": int(Activation.HARD_SWISH), "sqrt": SQRT,
               "reciprocal": RECIPROCAL, "neg": NEG, "exp": EXP}
# NOTE: elements per parallel task / per activation pass: 16 KiB stays in L1 between the op
# loop and the in-place activation loop.
BLOCK = 4096
MAX_RANK = 6


# --------------------------------------------------------------------------------------------
# Row helpers: one loop per case, the case chosen outside the loop.
@jit
def map_row(src, s0, dst, d0, n, code, p0, p1):
    """dst[d0:d0+n] = f_code(src[s0:s0+n]); code 0 copies. May run in place (src is dst)."""
    zero, one = F32(0), F32(1)
    if code == 0:
        if src is not dst or s0 != d0:
            for i in range(n):
                dst[d0 + i] = src[s0 + i]
    elif code == 1:        # RELU
        for i in range(n):
            v = src[s0 + i]
            dst[d0 + i] = zero if v < zero else v
    elif code == 2:        # CLAMP (lo, hi); NaN passes through
        for i in range(n):
            v = src[s0 + i]
            v = p0 if v < p0 else v
            dst[d0 + i] = p1 if v > p1 else v
    elif code == 3:        # LEAKY_RELU (alpha,)
        for i in range(n):
            v = src[s0 + i]
            dst[d0 + i] = v if v >= zero else v * p0
    elif code == 4:        # SIGMOID
        for i in range(n):
            dst[d0 + i] = one / (one + np.exp(-src[s0 + i]))
    elif code == 5:        # TANH
        for i in range(n):
            dst[d0 + i] = np.tanh(src[s0 + i])
    elif code == 6:        # HARD_SIGMOID (alpha, beta)
        for i in range(n):
            v = src[s0 + i] * p0 + p1
            v = zero if v < zero else v
            dst[d0 + i] = one if v > one else v
    elif code == 7:        # HARD_SWISH: x * clip(x / 6 + 1/2, 0, 1)
        sixth, half = F32(1.0 / 6.0), F32(0.5)
        for i in range(n):
            v = src[s0 + i]
            t = v * sixth + half
            t = zero if t < zero else t
            t = one if t > one else t
            dst[d0 + i] = v * t
    elif code == 8:        # SQRT
        for i in range(n):
            dst[d0 + i] = np.sqrt(src[s0 + i])
    elif code == 9:        # RECIPROCAL
        for i in range(n):
            dst[d0 + i] = one / src[s0 + i]
    elif code == 10:       # NEG
        for i in range(n):
            dst[d0 + i] = -src[s0 + i]
    else:                  # EXP
        for i in range(n):
            dst[d0 + i] = np.exp(src[s0 + i])


@jit
def _op(op, x, y):
    if op == 0:
        return x + y
    if op == 1:
        return x - y
    if op == 2:
        return x * y
    if op == 3:
        return x / y
    if op == 4:
        return x ** y
    return x if x >= F32(0) else x * y      # PRELU: y is the slope


@jit
def binary_row(a, a0, a_step, b, b0, b_step, out, o0, n, op):
    """out[o0:o0+n] = a[a0::a_step] op b[b0::b_step]; steps are 0 (broadcast) or 1.

    NOTE: the op branch inside each loop is loop-invariant; LLVM unswitches it (measured: same
    speed as a plain ``a + b`` loop), so each (step, op) pair runs its own vector loop.
    """
    if a_step == 1 and b_step == 1:
        for i in range(n):
            out[o0 + i] = _op(op, a[a0 + i], b[b0 + i])
    elif b_step == 0 and a_step == 1:
        y = b[b0]
        for i in range(n):
            out[o0 + i] = _op(op, a[a0 + i], y)
    elif a_step == 0 and b_step == 1:
        x = a[a0]
        for i in range(n):
            out[o0 + i] = _op(op, x, b[b0 + i])
    else:
        v = _op(op, a[a0], b[b0])
        for i in range(n):
            out[o0 + i] = v


# --------------------------------------------------------------------------------------------
# Kernels (one body each; serial and parallel variants from _build).
def _build(parallel: bool):
    loop = prange if parallel else range
    deco = pjit if parallel else jit

    @deco
    def vunary(x, out, code, p0, p1):
        """out = f_code(x); x, out: f32[size]."""
        n = out.shape[0]
        for blk in loop((n + BLOCK - 1) // BLOCK):
            s = blk * BLOCK
            map_row(x, s, out, s, min(BLOCK, n - s), code, p0, p1)

    @deco
    def vbinary_flat(a, b, out, a_step, b_step, op, act, p0, p1):
        """out[i] = act(a[i * a_step] op b[i * b_step]); steps 1 or 0 (a scalar operand)."""
        n = out.shape[0]
        for blk in loop((n + BLOCK - 1) // BLOCK):
            s = blk * BLOCK
            m = min(BLOCK, n - s)
            binary_row(a, s * a_step, a_step, b, s * b_step, b_step, out, s, m, op)
            if act != 0:
                map_row(out, s, out, s, m, act, p0, p1)

    @deco
    def vbinary_rows(a, b, out, rows, cols, a_rs, a_cs, b_rs, b_cs, op, act, p0, p1):
        """out[r, c] = act(a[r*a_rs + c*a_cs] op b[r*b_rs + c*b_cs]); out: f32[rows*cols]."""
        per = max(1, BLOCK // cols)
        for blk in loop((rows + per - 1) // per):
            r1 = min(rows, (blk + 1) * per)
            for r in range(blk * per, r1):
                binary_row(a, r * a_rs, a_cs, b, r * b_rs, b_cs, out, r * cols, cols, op)
            if act != 0:
                s = blk * per * cols
                map_row(out, s, out, s, r1 * cols - s, act, p0, p1)

    @deco
    def vbinary_nd(a, b, out, shape, a_str, b_str, op, act, p0, p1):
        """General broadcast: shape, a_str, b_str: int64[6] (leading axes of size 1, stride 0);
        the innermost axis has strides 0 or 1."""
        cols = shape[5]
        rows = out.shape[0] // cols if cols else 0
        for r in loop(rows):
            ia, ib, div = 0, 0, 1
            for ax in range(4, -1, -1):
                i = (r // div) % shape[ax]
                div *= shape[ax]
                ia += i * a_str[ax]
                ib += i * b_str[ax]
            binary_row(a, ia, a_str[5], b, ib, b_str[5], out, r * cols, cols, op)
            if act != 0:
                map_row(out, r * cols, out, r * cols, cols, act, p0, p1)

    return vunary, vbinary_flat, vbinary_rows, vbinary_nd


class _Variants:
    def __init__(self, parallel: bool) -> None:
        self.vunary, self.vbinary_flat, self.vbinary_rows, self.vbinary_nd = _build(parallel)


SERIAL = _Variants(False)
PARALLEL = _Variants(True)


def variant(work: int) -> _Variants:
    """The serial or parallel kernels for ``work`` output elements (kernels/config threshold)."""
    from kernels.config import PARALLEL_MIN_WORK
    return PARALLEL if work >= PARALLEL_MIN_WORK else SERIAL


# --------------------------------------------------------------------------------------------
# Compile-time broadcast analysis (plain Python).
def broadcast_plan(a_shape, b_shape) -> dict:
    """How to walk ``a op b``: ``{"kind", "shape", "a_strides", "b_strides"}`` (lists of ints).

    Axes of size 1 are dropped and adjacent axes merged while both operands stay linear across
    them. ``kind`` is ``"flat"`` (one axis, steps 0/1), ``"rows"`` (two axes, unit or zero
    column steps) or ``"nd"`` (padded to rank 6 with leading size-1 axes).
    """
    out_shape = np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    rank = len(out_shape)

    def strides(shape):
        shape = (1,) * (rank - len(shape)) + tuple(shape)
        st, acc = [0] * rank, 1
        for ax in range(rank - 1, -1, -1):
            st[ax] = acc if shape[ax] != 1 else 0
            acc *= shape[ax]
        return st

    sa, sb = strides(a_shape), strides(b_shape)
    dims = [(d, x, y) for d, x, y in zip(out_shape, sa, sb) if d != 1]
    merged: list[list[int]] = []
    for d, x, y in dims:
        if merged:
            pd, px, py = merged[-1]
            if px == x * d and py == y * d:        # the outer axis continues the inner one
                merged[-1] = [pd * d, x, y]
                continue
        merged.append([d, x, y])
    if not merged:
        merged = [[1, 0, 0]]                      # a single element
    shape = [m[0] for m in merged]
    a_st = [m[1] for m in merged]
    b_st = [m[2] for m in merged]
    if len(shape) == 1:
        return {"kind": "flat", "shape": shape, "a_strides": a_st, "b_strides": b_st}
    if len(shape) == 2 and a_st[1] in (0, 1) and b_st[1] in (0, 1):
        return {"kind": "rows", "shape": shape, "a_strides": a_st, "b_strides": b_st}
    if a_st[-1] not in (0, 1) or b_st[-1] not in (0, 1):
        # innermost axis broadcast on neither side but strided on one: cannot happen after
        # merging (the innermost non-broadcast axis of a C-contiguous operand has stride 1)
        raise AssertionError((a_shape, b_shape, merged))
    if len(shape) > MAX_RANK:
        raise ValueError(f"broadcast of {tuple(a_shape)} and {tuple(b_shape)} needs "
                         f"{len(shape)} axes after merging; at most {MAX_RANK} are supported")
    pad = MAX_RANK - len(shape)
    return {"kind": "nd", "shape": [1] * pad + shape, "a_strides": [0] * pad + a_st,
            "b_strides": [0] * pad + b_st}


def run_binary(plan: dict, a, b, out, op: int, act: int = 0, p0: float = 0.0,
               p1: float = 0.0, kernels: _Variants | None = None):
    """``(fn, args)`` computing ``out = act(a op b)`` by ``plan`` (flat views, no copies)."""
    k = kernels or variant(out.size)
    a1, b1, o1 = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    p0, p1 = F32(p0), F32(p1)
    shape, sa, sb = plan["shape"], plan["a_strides"], plan["b_strides"]
    if plan["kind"] == "flat":
        return k.vbinary_flat, (a1, b1, o1, sa[0], sb[0], op, act, p0, p1)
    if plan["kind"] == "rows":
        return k.vbinary_rows, (a1, b1, o1, shape[0], shape[1], sa[0], sa[1], sb[0], sb[1],
                                op, act, p0, p1)
    return k.vbinary_nd, (a1, b1, o1, np.array(shape, np.int64), np.array(sa, np.int64),
                          np.array(sb, np.int64), op, act, p0, p1)


def act_params(kind: int, params) -> tuple[float, float]:
    """The kernels' (p0, p1) for an Activation and its params."""
    params = [float(p) for p in params]
    if kind == Activation.CLAMP:
        return params[0], params[1]
    if kind == Activation.LEAKY_RELU:
        return params[0], 0.0
    if kind == Activation.HARD_SIGMOID:
        return params[0], params[1]
    return 0.0, 0.0


# --------------------------------------------------------------------------------------------
# Whole-array entry points (tests, constant folding) and the kernel table.
def unary(x: np.ndarray, name: str, parallel: bool | None = None, **attrs) -> np.ndarray:
    """``out = name(x)`` for a float32 array (attrs as the IR's: min/max, alpha, beta)."""
    code = UNARY_CODES[name]
    p0, p1 = {"clip": (attrs.get("min", -np.inf), attrs.get("max", np.inf)),
              "leaky_relu": (attrs.get("alpha", 0.01), 0.0),
              "hard_sigmoid": (attrs.get("alpha", 0.2), attrs.get("beta", 0.5))}.get(name, (0, 0))
    out = np.empty_like(x)
    k = variant(x.size) if parallel is None else (PARALLEL if parallel else SERIAL)
    k.vunary(x.reshape(-1), out.reshape(-1), code, F32(p0), F32(p1))
    return out


def binary(a: np.ndarray, b: np.ndarray, name: str, act: int = 0, params=(),
           parallel: bool | None = None) -> np.ndarray:
    """``out = act(a name b)`` with numpy broadcasting, float32."""
    plan = broadcast_plan(a.shape, b.shape)
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.float32)
    k = None if parallel is None else (PARALLEL if parallel else SERIAL)
    fn, args = run_binary(plan, a, b, out, BINARY_CODES[name], act, *act_params(act, params),
                          kernels=k)
    fn(*args)
    return out


def _ref_binary(a, b, name, act=0, params=()):
    if name == "prelu":
        return ref.activation(ref.prelu(a, b), act, params)
    return ref.binary(name, a, b, act, params)


def _ref_unary(x, name, **attrs):
    return ref.unary(name, x, **attrs)


# kernel -> (whole-array entry point, numpy reference with the same signature)
KERNELS = {
    "f32_vunary": (unary, _ref_unary),
    "f32_vbinary": (binary, _ref_binary),      # flat / rows / nd chosen by broadcast_plan
}
