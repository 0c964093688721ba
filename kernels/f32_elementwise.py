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
from kernels.activation import Activation, activate_into, exp_f32, tanh_f32  # noqa: F401
from kernels.activation import params as act_params
from kernels.config import jit, pjit

F32 = np.float32
U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code

# Binary op codes (the kernels' ``op`` argument).
ADD, SUB, MUL, DIV, POW, PRELU = range(6)
BINARY_CODES = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "pow": POW, "prelu": PRELU}
# Unary map codes: 0..7 are the Activation codes, then the plain math functions.
SQRT, RECIPROCAL, NEG, EXP = 8, 9, 10, 11
LOG, SOFTPLUS, FLOOR, CEIL, ROUND, SIGN = range(13, 19)
# kernel-id suffix of each activation code (the epilogue a kernel id names)
EPILOGUES = {**dict(enumerate(("", "_relu", "_minmax", "_lrelu", "_sigmoid", "_tanh",
                                "_hsigmoid", "_hswish"))), int(Activation.SILU): "_silu",
             int(Activation.HARD_SWISH_AFFINE): "_hswish_affine"}
UNARY_CODES = {"relu": int(Activation.RELU), "clip": int(Activation.CLAMP),
               "leaky_relu": int(Activation.LEAKY_RELU), "sigmoid": int(Activation.SIGMOID),
               "tanh": int(Activation.TANH), "hard_sigmoid": int(Activation.HARD_SIGMOID),
               "hard_swish": int(Activation.HARD_SWISH), "silu": int(Activation.SILU),
               "sqrt": SQRT,
               "reciprocal": RECIPROCAL, "neg": NEG, "exp": EXP, "log": LOG,
               "softplus": SOFTPLUS, "floor": FLOOR, "ceil": CEIL, "round": ROUND, "sign": SIGN}
# NOTE: elements per parallel task / per activation pass: 16 KiB stays in L1 between the op
# loop and the in-place activation loop.
BLOCK = 4096
MAX_RANK = 6


# --------------------------------------------------------------------------------------------
# Row helpers: one loop per case, the case chosen outside the loop.
@jit
def map_row(src, s0, dst, d0, n, code, p0, p1):
    """dst[d0:d0+n] = f_code(src[s0:s0+n]); code 0 copies; src and dst must not overlap (use
    :func:`act_inplace` for in-place work).

    NOTE: loops index slice views from 0: ``src[s0 + i]`` with a run-time ``s0`` keeps Numba's
    negative-index wraparound in the loop and LLVM does not vectorise it (measured 10-15x).
    """
    _map(src[s0:s0 + n], dst[d0:d0 + n], n, code, p0, p1)


@jit
def act_inplace(buf, s0, n, code, p0, p1):
    """buf[s0:s0+n] = f_code(buf[s0:s0+n]).

    NOTE: one view read and written: with two arguments LLVM's run-time overlap check fails
    for in-place work and the scalar fallback loop runs (measured 3x slower).
    """
    if code != 0:
        v = buf[s0:s0 + n]
        _map(v, v, n, code, p0, p1)


@jit(inline="always")
def _map(x, y, n, code, p0, p1):
    """y[:n] = f_code(x[:n]): the activations (codes 0..7, 12, 19; kernels/activation.py), then the
    plain math functions."""
    one = F32(1)
    if code <= 7 or code == 12 or code == 19:    # the activations (12: SILU, 19: HARD_SWISH_AFFINE)
        activate_into(x, y, n, code, p0, p1)
    elif code == 8:        # SQRT
        for i in range(n):
            y[i] = np.sqrt(x[i])
    elif code == 9:        # RECIPROCAL
        for i in range(n):
            y[i] = one / x[i]
    elif code == 10:       # NEG
        for i in range(n):
            y[i] = -x[i]
    elif code == 11:       # EXP
        for i in range(n):
            y[i] = exp_f32(x[i])
    else:
        _map_math(x, y, n, code)


@jit(inline="always")
def _map_math(x, y, n, code):
    """The math functions after EXP (log and log1p call libm per element: no hot path we know
    of needs them)."""
    zero, one = F32(0), F32(1)
    if code == 13:         # LOG
        for i in range(n):
            y[i] = np.log(x[i])
    elif code == 14:       # SOFTPLUS: log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
        for i in range(n):
            v = x[i]
            y[i] = max(v, zero) + np.log1p(exp_f32(-abs(v)))
    elif code == 15:       # FLOOR
        for i in range(n):
            y[i] = np.floor(x[i])
    elif code == 16:       # CEIL
        for i in range(n):
            y[i] = np.ceil(x[i])
    elif code == 17:       # ROUND: half to even
        for i in range(n):
            y[i] = np.rint(x[i])
    else:                  # SIGN (NaN stays NaN)
        for i in range(n):
            v = x[i]
            y[i] = one if v > zero else -one if v < zero else v


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
    return x if x >= F32(0) else x * y      # PRELU: y is the slope


@jit
def _pow(op, x, y):
    return x ** y


@jit
def binary_block(a, a0, a_rs, a_cs, b, b0, b_rs, b_cs, out, o0, rows, cols, op):
    """out[o0 + r*cols + i] = a[a0 + r*a_rs + i*a_cs] op b[b0 + r*b_rs + i*b_cs] for r < rows,
    i < cols; column steps are 0 (broadcast) or 1.

    NOTE: the op branch inside each loop is loop-invariant; LLVM unswitches it (measured: same
    speed as a plain ``a + b`` loop), so each (pattern, op) pair runs its own vector loop. POW
    calls libm, which stops that unswitching (9x slower for every op), so it has its own loops.
    Indices are unsigned: a signed run-time offset keeps Numba's negative-index wraparound in
    the loop and LLVM then does not vectorise it (10-15x).
    """
    if op == POW:
        _block_loops(a, a0, a_rs, a_cs, b, b0, b_rs, b_cs, out, o0, rows, cols, op, _pow)
    else:
        _block_loops(a, a0, a_rs, a_cs, b, b0, b_rs, b_cs, out, o0, rows, cols, op, _op)


