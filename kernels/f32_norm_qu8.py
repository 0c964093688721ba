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

Two passes over ``x`` (``fused_kernel``), for activations none/relu/clamp (one when the
producing conv wrote the statistics: ``row_sums``, kernels/qu8_conv2d.py ``sums``; then
``m``, ``a``, ``b`` below come from those unshifted float64 sums):

1. statistics per (image, block of pixels): channel sums of ``d = x - x[first pixel]`` and
   ``d * d`` in float32 over at most ``FLUSH`` pixels, then into float64 partials (the shift
   keeps ``q / P - mean_d^2`` free of cancellation, as kernels/f32_norm.py);
2. per image and channel ``m = f32(mean)``, ``a = f32(scale / sqrt(var + eps))``,
   ``b = f32(bias - (mean - m) * a)``; then per element ``y = clamp((x - m) * a + b, lo, hi)``
   (the activation), the residual added, quantized: one write of uint8, no float output.

Scale and bias may be computed from a style vector first (``(u, G)`` pairs:
``scale = u @ G``, f32_norm ``style_operands``). Other activations (sigmoid, ...) take the float norm of kernels/f32_norm.py in place over ``x``
and a quantize pass (``quantize_kernel``). Layout contract: ``x`` f32[N, H, W, C] C-contiguous
(overwritten by the fallback only); ``scale``, ``bias`` f32[C] or [N, C]; ``r``, ``out``
u8[N, H, W, C].
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import f32_norm
from kernels.config import PARALLEL_MIN_WORK, jit, pjit, use_parallel
from kernels.f32_elementwise import act_params as _act_params

