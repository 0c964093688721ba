"""fp32 normalisation kernels: instance norm (two passes over NHWC) and batch norm (one affine pass).

Instance norm, per image ``n`` and channel ``c`` over the ``P = H * W`` pixels::

    shift = x[n, 0, c]                                  # any sample of the channel
    s = sum(x - shift), q = sum((x - shift)^2)          # float64, vectorised across channels
    mean_d = s / P, var = q / P - mean_d^2              # mean = shift + mean_d
    a = scale / sqrt(var + eps), b = bias - mean_d * a
    y = act((x - shift) * a + b)

NOTE: the shift keeps ``q / P - mean_d^2`` free of cancellation, and ``(x - shift) * a + b``
keeps the float32 epilogue's error at a few ulps of the *output* even when ``|mean| >> std``
(the folded ``x * a' + b'`` would lose ``|mean| / std`` ulps).

Pass 1 runs over (image, row block) tasks, each writing its own partial sums; the partials are
combined per image, then pass 2 runs over the same tasks. Scratch (partials, coefficients) is
allocated by the binder, once.

Layout contract: ``x``, ``out``: f32[N * P * C] (NHWC flattened) C-contiguous, ``out`` may
alias ``x``; ``scale``, ``bias``: f32[Ns * C], Ns = 1 (shared) or N (per image), read at run
time (they may be computed by the graph).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import PARALLEL_MIN_WORK, jit, pjit
from kernels.f32_elementwise import act_params, map_row

F32 = np.float32
# NOTE: a pass-2 row block of 1024 pixels x 32 channels is 128 KiB: the activation pass over it
# still hits L2.
MAX_BLOCKS = 64


def _build(parallel: bool):
    loop = prange if parallel else range
    deco = pjit if parallel else jit

    @deco
    def instance_norm(x, scale, bias, out, n_img, pixels, channels, eps, act, p0, p1,
                      partial, coef):
        """partial: f64[n_img * nblk * 2 * C] scratch; coef: f32[n_img * 3 * C] scratch."""
        C, P = channels, pixels
        nblk = partial.shape[0] // (n_img * 2 * C)
        per = (P + nblk - 1) // nblk
        per_image_scale = scale.shape[0] > C
        # pass 1: shifted float64 sums per (image, block)
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            s0 = t * 2 * C
            for c in range(C):
                partial[s0 + c] = 0.0
                partial[s0 + C + c] = 0.0
            for p in range(k * per, min(P, (k + 1) * per)):
                row = base + p * C
                for c in range(C):
                    d = np.float64(x[row + c]) - np.float64(x[base + c])
                    partial[s0 + c] += d
                    partial[s0 + C + c] += d * d
        # combine: per-channel affine of each image
        inv_p = 1.0 / P
        for n in range(n_img):
            sc = n * C if per_image_scale else 0
            for c in range(C):
                s, q = 0.0, 0.0
                for k in range(nblk):
                    s += partial[(n * nblk + k) * 2 * C + c]
                    q += partial[(n * nblk + k) * 2 * C + C + c]
                mean_d = s * inv_p
                var = max(q * inv_p - mean_d * mean_d, 0.0)
                a = np.float64(scale[sc + c]) / np.sqrt(var + eps)
                coef[n * 3 * C + c] = x[n * P * C + c]                       # shift
                coef[n * 3 * C + C + c] = np.float32(a)
                coef[n * 3 * C + 2 * C + c] = np.float32(np.float64(bias[sc + c]) - mean_d * a)
        # pass 2: y = act((x - shift) * a + b)
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            cb = n * 3 * C
            p_lo, p_hi = k * per, min(P, (k + 1) * per)
            for p in range(p_lo, p_hi):
                row = (n * P + p) * C
                for c in range(C):
                    out[row + c] = (x[row + c] - coef[cb + c]) * coef[cb + C + c] \
                        + coef[cb + 2 * C + c]
            if act != 0 and p_hi > p_lo:
                s = (n * P + p_lo) * C
                map_row(out, s, out, s, (p_hi - p_lo) * C, act, p0, p1)

    @deco
    def channel_affine(x, a, b, out, channels, act, p0, p1):
        """out[p, c] = act(x[p, c] * a[c] + b[c]); x, out: f32[P * C]; a, b: f32[C]."""
        C = channels
        rows = out.shape[0] // C
        per = max(1, 8192 // C)
        for blk in loop((rows + per - 1) // per):
            r0, r1 = blk * per, min(rows, (blk + 1) * per)
            for r in range(r0, r1):
                for c in range(C):
                    out[r * C + c] = x[r * C + c] * a[c] + b[c]
            if act != 0:
                map_row(out, r0 * C, out, r0 * C, (r1 - r0) * C, act, p0, p1)

    return instance_norm, channel_affine


class _Variants:
    def __init__(self, parallel: bool) -> None:
        self.instance_norm, self.channel_affine = _build(parallel)


SERIAL = _Variants(False)
PARALLEL = _Variants(True)


@jit
def batch_norm_coefficients(scale, bias, mean, var, eps, a, b):
    """a = scale / sqrt(var + eps), b = bias - mean * a (float64 math), for run-time params."""
    for c in range(a.shape[0]):
        s = np.float64(scale[c]) / np.sqrt(np.float64(var[c]) + eps)
        a[c] = np.float32(s)
        b[c] = np.float32(np.float64(bias[c]) - np.float64(mean[c]) * s)


def batch_norm_fold(scale, bias, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Compile time: the per-channel affine ``(a, b)`` of a batch norm with constant params."""
    s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return (np.ascontiguousarray(s, np.float32),
            np.ascontiguousarray(bias - mean.astype(np.float64) * s, np.float32))


