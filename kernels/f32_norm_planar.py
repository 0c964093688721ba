"""fp32 instance norm over planar (NCHW) tensors (``f32_instance_norm_nchw``, the few-channel
tail before an NCHW graph output): each (image, channel) plane is P contiguous floats, lanes run
over pixels (any C is full width), tasks are (plane, block) pairs, an even number of them (3
planes on 2 threads). Pass 1 sums shifted values per block (float32 vector partials flushed to
float64); pass 2 writes ``act((x - m) * a + b)`` with the clamp in the vector store. Statistics,
style vectors and clamp rules are the NHWC kernels' (``f32_norm.py``).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import PARALLEL_MIN_WORK, jit, pjit, use_parallel
from kernels.f32_elementwise import act_inplace, act_params, readonly
from kernels.f32_norm import (F32, FLUSH, MAX_BLOCKS, VL, _styles, clamp_bounds, style_operands,
                              vshift_affine, vshift_stats)
from kernels.intrinsics import stack_array, vcopy, vfill


def _planar_source(parallel: bool):
    loop = prange if parallel else range
    CHUNK = 4096                      # pass-2 floats per activation block: 16 KiB
    LANES = VL
    CV = 3 * VL                       # NOTE: stack sizes must be plain closure ints

    def f32_instance_norm_nchw(x, scale, bias, out, n_img, P, C, eps, lo, hi, act, p0, p1,
                               partial, coef, style, su, sg, sbuf, bu, bg, bbuf):
        """Planar: each (image, channel) plane is P contiguous floats, split into ``nblk``
        blocks of whole vectors. partial: f64[n_img * C * nblk * 2]; coef: f32[n_img * C * 3];
        style as in the NHWC kernels."""
        _styles(style, su, sg, sbuf, bu, bg, bbuf)
        nplane = n_img * C
        nblk = partial.shape[0] // (nplane * 2)
        per = ((P + nblk - 1) // nblk + VL - 1) // VL * VL
        per_image_scale = scale.shape[0] > C
        per_image_bias = bias.shape[0] > C
        # pass 1: shifted sums per block, float32 vector partials flushed to float64
        for t in loop(nplane * nblk):
            pl, k = t // nblk, t % nblk
            base = pl * P
            b0, b1 = min(P, k * per), min(P, (k + 1) * per)
            s = stack_array(LANES, np.float32)
            q = stack_array(LANES, np.float32)
            sh = stack_array(LANES, np.float32)
            tile = stack_array(LANES, np.float32)
            vfill(sh, 0, x[base], VL)
            ps, pq = 0.0, 0.0
            nv = (b1 - b0) // VL
            for r0 in range(0, nv, FLUSH):
                vfill(s, 0, F32(0), VL)
                vfill(q, 0, F32(0), VL)
                for r in range(r0, min(nv, r0 + FLUSH)):
                    vshift_stats(s, q, 0, x, base + b0 + r * VL, sh, VL)
                vcopy(tile, 0, s, 0, VL)
                for l in range(VL):
                    ps += tile[l]
                vcopy(tile, 0, q, 0, VL)
                for l in range(VL):
                    pq += tile[l]
            for i in range(b0 + nv * VL, b1):
                d = np.float64(x[base + i]) - np.float64(x[base])
                ps += d
                pq += d * d
            partial[2 * t] = ps
            partial[2 * t + 1] = pq
        # per plane: (m, a, b) with the rounded mean as in the NHWC kernels
        inv_p = 1.0 / P
        for pl in range(nplane):
            n, c = pl // C, pl % C
            ps, pq = 0.0, 0.0
            for k in range(nblk):
                ps += partial[2 * (pl * nblk + k)]
                pq += partial[2 * (pl * nblk + k) + 1]
            mean_d = ps * inv_p
            var = max(pq * inv_p - mean_d * mean_d, 0.0)
            sc = n * C + c if per_image_scale else c
            sb = n * C + c if per_image_bias else c
            a = np.float64(scale[sc]) / np.sqrt(var + eps)
            mean = np.float64(x[pl * P]) + mean_d
            m32 = np.float32(mean)
            coef[3 * pl] = m32
            coef[3 * pl + 1] = np.float32(a)
            coef[3 * pl + 2] = np.float32(np.float64(bias[sb]) - (mean - np.float64(m32)) * a)
        # pass 2: y = act((x - m) * a + b), clamp in the vector store
        for t in loop(nplane * nblk):
            pl, k = t // nblk, t % nblk
            base = pl * P
            b0, b1 = min(P, k * per), min(P, (k + 1) * per)
            cv = stack_array(CV, np.float32)
            m, a, bb = coef[3 * pl], coef[3 * pl + 1], coef[3 * pl + 2]
            vfill(cv, 0, m, VL)
            vfill(cv, VL, a, VL)
            vfill(cv, 2 * VL, bb, VL)
            for c0 in range(b0, b1, CHUNK):
                c1 = min(b1, c0 + CHUNK)
                nv = (c1 - c0) // VL
                for r in range(nv):
                    o = base + c0 + r * VL
                    vshift_affine(out, o, x, o, cv, 0, VL, lo, hi, VL)
                for i in range(c0 + nv * VL, c1):
                    y = (x[base + i] - m) * a + bb
                    y = lo if y < lo else y
                    out[base + i] = hi if y > hi else y
                if act != 0:
                    act_inplace(out, base + c0, c1 - c0, act, p0, p1)

    return f32_instance_norm_nchw


@functools.lru_cache(maxsize=None)
def instance_norm_planar_kernel(parallel: bool):
    """The planar (NCHW) instance norm dispatcher. Call ``fn(x, scale, bias, out, n_img, P, C,
    eps, lo, hi, act, p0, p1, partial, coef, style, su, sg, sbuf, bu, bg, bbuf)`` with the
    scratch of
    :func:`instance_norm_planar_call`."""
    return (pjit if parallel else jit)(_planar_source(parallel))


def planar_blocks(n_img: int, pixels: int, channels: int) -> int:
    """Blocks per plane: one on small tensors; else an even number of tasks, at least 16 (the
    planes are few: 3 planes on 2 threads would leave one idle half the time)."""
    work = n_img * pixels * channels
    if work < PARALLEL_MIN_WORK:
        return 1
    nplane = n_img * channels
    nblk = max(-(-16 // nplane), work // (PARALLEL_MIN_WORK * nplane))
    nblk += nblk % 2
    return int(max(1, min(nblk, MAX_BLOCKS, -(-pixels // VL))))


def instance_norm_planar_call(x, scale, bias, out, eps: float, act: int = 0, params=(),
                              blocks: int | None = None, parallel: bool | None = None,
                              threads: int | None = None):
    """``(fn, args)`` for ``out = instance_norm(x)`` over planar x, out: f32[N, C, H, W]; scale,
    bias f32[C] or [N, C] or ``(u, G)`` style pairs. Allocates the scratch once (bind time).
    ``parallel`` None: ``use_parallel`` on ``threads`` threads."""
    n, c, h, w = x.shape
    nblk = blocks or planar_blocks(n, h * w, c)
    if parallel is None:
        parallel = use_parallel(x.size, threads=threads)
    partial = np.empty(n * c * nblk * 2, np.float64)
    coef = np.empty(n * c * 3, np.float32)
    p0, p1 = act_params(act, params)
    lo, hi, rest = clamp_bounds(int(act), p0, p1)
    s_, b_, *style = style_operands(scale, bias, c)
    return instance_norm_planar_kernel(bool(parallel)), (
        readonly(x.reshape(-1)), s_, b_, out.reshape(-1), n, h * w, c, float(eps), lo, hi,
        rest, F32(p0), F32(p1), partial, coef, *style)


def instance_norm_nchw(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=(),
                       blocks=None, parallel=None):
    """x: f32[N, C, H, W] (planar) -> the same layout."""
    out = np.empty_like(x)
    fn, args = instance_norm_planar_call(x, scale, bias, out, epsilon, int(activation_kind),
                                         act_params, blocks, parallel)
    fn(*args)
    return out


def _ref_instance_norm_nchw(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=(),
                           blocks=None, parallel=None):
    y = ref.instance_norm(x.transpose(0, 2, 3, 1), scale, bias, epsilon=epsilon,
                          activation_kind=activation_kind, act_params=act_params)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