# kernel ids: the int8 plans' instance norms (requantizing; + residual add; + float output)
NORM_QU8 = "f32_instance_norm_nhwc_qu8"
NORM_ADD_QU8 = "f32_instance_norm_nhwc_add_qu8"
NORM_ADD_F32 = "f32_instance_norm_nhwc_add_qu8_fp32out"

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
                               parallel: bool | None = None, row_sums=None,
                               threads: int | None = None):
    """``(fn, args)`` computing float32 ``out = clamp(norm(x) + rs * (r - rz), lo, hi)``: the
    float norm into ``out``, then the residual pass in place over it (``x`` is not modified;
    ``out`` may be ``x``). ``row_sums``: the producing conv's statistics
    (``instance_norm_qu8_call``); ``parallel`` None: ``use_parallel`` on ``threads`` threads."""
    if parallel is None:
        parallel = use_parallel(x.size, threads=threads)
    norm_fn, norm_args = f32_norm.instance_norm_call(x, scale, bias, out, eps, act, act_params,
                                                     parallel=parallel, row_sums=row_sums)
    fn = residual_f32_kernel(parallel)
    args = (out.reshape(-1), residual.reshape(-1), out.reshape(-1), F32(rs), np.int32(rz),
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
                                   rs, rz, qmin, qmax, partial, scratch, stats, coef, sums,
                                   given, style, su, sg, sbuf, bu, bg, bbuf):
        """x f32[n_img * P * C], r and out u8 likewise; partial f64[n_img, nblk, 2, C]
        (pass-1 partials); scratch f32[n_img * nblk, 2, C]; with ``given``, sums f64[n_img *
        rows * 2 * C] are the producing conv's row sums (pass 1 skipped); stats f64[n_img * 2
        * C]; coef f32[n_img * 3 * C]; style as f32_norm's kernels (bit 1: scale = su @ sg
        into sbuf, bit 2: bias = bu @ bg into bbuf)."""
        f32_norm._styles(style, su, sg, sbuf, bu, bg, bbuf)
        nblk = partial.shape[1]
        per = (P + nblk - 1) // nblk
        # pass 1: shifted sums (float32 over FLUSH pixels, then float64)
        # NOTE: with the loop count as ``prange(0 if given else n_img * nblk)`` the parallel
        # variant ran 10-500x slower than the serial one (measured at 120x160x32): keep the
        # conditional out of the prange header
        ntask = n_img * nblk
        if given:
            ntask = 0
        for t in loop(ntask):
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
        if given:
            f32_norm._row_sums(sums, n_img, C, stats)
        else:
            stats[:] = 0.0
            for n in range(n_img):
                for k in range(nblk):
                    for c in range(C):
                        stats[n * 2 * C + c] += partial[n, k, 0, c]
                        stats[n * 2 * C + C + c] += partial[n, k, 1, c]
        # mean m (rounded), a, b with the rounding of m folded into b
        f32_norm._coefficients(x, scale, bias, n_img, P, C, eps, stats, coef, C, 1, not given)
        # pass 2: normalise, activation, residual, quantize
        qlo, qhi = qmin - z, qmax - z
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            m = coef[3 * n * C:(3 * n + 1) * C]
            a = coef[(3 * n + 1) * C:(3 * n + 2) * C]
            b = coef[(3 * n + 2) * C:(3 * n + 3) * C]
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
                           fused: bool = True, row_sums=None, threads: int | None = None):
    """``(fn, args)`` computing ``out`` (uint8) from ``x`` (float32; overwritten by the
    unfused path: activations other than none/relu/clamp, or ``fused=False``). ``scale`` and
    ``bias``: f32[C] or [N, C], or ``(u, G)`` style pairs (``f32_norm.style_operands``).

    ``row_sums``: f64[N * rows * 2 * C], the sums of x and x^2 per row that the producing conv
    wrote (``qu8_conv2d.igemm_kernel``'s ``sums``): the statistics pass is skipped (fused
    path only).

    Allocates nothing per run: scratch is allocated here, once. ``parallel`` None:
    ``use_parallel`` on ``threads`` threads.
    """
    if parallel is None:
        parallel = use_parallel(x.size, threads=threads)
    lo, hi, _ = f32_norm.clamp_bounds(int(act), *_act_params(int(act), act_params))
    n, h, w, c = x.shape
    if fused and fusable(act, act_params):
        nblk = fused_blocks(n, h * w, c)
        r = residual if residual is not None else out
        given = row_sums is not None
        sums = row_sums.reshape(-1) if given else np.zeros(1, np.float64)
        if given and (sums.dtype != np.float64 or sums.size % (n * 2 * c)):
            raise ValueError(f"row sums {row_sums.shape} {row_sums.dtype} do not fit input "
                             f"{x.shape}")
        s_, b_, *style = f32_norm.style_operands(scale, bias, c)
        args = (x.reshape(-1), s_, b_, r.reshape(-1), out.reshape(-1), n, h * w, c,
                float(eps), F32(lo), F32(hi), F32(1.0 / s), F32(z), F32(rs), np.int32(rz),
                F32(qmin), F32(qmax), np.empty((n, nblk, 2, c), np.float64),
                np.empty((n * nblk, 2, c), F32), np.empty(n * 2 * c, np.float64),
                np.empty(n * 3 * c, F32), sums, given, *style)
        return fused_kernel(parallel, residual is not None), args
    if row_sums is not None:
        raise ValueError(f"activation {act} takes the unfused norm: it cannot use row sums")
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


def norm_add_f32_reference(x, scale, bias, eps, act, act_params, residual, rs, rz, lo=-np.inf,
                           hi=np.inf):
    """numpy: float32 ``clip(norm(x) + rs * (r - rz), lo, hi)`` (``NORM_ADD_F32``)."""
    from kernels import reference
    y = reference.instance_norm(np.asarray(x, F32), scale, bias, epsilon=eps,
                                activation_kind=act, act_params=act_params).astype(F32)
    y = y + (np.asarray(residual, np.int32) - np.int32(rz)).astype(F32) * F32(rs)
    return np.clip(y, F32(lo), F32(hi))


KERNELS = {"f32_instance_norm_nhwc_qu8": (instance_norm_qu8, _reference),
           "f32_instance_norm_nhwc_add_qu8": (instance_norm_qu8, _reference)}
