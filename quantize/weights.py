"""Per-output-channel symmetric int8 weights.

For a weight ``w`` with output channels on ``axis`` (conv ``[Co, Ci/g, KH, KW]``: axis 0)::

    s[c] = max|w[c]| / 127            (1 when the channel is all zeros, or dead: below 1e-10
                                       of the largest channel; its weights round to 0)
    q[c] = clamp(rint(w[c] / s[c]), -127, 127)          # -128 unused: the range is symmetric

so ``w ~ q * s[c]`` with the zero point 0 and an error of at most ``s[c] / 2`` per weight.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.dtypes import QuantParams

QMAX = 127


# NOTE: a channel whose largest weight is this far below the largest channel's is dead (exporters
# leave 1e-21-sized leftovers); its scale would make bias / (sx * sw) overflow int32
DEAD = 1e-10


def channel_scales(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """f64[w.shape[axis]]: max|w| per output channel / 127 (1 for a zero or dead channel)."""
    w = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(w).max(axis=1) if w.shape[1] else np.zeros(w.shape[0])
    live = amax > DEAD * amax.max(initial=0.0)
    return np.where(live, amax / QMAX, 1.0)


BIAS_LIMIT = 2.0 ** 30        # |bias / (sx * sw)| must stay well inside int32


def bias_floor(bias, sx: float) -> np.ndarray | None:
    """Smallest weight scales keeping ``rint(bias / (sx * sw))`` within ``BIAS_LIMIT``."""
    if bias is None:
        return None
    return np.abs(np.asarray(bias, np.float64)) / (float(sx) * BIAS_LIMIT)


def quantize_weights(w: np.ndarray, axis: int = 0, min_scale=None
                     ) -> tuple[np.ndarray, QuantParams]:
    """(int8 weights of ``w``'s shape, per-channel symmetric QuantParams on ``axis``).

    ``min_scale`` (per channel, e.g. ``bias_floor``): scales are raised to it (a channel of
    near-zero weights with a real bias; its weights then round to fewer levels).
    """
    scales = channel_scales(w, axis)
    if min_scale is not None:
        scales = np.maximum(scales, np.broadcast_to(min_scale, scales.shape))
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(np.asarray(w, np.float64) / scales.reshape(shape)), -QMAX, QMAX)
    params = QuantParams(tuple(float(s) for s in scales), (0,) * scales.size, axis)
    return np.ascontiguousarray(q.astype(np.int8)), params


def exact_scales(w: np.ndarray, q: np.ndarray, axis: int = 0) -> np.ndarray | None:
    """f32 per-channel scales ``s`` with ``f32(q) * s == w`` for every weight (float32
    multiplies, as DequantizeLinear computes), or None: the int8 weights of a QDQ model and
    its scales, recovered from the dequantized float weights. A channel of zeros takes 1."""
    wc = np.moveaxis(np.asarray(w), axis, 0).reshape(w.shape[axis], -1)
    qc = np.moveaxis(np.asarray(q), axis, 0).reshape(q.shape[axis], -1).astype(np.float32)
    if wc.dtype != np.float32:
        return None
    scales = np.ones(len(wc), np.float32)
    for c, (wr, qr) in enumerate(zip(wc, qc)):
        k = int(np.argmax(np.abs(qr)))
        if qr[k] == 0:
            if np.any(wr != 0):
                return None
            continue
        s0 = np.float32(wr[k] / qr[k])
        for cand in (s0, *(np.float32(s0 + d * np.spacing(s0)) for d in (-1, 1, -2, 2))):
            if np.array_equal(qr * cand, wr):
                scales[c] = cand
                break
        else:
            return None
    return scales


def dequantize_weights(q: np.ndarray, params: QuantParams) -> np.ndarray:
    shape = [1] * q.ndim
    shape[params.axis] = -1
    return q.astype(np.float32) * np.asarray(params.scale, np.float32).reshape(shape)
