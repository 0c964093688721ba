"""Per-output-channel symmetric int8 weights.

For a weight ``w`` with output channels on ``axis`` (conv ``[Co, Ci/g, KH, KW]``: axis 0)::

    s[c] = max|w[c]| / 127            (1 when the channel is all zeros)
    q[c] = clamp(rint(w[c] / s[c]), -127, 127)          # -128 unused: the range is symmetric

so ``w ~ q * s[c]`` with the zero point 0 and an error of at most ``s[c] / 2`` per weight.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.dtypes import QuantParams

QMAX = 127


def channel_scales(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """f64[w.shape[axis]]: max|w| per output channel / 127 (1 for an all-zero channel)."""
    w = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    return np.where(amax > 0, amax / QMAX, 1.0)


def quantize_weights(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, QuantParams]:
    """(int8 weights of ``w``'s shape, per-channel symmetric QuantParams on ``axis``)."""
    scales = channel_scales(w, axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(np.asarray(w, np.float64) / scales.reshape(shape)), -QMAX, QMAX)
    params = QuantParams(tuple(float(s) for s in scales), (0,) * scales.size, axis)
    return np.ascontiguousarray(q.astype(np.int8)), params


def dequantize_weights(q: np.ndarray, params: QuantParams) -> np.ndarray:
    shape = [1] * q.ndim
    shape[params.axis] = -1
    return q.astype(np.float32) * np.asarray(params.scale, np.float32).reshape(shape)
