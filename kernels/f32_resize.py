"""Resize kernels, NHWC: nearest (any dtype, on byte lanes), bilinear (fp32) and the general
K-tap resize (fp32: cubic, antialiased downsampling, tf_crop_and_resize, half_pixel_symmetric).

All coordinate arithmetic (ONNX coordinate and nearest modes, scales, clamping) happens at compile
time in :func:`axis_tables`, which uses ``reference.resize_axis_weights`` itself; the kernels only
gather rows and blend two taps per axis, with the inner loop across the channels of a pixel.

Layout contract: x: [N, H, W, C] C-contiguous (read only); out: [N, OH, OW, C] C-contiguous, not
aliasing x. Nearest kernels see both as lanes ``[..., C * itemsize / lane]`` (see
kernels/f32_layout.py); index tables int64, weights f32 (the weight of the second tap).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import jit, pjit

F32 = np.float32


def _nearest(loop):
    def resize_nearest_nhwc(x, out, y_index, x_index):
        """out[n, oy, ox, :] = x[n, y_index[oy], x_index[ox], :] (lanes)."""
        n_, oh, ow, bl = out.shape
        for t in loop(n_ * oh):
            n = t // oh
            oy = t % oh
            src = x[n, y_index[oy]]
            dst = out[n, oy]
            for ox in range(ow):
                sx = x_index[ox]
                for b in range(bl):
                    dst[ox, b] = src[sx, b]
    return resize_nearest_nhwc


def _bilinear(loop):
    def resize_bilinear_nhwc(x, out, y_index, y_weight, x_index, x_weight):
        """Rows y_index[0|1, oy] blended by y_weight[oy], then columns x_index[0|1, ox] by
        x_weight[ox] (the weight of tap 1): the reference's order of operations."""
        n_, oh, ow, c_ = out.shape
        one = F32(1)
        for t in loop(n_ * oh):
            n = t // oh
            oy = t % oh
            ra = x[n, y_index[0, oy]]
            rb = x[n, y_index[1, oy]]
            wy = y_weight[oy]
            wy0 = one - wy
            dst = out[n, oy]
            for ox in range(ow):
                p = x_index[0, ox]
                q = x_index[1, ox]
                wx = x_weight[ox]
                wx0 = one - wx
                for c in range(c_):
                    top = ra[p, c] * wy0 + rb[p, c] * wy
                    bot = ra[q, c] * wy0 + rb[q, c] * wy
                    dst[ox, c] = top * wx0 + bot * wx
    return resize_bilinear_nhwc


def _taps(loop):
    def resize_taps_nhwc(x, out, y_index, y_weight, y_outside, x_index, x_weight, x_outside,
                         fill):
        """out[n, oy, ox, :] = sum_ky sum_kx y_weight[oy, ky] * x_weight[ox, kx] *
        x[n, y_index[oy, ky], x_index[ox, kx], :], or fill[0] where y_outside[oy] or
        x_outside[ox] (tf_crop_and_resize beyond the input)."""
        n_, oh, ow, c_ = out.shape
        ky_ = y_index.shape[1]
        kx_ = x_index.shape[1]
        zero = F32(0)
        for t in loop(n_ * oh):
            n = t // oh
            oy = t % oh
            dst = out[n, oy]
            for ox in range(ow):
                if y_outside[oy] != 0 or x_outside[ox] != 0:
                    for c in range(c_):
                        dst[ox, c] = fill[0]
                    continue
                for c in range(c_):
                    dst[ox, c] = zero
                for ky in range(ky_):
                    row = x[n, y_index[oy, ky]]
                    wy = y_weight[oy, ky]
                    for kx in range(kx_):
                        wt = wy * x_weight[ox, kx]
                        src = row[x_index[ox, kx]]
                        for c in range(c_):
                            dst[ox, c] += wt * src[c]
    return resize_taps_nhwc


nearest_serial, nearest_parallel = jit(_nearest(range)), pjit(_nearest(prange))
taps_serial, taps_parallel = jit(_taps(range)), pjit(_taps(prange))
bilinear_serial, bilinear_parallel = jit(_bilinear(range)), pjit(_bilinear(prange))


def axis_tables(in_size: int, out_size: int, scale: float, mode: str, coordinate_mode: str,
                nearest_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64[2, out_size] source indices, f32[out_size] weight of the second) for one axis."""
    i0, i1, w = ref.resize_axis_weights(in_size, out_size, scale, mode, coordinate_mode,
                                        nearest_mode)
    return (np.ascontiguousarray(np.stack([i0, i1]).astype(np.int64)),
            np.ascontiguousarray(np.asarray(w, np.float32)))


def axis_taps(in_size: int, out_size: int, scale: float, attrs: dict, axis: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int64[out, K] indices, f32[out, K] weights, uint8[out] outside) of one axis (0: H,
    1: W) for the general kernel, from a RESIZE node's attributes."""
    roi = tuple(attrs.get("roi") or ()) or (0.0, 0.0, 1.0, 1.0)
    i, w, o = ref.resize_axis_taps(in_size, out_size, scale, attrs["mode"],
                                   attrs["coordinate_mode"], attrs["nearest_mode"],
                                   attrs.get("cubic_coeff_a", -0.75),
                                   attrs.get("exclude_outside", False),
                                   attrs.get("antialias", False), (roi[axis], roi[axis + 2]))
    return (np.ascontiguousarray(i, np.int64), np.ascontiguousarray(w, np.float32),
            np.ascontiguousarray(o, np.uint8))


def resize_scales(in_hw, size, scales) -> tuple[float, float]:
    """The H, W scales the reference uses: the model's, else output / input size."""
    return tuple(scales) if scales else (size[0] / in_hw[0], size[1] / in_hw[1])
