"""Activations in one place: the codes, the float32 evaluators every kernel epilogue runs, the
parameter packing, and the numpy reference.

Codes (``Activation``; ``mobile_engine.ir.ops.Activation`` holds the same names and values,
tests/kernels/test_activation.py holds them equal): NONE 0, RELU 1, CLAMP 2 (lo, hi),
LEAKY_RELU 3 (alpha), SIGMOID 4, TANH 5, HARD_SIGMOID 6 (alpha, beta), HARD_SWISH 7, SILU 12,
HARD_SWISH_AFFINE 19 (scale, shift: ``hard_swish(x) * scale + shift``, PP-LCNetV3's learnable
affine block after its activation, ``passes/fuse_activation_affine.py``). Kernels
take a code and two float32 params ``p0, p1`` (:func:`params`; unused ones 0).

Evaluators: :func:`activate` (one value; inlined, so a literal code folds to one branch),
:func:`activate_span` (a row in place, one vector loop per code; the conv epilogues call it) and
:func:`activate_into` (src -> dst; the element-wise kernels). Clamps are compare-and-select, so
NaN passes through. :func:`reference` is the numpy truth, the same float32 steps.

Hard swish is ``v * clip(f32(v * f32(1/6)) + 0.5, 0, 1)``: the product rounded, then the add,
as onnxruntime computes it (bit for bit, measured with onnxruntime 1.32 over 2.1 M values; ``v /
6`` differs in 14 % of them, and a fused multiply-add in 17 %). The kernels compile with
``contract`` (config.FASTMATH), which would fuse the multiply and the add: clamping the product
to [-1/2, 1/2] *before* adding 1/2 puts a select between them, and gives the same value as
clamping the sum (both roundings are monotonic and 1/2 + 1/2, -1/2 + 1/2 are exact).

sigmoid and tanh use :func:`exp_f32` / :func:`tanh_f32`, plain float32 arithmetic that LLVM
vectorises (``np.exp``, ``np.tanh`` are a libm call per element).
"""
from __future__ import annotations

import enum

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from kernels.config import jit

F32 = np.float32
U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code


class Activation(enum.IntEnum):
    """Activations a producer applies in its epilogue; the int is the kernels' code."""
    NONE = 0
    RELU = 1
    CLAMP = 2          # params (lo, hi): ReLU6 and Clip
    LEAKY_RELU = 3     # params (alpha,)
    SIGMOID = 4
    TANH = 5
    HARD_SIGMOID = 6   # params (alpha, beta)
    HARD_SWISH = 7
    # 8..11 are the element-wise kernels' math codes (sqrt, reciprocal, neg, exp)
    SILU = 12          # x * sigmoid(x) (swish), YOLO's activation
    # 13..18 are the element-wise kernels' math codes (log, softplus, floor, ceil, round, sign)
    HARD_SWISH_AFFINE = 19  # params (scale, shift): hard_swish(x) * scale + shift


CODES = tuple(int(a) for a in Activation)


def params(kind, values=()) -> tuple[float, float]:
    """The kernels' (p0, p1) for activation ``kind`` and its IR params (unused ones are 0;
    HARD_SIGMOID defaults to (0.2, 0.5) and LEAKY_RELU to 0.01, as in ONNX)."""
    kind = Activation(kind)
    p = [float(v) for v in values]
    if kind is Activation.HARD_SIGMOID and not p:
        p = [0.2, 0.5]
    if kind is Activation.LEAKY_RELU and not p:
        p = [0.01]
    if kind is Activation.CLAMP and len(p) != 2:
        raise ValueError(f"CLAMP needs (lo, hi), got {values}")
    if kind is Activation.HARD_SWISH_AFFINE and len(p) != 2:
        raise ValueError(f"HARD_SWISH_AFFINE needs (scale, shift), got {values}")
    return tuple((p + [0.0, 0.0])[:2])