def instance_norm_blocks(n_img: int, pixels: int, channels: int) -> int:
    """Row blocks per image: enough tasks for every thread on big tensors, one on small ones."""
    work = n_img * pixels * channels
    if work < PARALLEL_MIN_WORK:
        return 1
    return int(min(pixels, MAX_BLOCKS, max(1, work // PARALLEL_MIN_WORK)))


def instance_norm_call(x, scale, bias, out, eps: float, act: int = 0, params=(),
                       blocks: int | None = None, parallel: bool | None = None):
    """``(fn, args)`` for ``out = instance_norm(x)``: x, out f32[N, H, W, C]; scale, bias f32
    [C] or [N, C]. Allocates the scratch once (call at bind time, not per run). ``blocks`` and
    ``parallel`` override the row blocks per image and the variant (tests)."""
    n, h, w, c = x.shape
    nblk = blocks or instance_norm_blocks(n, h * w, c)
    if parallel is None:
        parallel = x.size >= PARALLEL_MIN_WORK
    k = PARALLEL if parallel else SERIAL
    partial = np.empty(n * nblk * 2 * c, np.float64)
    coef = np.empty(n * 3 * c, np.float32)
    p0, p1 = act_params(act, params)
    return k.instance_norm, (x.reshape(-1), scale.reshape(-1), bias.reshape(-1), out.reshape(-1),
                             n, h * w, c, float(eps), int(act), F32(p0), F32(p1), partial, coef)


def affine_call(x, a, b, out, act: int = 0, params=(), parallel: bool | None = None):
    """``(fn, args)`` for ``out = act(x * a + b)`` per channel (last axis)."""
    if parallel is None:
        parallel = x.size >= PARALLEL_MIN_WORK
    k = PARALLEL if parallel else SERIAL
    p0, p1 = act_params(act, params)
    return k.channel_affine, (x.reshape(-1), a, b, out.reshape(-1), x.shape[-1], int(act),
                              F32(p0), F32(p1))


# --------------------------------------------------------------------------------------------
# Whole-array entry points and the kernel table.
def instance_norm(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=(), blocks=None,
                  parallel=None):
    out = np.empty_like(x)
    fn, args = instance_norm_call(x, scale, bias, out, epsilon, int(activation_kind), act_params,
                                  blocks, parallel)
    fn(*args)
    return out


def batch_norm(x, scale, bias, mean, var, epsilon=1e-5, activation_kind=0, act_params=(),
               parallel=None):
    out = np.empty_like(x)
    a, b = batch_norm_fold(scale, bias, mean, var, epsilon)
    fn, args = affine_call(x, a, b, out, int(activation_kind), act_params, parallel)
    fn(*args)
    return out


def _ref_instance_norm(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=()):
    return ref.instance_norm(x, scale, bias, epsilon=epsilon, activation_kind=activation_kind,
                             act_params=act_params)


def _ref_batch_norm(x, scale, bias, mean, var, epsilon=1e-5, activation_kind=0, act_params=()):
    return ref.batch_norm(x, scale, bias, mean, var, epsilon=epsilon,
                          activation_kind=activation_kind, act_params=act_params)


# kernel -> (whole-array entry point, numpy reference with the same signature)
KERNELS = {
    "f32_instance_norm_nhwc": (instance_norm, _ref_instance_norm),
    "f32_batch_norm_nhwc": (batch_norm, _ref_batch_norm),
}