@jit(inline="always")
def _block_loops(a, a0, a_rs, a_cs, b, b0, b_rs, b_cs, out, o0, rows, cols, op, fn):
    if a_cs == 1 and b_cs == 1:
        for r in range(rows):
            ia, ib, io = a0 + r * a_rs, b0 + r * b_rs, o0 + r * cols
            for i in range(cols):
                out[U64(io + i)] = fn(op, a[U64(ia + i)], b[U64(ib + i)])
    elif a_cs == 1:
        for r in range(rows):
            ia, io = a0 + r * a_rs, o0 + r * cols
            y = b[U64(b0 + r * b_rs)]
            for i in range(cols):
                out[U64(io + i)] = fn(op, a[U64(ia + i)], y)
    elif b_cs == 1:
        for r in range(rows):
            ib, io = b0 + r * b_rs, o0 + r * cols
            x = a[U64(a0 + r * a_rs)]
            for i in range(cols):
                out[U64(io + i)] = fn(op, x, b[U64(ib + i)])
    else:
        for r in range(rows):
            io = o0 + r * cols
            v = fn(op, a[U64(a0 + r * a_rs)], b[U64(b0 + r * b_rs)])
            for i in range(cols):
                out[U64(io + i)] = v


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
            binary_block(a, s * a_step, 0, a_step, b, s * b_step, 0, b_step, out, s, 1, m, op)
            if act != 0:
                act_inplace(out, s, m, act, p0, p1)

    @deco
    def vbinary_rows(a, b, out, rows, cols, a_rs, a_cs, b_rs, b_cs, op, act, p0, p1):
        """out[r, c] = act(a[r*a_rs + c*a_cs] op b[r*b_rs + c*b_cs]); out: f32[rows*cols]."""
        per = max(1, BLOCK // cols)
        for blk in loop((rows + per - 1) // per):
            r1 = min(rows, (blk + 1) * per)
            r0 = blk * per
            binary_block(a, r0 * a_rs, a_rs, a_cs, b, r0 * b_rs, b_rs, b_cs, out, r0 * cols,
                         r1 - r0, cols, op)
            if act != 0:
                s = blk * per * cols
                act_inplace(out, s, r1 * cols - s, act, p0, p1)

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
            binary_block(a, ia, 0, a_str[5], b, ib, 0, b_str[5], out, r * cols, 1, cols, op)
            if act != 0:
                act_inplace(out, r * cols, cols, act, p0, p1)

    return vunary, vbinary_flat, vbinary_rows, vbinary_nd


class _Variants:
    def __init__(self, parallel: bool) -> None:
        self.vunary, self.vbinary_flat, self.vbinary_rows, self.vbinary_nd = _build(parallel)


SERIAL = _Variants(False)
PARALLEL = _Variants(True)


def readonly(x: np.ndarray) -> np.ndarray:
    """A read-only view. Every ``*_call`` helper hands inputs to kernels this way, whether they
    are weights (a mapped plan file) or arena tensors, so one Numba signature serves both."""
    v = x.view()
    v.flags.writeable = False
    return v


def variant(work: int, threads: int | None = None) -> _Variants:
    """The serial or parallel kernels for ``work`` output elements on ``threads`` threads
    (``config.use_parallel``)."""
    from kernels.config import use_parallel
    return PARALLEL if use_parallel(work, threads=threads) else SERIAL


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
               p1: float = 0.0, kernels: _Variants | None = None, threads: int | None = None):
    """``(fn, args)`` computing ``out = act(a op b)`` by ``plan`` (flat views, no copies);
    ``kernels`` (tests) overrides the variant ``threads`` and the size choose."""
    k = kernels or variant(out.size, threads)
    a1, b1, o1 = readonly(a.reshape(-1)), readonly(b.reshape(-1)), out.reshape(-1)
    p0, p1 = F32(p0), F32(p1)
    shape, sa, sb = plan["shape"], plan["a_strides"], plan["b_strides"]
    if plan["kind"] == "flat":
        return k.vbinary_flat, (a1, b1, o1, sa[0], sb[0], op, act, p0, p1)
    if plan["kind"] == "rows":
        return k.vbinary_rows, (a1, b1, o1, shape[0], shape[1], sa[0], sa[1], sb[0], sb[1],
                                op, act, p0, p1)
    return k.vbinary_nd, (a1, b1, o1, np.array(shape, np.int64), np.array(sa, np.int64),
                          np.array(sb, np.int64), op, act, p0, p1)


# --------------------------------------------------------------------------------------------
# Whole-array entry points (tests, constant folding) and numpy references (kernels/table.py).
def unary(x: np.ndarray, name: str, parallel: bool | None = None, **attrs) -> np.ndarray:
    """``out = name(x)`` for a float32 array (attrs as the IR's: min/max, alpha, beta)."""
    code = UNARY_CODES[name]
    p0, p1 = {"clip": (attrs.get("min", -np.inf), attrs.get("max", np.inf)),
              "leaky_relu": (attrs.get("alpha", 0.01), 0.0),
              "hard_sigmoid": (attrs.get("alpha", 0.2), attrs.get("beta", 0.5))}.get(name, (0, 0))
    out = np.empty_like(x)
    k = variant(x.size) if parallel is None else (PARALLEL if parallel else SERIAL)
    k.vunary(readonly(x.reshape(-1)), out.reshape(-1), code, F32(p0), F32(p1))
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
