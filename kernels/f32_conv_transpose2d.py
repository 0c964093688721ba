"""fp32 transposed convolution, run by the igemm kernel of ``f32_conv2d.py``.

A transposed convolution is a stride-1 convolution over the input zero-stuffed by the stride:
``out[o] = sum_t x[i] w[t]`` over ``o + pad0 = i * stride + t * dilation``. The indirection tables
(``kernels/indirection.conv_transpose_axis_map``) say which input row/column each (output, tap)
reads, -1 for the stuffed zeros; weights are re-laid out ``[Ci, Co/g, KH, KW] -> [Co, Ci/g, KH,
KW]`` (no flip: the tables index the original taps) and packed like a conv's. The kernel runs
with ``step = stride_w``, so each tile holds output pixels of one phase that share their holes:
whole taps are skipped, not multiplied by zero. Rows of holes are skipped likewise.

Kernel id: ``f32_conv_transpose2d_igemm_{MR}x{NR}_minmax`` (binds to the igemm kernel).
"""
from __future__ import annotations

import numpy as np

from kernels import config
from kernels import f32_conv2d as igemm
from kernels.f32_conv2d import F32
from kernels.indirection import conv_transpose_axis_map


def kernel_id(mr: int, nr: int) -> str:
    return f"f32_conv_transpose2d_igemm_{mr}x{nr}_minmax"


def output_size(size, k, stride, dilation, pad0, pad1, output_padding) -> int:
    return stride * (size - 1) + output_padding + dilation * (k - 1) + 1 - pad0 - pad1


def transpose_tables(x_shape, kernel, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                     output_padding=(0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(rowmap, colmap) of a transposed conv over NHWC input ``x_shape``; kernel = (KH, KW)."""
    _, h, w, _ = x_shape
    t, l, b, r = pads
    oh = output_size(h, kernel[0], strides[0], dilations[0], t, b, output_padding[0])
    ow = output_size(w, kernel[1], strides[1], dilations[1], l, r, output_padding[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"transposed conv output {oh}x{ow} is empty (input {h}x{w}, "
                         f"kernel {kernel}, pads {pads})")
    rowmap = conv_transpose_axis_map(h, oh, kernel[0], strides[0], dilations[0], t)
    colmap = conv_transpose_axis_map(w, ow, kernel[1], strides[1], dilations[1], l)
    return rowmap, colmap


def pack_weights(w: np.ndarray, nr: int, group: int = 1) -> np.ndarray:
    """Transposed-conv weights ``[Ci, Co/g, KH, KW]`` -> the igemm layout
    ``f32[g * NB, KH, KW, Ci/g, NR]`` (see ``f32_conv2d.pack_weights``)."""
    ci, cog, kh, kw = w.shape
    cig = ci // group
    wc = np.asarray(w, F32).reshape(group, cig, cog, kh, kw).transpose(0, 2, 1, 3, 4)
    return igemm.pack_weights(wc.reshape(group * cog, cig, kh, kw), nr, group)


def conv_transpose2d(x, w, bias=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                     group=1, output_padding=(0, 0), activation_kind=0,
                     act_params=(), tile=None, parallel=None):
    """Convenience entry with ``kernels.reference.conv_transpose2d``'s signature.

    x: f32[N, H, W, Ci]; w: [Ci, Co/group, KH, KW]; returns f32[N, OH, OW, Co].
    """
    x = np.ascontiguousarray(x, F32)
    ci, cog, kh, kw = w.shape
    co = cog * group
    rowmap, colmap = transpose_tables(x.shape, (kh, kw), strides, dilations, pads, output_padding)
    mr, nr = tile or igemm.choose_tile(cog)
    wp = pack_weights(w, nr, group)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), F32)
    if parallel is None:
        parallel = config.use_parallel(x.size * cog * kh * kw // config.MAC_WORK)
    return igemm.run_igemm(x, rowmap, colmap, wp, bias, None, out, group=group,
                           step=strides[1], act=int(activation_kind), act_params=act_params,
                           mr=mr, nr=nr, parallel=parallel)


def _reference():
    from kernels import reference
    return reference.conv_transpose2d
