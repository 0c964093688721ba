"""Instance norm between int8 neighbours: float32 input (a conv's exact accumulators), uint8 output.

``f32_instance_norm_nhwc_qu8``: ``q = clamp(rint(y * f32(1 / s)) + z, qmin, qmax)`` with
``y = act(instance_norm(x))`` (the float kernel of ``kernels/f32_norm.py``).

``f32_instance_norm_nhwc_add_qu8``: the residual add of the next node fused in, so the norm's
output is rounded once, after the add::

    q = clamp(rint((y + f32(r - rz) * rs) * f32(1 / s)) + z, qmin, qmax)       r: uint8

(``qmin``/``qmax`` fold the add's activation).

``f32_instance_norm_nhwc_add_qu8_fp32out``: the same add with a float32 output,
``o = clamp(y + f32(r - rz) * rs, lo, hi)`` (the add's none/relu/clamp activation as bounds).

Every step is one float32 operation, as the IR's
quantized semantics compute it (ir/interpret.py): no fused multiply-add (``fastmath`` off).

Two passes over ``x`` (``fused_kernel``), for activations none/relu/clamp:

1. statistics per (image, block of pixels): channel sums of ``d = x - x[first pixel]`` and
   ``d * d`` in float32 over at most ``FLUSH`` pixels, then into float64 partials (the shift
   keeps ``q / P - mean_d^2`` free of cancellation, as kernels/f32_norm.py);
2. per image and channel ``m = f32(mean)``, ``a = f32(scale / sqrt(var + eps))``,
   ``b = f32(bias - (mean - m) * a)``; then per element ``y = clamp((x - m) * a + b, lo, hi)``
   (the activation), the residual added, quantized: one write of uint8, no float output.

Other activations (sigmoid, ...) take the float norm of kernels/f32_norm.py in place over ``x``
and a quantize pass (``quantize_kernel``). Layout contract: ``x`` f32[N, H, W, C] C-contiguous
(overwritten by the fallback only); ``scale``, ``bias`` f32[C] or [N, C]; ``r``, ``out``
u8[N, H, W, C].
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import f32_norm
from kernels.config import PARALLEL_MIN_WORK, jit, pjit
from kernels.f32_elementwise import act_params as _act_params

F32 = np.float32
BLOCK = 1 << 14          # elements per parallel task
_FLAGS = {"fastmath": False}


# NOTE: adding and subtracting 1.5 * 2^23 rounds a float32 |u| < 2^22 to the nearest integer,
# ties to even (what rint does), as plain vector adds; fast-math must stay off for it
ROUND = np.float32(12582912.0)


def _quantize_source(parallel: bool, residual: bool):
    loop = prange if parallel else range

    def qu8_quantize(y, r, out, inv, z, rs, rz, qmin, qmax):
        """``clamp(rint(v * inv) + z, qmin, qmax)``, computed as ``rint(clamp(v * inv,
        qmin - z, qmax - z)) + z`` (equal for integer bounds: rint is monotonic)."""
        n = y.size
        lo, hi = qmin - z, qmax - z
        tasks = (n + BLOCK - 1) // BLOCK
        for t in loop(tasks):
            start = t * BLOCK
            stop = min(n, start + BLOCK)
            # NOTE: slices keep the inner loop unit-stride (LLVM otherwise vectorizes the task
            # loop, with gathers)
            ys, rr, os = y[start:stop], r[start:stop], out[start:stop]
            for i in range(stop - start):
                v = ys[i]
                if residual:
                    v = v + np.float32(np.int32(rr[i]) - rz) * rs
                u = v * inv
                u = hi if u > hi else u
                u = lo if u < lo else u
                os[i] = np.uint8(np.int32(((u + ROUND) - ROUND) + z))
    return qu8_quantize


def _residual_f32_source(parallel: bool):
    loop = prange if parallel else range

    def qu8_residual_f32(y, r, out, rs, rz, lo, hi):
        n = y.size
        tasks = (n + BLOCK - 1) // BLOCK
        for t in loop(tasks):
            start = t * BLOCK
            stop = min(n, start + BLOCK)
            ys, rr, os = y[start:stop], r[start:stop], out[start:stop]
            for i in range(stop - start):
                v = ys[i] + np.float32(np.int32(rr[i]) - rz) * rs
                v = hi if v > hi else v
                os[i] = lo if v < lo else v
    return qu8_residual_f32


_KERNELS = {}


def quantize_kernel(parallel: bool, residual: bool):
    key = (bool(parallel), bool(residual))
    if key not in _KERNELS:
        deco = pjit if parallel else jit
        _KERNELS[key] = deco(_quantize_source(*key), **_FLAGS)
    return _KERNELS[key]


def residual_f32_kernel(parallel: bool):
    key = ("f32", bool(parallel))
    if key not in _KERNELS:
        _KERNELS[key] = (pjit if parallel else jit)(_residual_f32_source(parallel), **_FLAGS)
    return _KERNELS[key]


def instance_norm_add_f32_call(x, scale, bias, out, eps: float, act: int, act_params, residual,
                               rs: float, rz: int, lo: float = -np.inf, hi: float = np.inf,
                               parallel: bool | None = None):
    """``(fn, args)`` computing float32 ``out = clamp(norm(x) + rs * (r - rz), lo, hi)``; ``x``
    is overwritten (``out`` may be ``x``)."""
    if parallel is None:
        parallel = x.size >= PARALLEL_MIN_WORK
    norm_fn, norm_args = f32_norm.instance_norm_call(x, scale, bias, x, eps, act, act_params,
                                                     parallel=parallel)
    fn = residual_f32_kernel(parallel)
    args = (x.reshape(-1), residual.reshape(-1), out.reshape(-1), F32(rs), np.int32(rz),
            F32(lo), F32(hi))

    def run():
        norm_fn(*norm_args)
        fn(*args)
    return run, ()


FLUSH = 8                # pixels per float32 partial sum
MAX_BLOCKS = 64


def _fused_source(parallel: bool, residual: bool):
    loop = prange if parallel else range

    def f32_instance_norm_nhwc_qu8(x, scale, bias, r, out, n_img, P, C, eps, lo, hi, inv, z,
                                   rs, rz, qmin, qmax, partial, scratch, coef):
        """partial f64[n_img, nblk, 2, C]; scratch f32[n_img * nblk, 2, C]; coef f32[n_img,
        3, C]; x f32[n_img * P * C], r and out u8 likewise."""
        nblk = partial.shape[1]
        per = (P + nblk - 1) // nblk
        # pass 1: shifted sums
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            shift = x[base:base + C]
            s32, q32 = scratch[t, 0], scratch[t, 1]
            s64, q64 = partial[n, k, 0], partial[n, k, 1]
            s64[:] = 0.0
            q64[:] = 0.0
            p = k * per
            stop = min(P, p + per)
            while p < stop:
                s32[:] = 0.0
                q32[:] = 0.0
                for pp in range(p, min(stop, p + FLUSH)):
                    xs = x[base + pp * C:base + pp * C + C]
                    for c in range(C):
                        d = xs[c] - shift[c]
                        s32[c] += d
                        q32[c] += d * d
                for c in range(C):
                    s64[c] += s32[c]
                    q64[c] += q32[c]
                p += FLUSH
        # coefficients: mean m (rounded), a, b with the rounding of m folded into b
        per_image = scale.size > C
        for n in range(n_img):
            sc = n * C if per_image else 0
            for c in range(C):
                sd, qd = 0.0, 0.0
                for k in range(nblk):
                    sd += partial[n, k, 0, c]
                    qd += partial[n, k, 1, c]
                mean_d = sd / P
                var = max(qd / P - mean_d * mean_d, 0.0)
                mean = np.float64(x[n * P * C + c]) + mean_d
                a = np.float64(scale[sc + c]) / np.sqrt(var + eps)
                m32 = np.float32(mean)
                coef[n, 0, c] = m32
                coef[n, 1, c] = np.float32(a)
                coef[n, 2, c] = np.float32(np.float64(bias[sc + c]) - (mean - np.float64(m32)) * a)
        # pass 2: normalise, activation, residual, quantize
        qlo, qhi = qmin - z, qmax - z
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            m, a, b = coef[n, 0], coef[n, 1], coef[n, 2]
            for pp in range(k * per, min(P, k * per + per)):
                o = base + pp * C
                xs, os, rr = x[o:o + C], out[o:o + C], r[o:o + C]
                for c in range(C):
                    y = (xs[c] - m[c]) * a[c] + b[c]
                    y = hi if y > hi else y
                    y = lo if y < lo else y
                    if residual:
                        y = y + np.float32(np.int32(rr[c]) - rz) * rs
                    u = y * inv
                    u = qhi if u > qhi else u
                    u = qlo if u < qlo else u
                    os[c] = np.uint8(np.int32(((u + ROUND) - ROUND) + z))
    return f32_instance_norm_nhwc_qu8


def fused_kernel(parallel: bool, residual: bool):
    key = ("fused", bool(parallel), bool(residual))
    if key not in _KERNELS:
        deco = pjit if parallel else jit
        _KERNELS[key] = deco(_fused_source(bool(parallel), bool(residual)), **_FLAGS)
    return _KERNELS[key]


def fused_blocks(n_img: int, pixels: int, channels: int) -> int:
    work = n_img * pixels * channels
    if work < PARALLEL_MIN_WORK:
        return 1
    return int(min(pixels, MAX_BLOCKS, max(8, work // PARALLEL_MIN_WORK)))


def fusable(act: int, act_params=()) -> bool:
    """True when the two-pass kernel (which leaves ``x`` untouched) takes activation ``act``."""
    return f32_norm.clamp_bounds(int(act), *_act_params(int(act), act_params))[2] == 0


def instance_norm_qu8_call(x, scale, bias, out, eps: float, act: int, act_params, s: float,
                           z: int, qmin: int = 0, qmax: int = 255, residual=None,
                           rs: float = 1.0, rz: int = 0, parallel: bool | None = None,
                           fused: bool = True):
    """``(fn, args)`` computing ``out`` (uint8) from ``x`` (float32; overwritten by the
    unfused path: activations other than none/relu/clamp, or ``fused=False``).

    Allocates nothing per run: scratch is allocated here, once.
    """
    if parallel is None:
        parallel = x.size >= PARALLEL_MIN_WORK
    lo, hi, _ = f32_norm.clamp_bounds(int(act), *_act_params(int(act), act_params))
    if fused and fusable(act, act_params):
        n, h, w, c = x.shape
        nblk = fused_blocks(n, h * w, c)
        r = residual if residual is not None else out
        args = (x.reshape(-1), scale.reshape(-1), bias.reshape(-1), r.reshape(-1),
                out.reshape(-1), n, h * w, c, float(eps), F32(lo), F32(hi), F32(1.0 / s),
                F32(z), F32(rs), np.int32(rz), F32(qmin), F32(qmax),
                np.empty((n, nblk, 2, c), np.float64), np.empty((n * nblk, 2, c), F32),
                np.empty((n, 3, c), F32))
        return fused_kernel(parallel, residual is not None), args
    norm_fn, norm_args = f32_norm.instance_norm_call(x, scale, bias, x, eps, act, act_params,
                                                     parallel=parallel)
    qfn = quantize_kernel(parallel, residual is not None)
    r = (residual if residual is not None else out).reshape(-1)
    qargs = (x.reshape(-1), r, out.reshape(-1), F32(1.0 / s), F32(z), F32(rs), np.int32(rz),
             F32(qmin), F32(qmax))

    def run():
        norm_fn(*norm_args)
        qfn(*qargs)
    return run, ()


def instance_norm_qu8(x, scale, bias, s, z, eps=1e-5, act=0, act_params=(), residual=None,
                      rs=1.0, rz=0, qmin=0, qmax=255, parallel=None):
    """Whole-array entry (tests): uint8 NHWC; ``x`` is not modified."""
    x = np.array(x, np.float32, order="C")
    out = np.empty(x.shape, np.uint8)
    fn, args = instance_norm_qu8_call(x, scale, bias, out, eps, act, act_params, s, z, qmin,
                                      qmax, residual, rs, rz, parallel)
    fn(*args)
    return out


def _reference(x, scale, bias, s, z, eps=1e-5, act=0, act_params=(), residual=None, rs=1.0,
               rz=0, qmin=0, qmax=255, parallel=None):
    """numpy: the float reference norm, then the same float32 steps."""
    from kernels import reference
    y = reference.instance_norm(np.asarray(x, F32), scale, bias, epsilon=eps,
                                activation_kind=act, act_params=act_params).astype(F32)
    if residual is not None:
        y = y + (np.asarray(residual, np.int32) - np.int32(rz)).astype(F32) * F32(rs)
    v = np.rint(y * F32(1.0 / s)) + F32(z)
    return np.clip(v, F32(qmin), F32(qmax)).astype(np.uint8)


KERNELS = {"f32_instance_norm_nhwc_qu8": (instance_norm_qu8, _reference),
           "f32_instance_norm_nhwc_add_qu8": (instance_norm_qu8, _reference)}
