"""Indirection tables for convolutions: which input row/column each (output position, tap) reads.

Padding (zero, reflect, edge), nearest integer upsampling, strides and dilations all act on H and
W separately, so one small table per axis describes them all:

    rowmap[oh, kh] = input row read by output row oh at kernel row kh, or -1 (a zero tap)
    colmap[ow, kw] = likewise for columns

For a convolution over ``pad(repeat(x, up), pads, mode)``:
``src = pad(arange(size).repeat(up), (p0, p1), mode)`` (zero padding marks -1) and
``map[o, t] = src[o * stride + t * dilation]``. No padded or upsampled copy of the input exists.

A transposed convolution is a stride-1 convolution over an implicitly zero-stuffed input:
output ``o`` receives ``x[i] * w[t]`` when ``o + p0 = i * stride + t * dilation``, so
``map[o, t] = (o + p0 - t * dilation) / stride`` when that is an integer in ``[0, size)``, else -1.

Plain numpy, compile time only. Tables are int32 ``[out, k]``, C-contiguous.
"""
from __future__ import annotations

import numpy as np


PAD_MODES = ("constant", "reflect", "edge")


def conv_output_size(size: int, k: int, stride: int, dilation: int, pad0: int, pad1: int) -> int:
    """As ``mobile_engine.ir.shapes.conv_output_size`` (kernels import nothing from the engine)."""
    return (size + pad0 + pad1 - dilation * (k - 1) - 1) // stride + 1


def conv_axis_map(size: int, k: int, stride: int = 1, dilation: int = 1, pad0: int = 0,
                  pad1: int = 0, mode: str = "constant", upsample: int = 1) -> np.ndarray:
    """int32[out, k] input indices of one axis of a convolution, -1 for zero-padded taps.

    ``size`` is the input size before upsampling; ``pad0``/``pad1`` pad the upsampled axis.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode {mode!r}; expected one of {PAD_MODES}")
    up = size * upsample
    out = conv_output_size(up, k, stride, dilation, pad0, pad1)
    if out <= 0:
        raise ValueError(f"kernel {k} (dilation {dilation}) does not fit axis {up} with pads "
                         f"({pad0}, {pad1})")
    src = np.arange(size, dtype=np.int64).repeat(upsample)
    if mode == "constant":
        src = np.pad(src, (pad0, pad1), mode="constant", constant_values=-1)
    else:
        src = np.pad(src, (pad0, pad1), mode=mode)    # numpy's rules, as kernels/reference.py
    taps = np.arange(out)[:, None] * stride + np.arange(k)[None, :] * dilation
    return np.ascontiguousarray(src[taps], dtype=np.int32)


def conv_transpose_axis_map(size: int, out: int, k: int, stride: int = 1, dilation: int = 1,
                            pad0: int = 0) -> np.ndarray:
    """int32[out, k] input indices of one axis of a transposed convolution, -1 for holes."""
    v = np.arange(out)[:, None] + pad0 - np.arange(k)[None, :] * dilation
    i = v // stride
    ok = (v % stride == 0) & (i >= 0) & (i < size)
    return np.ascontiguousarray(np.where(ok, i, -1), dtype=np.int32)
