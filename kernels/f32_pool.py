"""fp32 pooling kernels, NHWC: max pool, average pool, global average pool.

Every inner loop runs across the channels of one pixel (contiguous), so it is a vector loop
for any channel count; window bounds are clipped once per output pixel, so padding costs nothing
(max pool pads act as -inf, average pool pads as zeros). The serial and ``prange`` variants are
one body each; the parallel variant splits (batch, output row) pairs, or for the global pool
``chunks`` slices of each image's pixels.

Layout contract: x: f32[N, H, W, C] C-contiguous (read only); out: f32[N, OH, OW, C]
C-contiguous, never aliasing x. NaN propagates through max pool as in onnxruntime.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels.config import jit, pjit

F32 = np.float32
# NOTE: pixel chunks per image of the parallel global pool: balances 2, 4 or 8 threads.
GLOBAL_CHUNKS = 8


def _maxpool(loop):
    def maxpool2d_nhwc(x, out, kh, kw, sh, sw, pt, pl, dh, dw):
        """out[n, oy, ox, c] = max over taps inside x of x[n, oy*sh-pt+i*dh, ox*sw-pl+j*dw, c]."""
        n_, h, w, c_ = x.shape
        oh, ow = out.shape[1], out.shape[2]
        ninf = F32(-np.inf)
        for t in loop(n_ * oh):
            n = t // oh
            oy = t % oh
            y0 = oy * sh - pt
            for ox in range(ow):
                x0 = ox * sw - pl
                o = out[n, oy, ox]
                for c in range(c_):
                    o[c] = ninf
                for i in range(kh):
                    iy = y0 + i * dh
                    if iy < 0 or iy >= h:
                        continue
                    for j in range(kw):
                        ix = x0 + j * dw
                        if ix < 0 or ix >= w:
                            continue
                        row = x[n, iy, ix]
                        for c in range(c_):
                            v = row[c]
                            a = o[c]
                            o[c] = v if (v > a or v != v) else a    # keeps NaN once seen
    return maxpool2d_nhwc


def _avgpool(loop):
    def avgpool2d_nhwc(x, out, kh, kw, sh, sw, pt, pl, count_include_pad):
        """Mean of each window's taps inside x; divided by kh*kw when ``count_include_pad``."""
        n_, h, w, c_ = x.shape
        oh, ow = out.shape[1], out.shape[2]
        zero = F32(0)
        for t in loop(n_ * oh):
            n = t // oh
            oy = t % oh
            y0 = oy * sh - pt
            ya, yb = max(y0, 0), min(y0 + kh, h)
            for ox in range(ow):
                x0 = ox * sw - pl
                xa, xb = max(x0, 0), min(x0 + kw, w)
                o = out[n, oy, ox]
                for c in range(c_):
                    o[c] = zero
                for iy in range(ya, yb):
                    for ix in range(xa, xb):
                        row = x[n, iy, ix]
                        for c in range(c_):
                            o[c] += row[c]
                count = kh * kw if count_include_pad else max(yb - ya, 0) * max(xb - xa, 0)
                inv = F32(1) / F32(count)
                for c in range(c_):
                    o[c] *= inv
    return avgpool2d_nhwc


def _global_avgpool(loop):
    def global_avgpool_nhwc(x, out, partial):
        """out[n, c] = mean over pixels of x[n, p, c]; x: f32[N, HW, C]; out: f32[N, C];
        partial: f64[N * chunks, C] scratch (chunks = partial rows per image, 1 when serial).
        Sums in float64: a 480x640 image is 300k terms."""
        n_, hw, c_ = x.shape
        chunks = partial.shape[0] // n_
        for t in loop(n_ * chunks):
            n = t // chunks
            k = t % chunks
            p = partial[t]
            for c in range(c_):
                p[c] = 0.0
            for q in range(k * hw // chunks, (k + 1) * hw // chunks):
                row = x[n, q]
                for c in range(c_):
                    p[c] += row[c]
        inv = 1.0 / hw
        for n in range(n_):
            for c in range(c_):
                s = 0.0
                for k in range(chunks):
                    s += partial[n * chunks + k, c]
                out[n, c] = F32(s * inv)
    return global_avgpool_nhwc


maxpool_serial, maxpool_parallel = jit(_maxpool(range)), pjit(_maxpool(prange))
avgpool_serial, avgpool_parallel = jit(_avgpool(range)), pjit(_avgpool(prange))
global_avgpool_serial = jit(_global_avgpool(range))
global_avgpool_parallel = pjit(_global_avgpool(prange))
