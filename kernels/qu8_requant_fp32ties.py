"""Requantization of an int8 conv that rounds as the float32 convolution of its QDQ model.

A pre-quantized (QDQ) model defines a conv as float32 arithmetic on dequantized operands,
``y = Q(act(conv(DQ(x), DQ(w)) + DQ(b)))``; onnxruntime runs it as such a float32 conv. The
int8 kernels compute the exact sum instead. Both round ``u = v / sy`` to the same byte except
where ``u`` lies within float32 summation noise of a half-integer: there the float32 sum decides,
and one flipped byte grows through the following convs and norms (measured on
arbitrary_transform at 384x384: 1-6 such bytes in 2-6 of its 42 convs, 27-37 dB against
onnxruntime's output).

``qu8_requant_fp32ties``: from the conv's float output ``v = f32(acc) * f32(sx * sw[c])``
(``fp32out`` epilogue, no activation)::

    u = v / sy;   if |u - floor(u) - 1/2| <= delta[c]:  u = conv_f32(p, c) / sy
    out = clamp(rint(u) + zy, qmin, qmax)

(a tie whose two bytes clamp to one, e.g. below a ReLU's zero, needs no float conv).

``conv_f32`` is the float32 conv of the model at one output element, in the order of
onnxruntime's CPU conv (im2col + MLAS sgemm): taps in (input channel, kernel row, kernel
column) order, each a fused multiply-add of ``wf * f32(f32(x - zx) * sx)`` into a float32
accumulator that restarts every ``K_BLOCK`` taps, the block sums added in order, then the bias.
``delta[c]`` (``tie_margin``) bounds the distance between the exact sum and both float32 sums;
other elements need no float work.

Layout contract: v f32[N, OH, OW, Co] and out u8[N, OH, OW, Co] C-contiguous (out may not alias
v); x u8[N, H, W, C]; rowmap i32[OH, KH], colmap i32[OW, KW] (input indices, -1: zero pad,
kernels/indirection.py); wf f32[Co, C, KH, KW] (the model's dequantized weights); taps
i32[Co, 2]: the first kernel column and the column count of channel c (a conv computing several
output pixels per position, passes/pack_output_pixels.py, reads a window of its wider kernel);
bf, delta f32[Co].
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from kernels import config
from kernels.intrinsics import fma_f32

F32, F64 = np.float32, np.float64
# NOTE: MLAS sgemm's K block: with 128 the emulation equals onnxruntime's float32 conv outputs
# bit for bit on arbitrary_transform's 9x9 3->8 conv (with 256-tap blocks or none: 11% equal)
K_BLOCK = 128
_FLAGS = {"fastmath": False}
EPS = 2.0 ** -24             # float32 unit roundoff
# NOTE: the margin's multiple of the probabilistic error bound (``tie_margin``); measured on
# arbitrary_transform, the largest error was 0.075-0.08 of the bound with 1 (0.3 of this
# margin); 0.5 recomputed twice the elements (384x384, 2 threads: 0.35x onnxruntime's time)
MARGIN_LAMBDA = 0.25


def dequantize_float32(wq: np.ndarray, scales) -> np.ndarray:
    """f32[Co, C, KH, KW] ``f32(q) * f32(s[c])``: DequantizeLinear's weights."""
    return np.ascontiguousarray(np.asarray(wq).astype(F32)
                                * np.asarray(scales, F32).reshape(-1, 1, 1, 1))


def tie_margin(wf: np.ndarray, taps: np.ndarray, bias_f32: np.ndarray, bias_error: np.ndarray,
               sx: float, zx: int, sy: float) -> np.ndarray:
    """f32[Co]: how far from a rounding tie ``u`` must be for the estimate to round as the
    float32 conv does.

    Both paths round at most ``n = K + 8`` times per element (K fused multiply-adds, the block
    sums, the dequantized operands, the bias, the estimate's product and the division), each
    time by at most ``EPS`` of ``S_c = sum |wf| * max|x - zx| * sx + |b|``. The worst case
    ``n EPS S_c`` is never approached (rounding errors are independent and rarely all of one
    sign, and inputs are rarely all at their extreme), so the margin is the probabilistic bound
    ``MARGIN_LAMBDA sqrt(n) EPS S_c`` (Higham and Mary 2019), plus the int8 kernel's bias
    rounding ``bias_error`` (``|rint(b / (sx sw)) sx sw - b|``). Measured on arbitrary_transform
    (every conv element within the margin recomputed, 2 photos x 3 style vectors): the largest
    |u_f32 - u_estimate| was 0.005 of the worst case at 128x128, and 0.08 (128x128) and 0.075
    (384x384, horse and retina) of this margin with MARGIN_LAMBDA = 1."""
    co, c_n, kh_n, kw_n = wf.shape
    cols = np.arange(kw_n)[None, :]
    live = (cols >= taps[:, :1]) & (cols < taps[:, :1] + taps[:, 1:])      # [Co, KW]
    wsum = np.abs(np.where(live[:, None, None, :], wf.astype(F64), 0.0)).reshape(co, -1).sum(1)
    n = int(taps[0, 1]) * c_n * kh_n + 8
    s = wsum * float(sx) * max(int(zx), 255 - int(zx)) + np.abs(bias_f32.astype(F64))
    margin = (MARGIN_LAMBDA * np.sqrt(n) * EPS * s + np.asarray(bias_error, F64)) / float(sy) \
        + 1024 * EPS
    return margin.astype(F32)