# --------------------------------------------------------------------------------------------
# exp without libm: LLVM vectorises it (no SVML here: np.exp is a scalar expf call per element)
@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the low 32 bits of the integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        i32 = context.cast(builder, args[0], sig.args[0], types.int32)
        return builder.bitcast(i32, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _bits_of_f32(typingctx, x):
    """The IEEE bits of the float32 ``x`` as an int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(x), codegen


@jit(inline="always")
def exp_f32(x):
    """exp(x) for float32 in plain arithmetic (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2,
    degree-6 polynomial, about 1 ulp); inf above 88.72, 0 below -104, NaN passes.

    NOTE: 2^n is applied by adding n to p's exponent bits, not by multiplying by a power of
    two: with fastmath reassociation LLVM may fold two such factors into one that overflows.
    Results below the normal range (x < -87.3) take a rounded power-of-two product instead.
    """
    lo, hi = F32(-104.0), F32(89.0)
    xc = lo if x < lo else x
    xc = hi if xc > hi else xc
    xc = xc if xc == xc else F32(0)
    n = np.floor(xc * F32(1.44269504088896341) + F32(0.5))
    r = xc - n * F32(0.693359375) + n * F32(2.12194440e-4)
    z = r * r
    p = ((((F32(1.9875691500e-4) * r + F32(1.3981999507e-3)) * r + F32(8.3334519073e-3)) * r
          + F32(4.1665795894e-2)) * r + F32(1.6666665459e-1)) * r + F32(5.0000001201e-1)
    p = p * z + r + F32(1)
    ni = np.int32(n)
    y = _f32_from_bits(_bits_of_f32(p) + (ni << 23))
    if xc < F32(-87.33654):
        y = p * _f32_from_bits((ni + 191) << 23) * F32(5.421010862427522e-20)   # 2^(n+64) 2^-64
    if xc > F32(88.72283):
        y = np.float32(np.inf)
    return y if x == x else x


@jit(inline="always")
def tanh_f32(x):
    """tanh(x) for float32 in plain arithmetic, so loops over it vectorise (``np.tanh`` is a
    libm call per element): an odd degree-11 polynomial for |x| <= 0.625, else
    ``1 - 2 / (exp(2|x|) + 1)`` with the sign of x (the Cephes tanhf split; measured at most
    1.23 ulp from float64 tanh over [-12, 12]). Both sides are computed and one selected, so
    there is no branch; +-inf give +-1, NaN passes.
    """
    a = abs(x)
    s = x * x
    small = ((((F32(-5.70498872745e-3) * s + F32(2.06390887954e-2)) * s
               - F32(5.37397155531e-2)) * s + F32(1.33314422036e-1)) * s
             - F32(3.33332819422e-1)) * s * x + x
    big = F32(1) - F32(2) / (exp_f32(a + a) + F32(1))
    big = big if x >= F32(0) else -big
    return small if a <= F32(0.625) else big


# --------------------------------------------------------------------------------------------
# The evaluators
@jit(inline="always")
def activate(v, code, p0, p1):
    """Activation ``code`` of a float32 ``v``; p0, p1 its float32 params."""
    zero, one, half = F32(0), F32(1), F32(0.5)
    if code == 0:
        return v
    if code == 1:                                   # RELU
        return zero if v < zero else v
    if code == 2:                                   # CLAMP (lo, hi)
        v = p0 if v < p0 else v
        return p1 if v > p1 else v
    if code == 3:                                   # LEAKY_RELU (alpha,)
        return v if v >= zero else v * p0
    if code == 4:                                   # SIGMOID
        return one / (one + exp_f32(-v))
    if code == 5:                                   # TANH
        return tanh_f32(v)
    if code == 6:                                   # HARD_SIGMOID (alpha, beta)
        t = v * p0 + p1
        t = zero if t < zero else t
        return one if t > one else t
    if code == 12:                                  # SILU: x * sigmoid(x), as written out
        return v * (one / (one + exp_f32(-v)))
    # 7: HARD_SWISH, the product clamped before the add (module docstring); 19: then the affine
    t = v * F32(1.0 / 6.0)
    t = -half if t < -half else t
    t = half if t > half else t
    if code == 19:
        return v * (t + half) * p0 + p1
    return v * (t + half)


@jit
def activate_span(a, off, n, act, p0, p1):
    """``a[off:off+n] = act(a[off:off+n])``: one loop per activation code, so each vectorises.

    NOTE: compiled once and called by the conv kernels, not inlined into each: its seven
    vectorised loops (exp and tanh polynomials among them) made every conv kernel's compile
    take 19 s instead of 11 (igemm 8x32, measured). Call it once per output row, not per
    pixel: every call of a jit function with array arguments costs NRT reference-count calls
    (measured: a per-pixel epilogue call made a 1x1 8->4 conv 10x slower).
    """
    if act == 1:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 1, p0, p1)
    elif act == 2:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 2, p0, p1)
    elif act == 3:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 3, p0, p1)
    elif act == 4:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 4, p0, p1)
    elif act == 5:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 5, p0, p1)
    elif act == 6:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 6, p0, p1)
    elif act == 7:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 7, p0, p1)
    elif act == 12:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 12, p0, p1)
    elif act == 19:
        for j in range(n):
            a[U64(off + j)] = activate(a[U64(off + j)], 19, p0, p1)


@jit
def prelu_span(a, off, npix, c, slopes):
    """``a[off:off + npix * c]``, ``npix`` pixels of ``c`` channels, through a PReLU in place:
    ``v if v >= 0 else v * slopes[ch]`` (NaN stays NaN); the conv epilogues call it once per
    finished row part, as ``activate_span``. slopes: f32[c]."""
    for p in range(npix):
        base = off + p * c
        for ch in range(c):
            v = a[U64(base + ch)]
            a[U64(base + ch)] = v if v >= F32(0) else v * slopes[U64(ch)]


@jit(inline="always")
def activate_into(x, y, n, code, p0, p1):
    """``y[:n] = act(x[:n])`` for codes 0..7, 12, 19 (0 copies), one loop per code; x and y views
    indexed from 0 (the element-wise kernels' ``_map``)."""
    if code == 0:
        for i in range(n):
            y[i] = x[i]
    elif code == 1:
        for i in range(n):
            y[i] = activate(x[i], 1, p0, p1)
    elif code == 2:
        for i in range(n):
            y[i] = activate(x[i], 2, p0, p1)
    elif code == 3:
        for i in range(n):
            y[i] = activate(x[i], 3, p0, p1)
    elif code == 4:
        for i in range(n):
            y[i] = activate(x[i], 4, p0, p1)
    elif code == 5:
        for i in range(n):
            y[i] = activate(x[i], 5, p0, p1)
    elif code == 6:
        for i in range(n):
            y[i] = activate(x[i], 6, p0, p1)
    elif code == 7:
        for i in range(n):
            y[i] = activate(x[i], 7, p0, p1)
    elif code == 19:
        for i in range(n):
            y[i] = activate(x[i], 19, p0, p1)
    else:
        for i in range(n):
            y[i] = activate(x[i], 12, p0, p1)


# --------------------------------------------------------------------------------------------
# The numpy reference
def reference(x: np.ndarray, kind, values=()) -> np.ndarray:
    """``kind(x)`` in numpy: the truth the kernels are tested against (sigmoid in float64;
    hard swish in the float32 steps of :func:`activate`)."""
    kind = Activation(kind)
    if kind is Activation.NONE:
        return x
    if kind is Activation.RELU:
        return np.maximum(x, F32(0))
    if kind is Activation.CLAMP:
        lo, hi = values
        return np.clip(x, F32(lo), F32(hi)).astype(x.dtype)
    if kind is Activation.LEAKY_RELU:
        (alpha,) = values
        return np.where(x >= 0, x, x * F32(alpha)).astype(x.dtype)
    if kind is Activation.SIGMOID:
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)
    if kind is Activation.TANH:
        return np.tanh(x)
    if kind is Activation.HARD_SIGMOID:
        alpha, beta = values
        return np.clip(x * F32(alpha) + F32(beta), 0, 1).astype(x.dtype)
    if kind is Activation.HARD_SWISH:
        return (x * np.clip(x * F32(1.0 / 6.0) + F32(0.5), 0, 1)).astype(x.dtype)
    if kind is Activation.SILU:
        return (x * (1.0 / (1.0 + np.exp(-x.astype(np.float64))))).astype(x.dtype)
    if kind is Activation.HARD_SWISH_AFFINE:
        scale, shift = values
        h = reference(x, Activation.HARD_SWISH)
        return (h.astype(np.float64) * scale + shift).astype(x.dtype)
    raise ValueError(kind)