def _source(parallel: bool):
    loop = prange if parallel else range

    def conv_f32(x, rowmap, colmap, wf, taps, bf, n, oh, ow, c, sx, zx):
        """The model's float32 conv at one output element, in onnxruntime's order: a chain of
        multiply-adds per ``K_BLOCK`` taps, the block sums added in order, then the bias."""
        total = F32(0.0)
        acc = F32(0.0)
        count = 0
        blocks = 0
        for ci in range(x.shape[3]):
            for kh in range(rowmap.shape[1]):
                r = rowmap[oh, kh]
                for kw in range(taps[c, 0], taps[c, 0] + taps[c, 1]):
                    col = colmap[ow, kw]
                    xv = F32(0.0)
                    if r >= 0 and col >= 0:
                        xv = F32(np.int32(x[n, r, col, ci]) - zx) * sx
                    acc = fma_f32(wf[c, ci, kh, kw], xv, acc)
                    count += 1
                    if count == K_BLOCK:
                        total = acc if blocks == 0 else total + acc
                        blocks += 1
                        acc = F32(0.0)
                        count = 0
        if count:
            total = acc if blocks == 0 else total + acc
        return total + bf[c]

    conv_f32 = config.jit(conv_f32, inline="always", **_FLAGS)

    def qu8_requant_fp32ties(v, x, rowmap, colmap, wf, taps, bf, delta, sx, zx, sy, zy, qmin,
                             qmax, out):
        n_img, oh_n, ow_n, co = v.shape
        half = F32(0.5)
        lo, hi = qmin - zy, qmax - zy
        for t in loop(n_img * oh_n):
            n, oh = t // oh_n, t % oh_n
            for ow in range(ow_n):
                vs, os = v[n, oh, ow], out[n, oh, ow]
                near = 0
                # NOTE: branch-free over the contiguous channels (vectorized); a tie matters
                # only where its two bytes clamp apart (not below a ReLU's zero)
                for c in range(co):
                    u = vs[c] / sy
                    f = np.floor(u)
                    if abs(u - f - half) <= delta[c] and f >= lo and f < hi:
                        near += 1
                    q = np.rint(u) + zy
                    q = qmin if q < qmin else q
                    q = qmax if q > qmax else q
                    os[c] = np.uint8(q)
                if near == 0:
                    continue
                for c in range(co):
                    u = vs[c] / sy
                    f = np.floor(u)
                    if abs(u - f - half) <= delta[c] and f >= lo and f < hi:
                        u = conv_f32(x, rowmap, colmap, wf, taps, bf, n, oh, ow, c, sx, zx) / sy
                        q = np.rint(u) + zy
                        q = qmin if q < qmin else q
                        q = qmax if q > qmax else q
                        os[c] = np.uint8(q)

    return qu8_requant_fp32ties


@functools.lru_cache(maxsize=None)
def kernel(parallel: bool):
    """The serial or ``prange`` (over output rows) dispatcher."""
    return (config.pjit if parallel else config.jit)(_source(bool(parallel)), **_FLAGS)


def reference(x, rowmap, colmap, wf, taps, bf, sx, zx, sy, zy, qmin, qmax):
    """numpy: ``conv_f32`` of every element (onnxruntime's order), rounded; u8[N, OH, OW, Co]."""
    x = np.asarray(x)
    n_img, oh_n, ow_n = x.shape[0], rowmap.shape[0], colmap.shape[0]
    co, c_n, kh_n, _ = wf.shape
    out = np.empty((n_img, oh_n, ow_n, co), np.uint8)
    xf = np.concatenate([(x.astype(np.int32) - int(zx)).astype(F32) * F32(sx),
                         np.zeros((n_img, x.shape[1], 1, c_n), F32)], axis=2)
    xf = np.concatenate([xf, np.zeros((n_img, 1) + xf.shape[2:], F32)], axis=1)  # index -1: 0
    for c in range(co):
        k0, kn = int(taps[c, 0]), int(taps[c, 1])
        order = [(ci, kh, kw) for ci in range(c_n) for kh in range(kh_n)
                 for kw in range(k0, k0 + kn)]
        total = None
        for b0 in range(0, len(order), K_BLOCK):
            acc = np.zeros((n_img, oh_n, ow_n), F32)
            for ci, kh, kw in order[b0:b0 + K_BLOCK]:
                xs = xf[:, rowmap[:, kh]][:, :, colmap[:, kw], ci]
                acc = (F64(wf[c, ci, kh, kw]) * xs.astype(F64) + acc.astype(F64)).astype(F32)
            total = acc if total is None else (total + acc).astype(F32)
        u = ((total + F32(bf[c])).astype(F32) / F32(sy)).astype(F32)
        out[..., c] = np.clip(np.rint(u) + zy, qmin, qmax).astype(np.uint8)
    return out
