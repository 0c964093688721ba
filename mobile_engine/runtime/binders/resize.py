"""Resize binders (nearest for any byte width, bilinear and K-tap for float32, NHWC).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_layout as lanes
from kernels import f32_resize as k
from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.layout import noop, operands, pick
from mobile_engine.runtime.binders.registry import binds


@binds(*table.ids("{lane_tag}_resize_nearest_nhwc"))
def bind_nearest(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    lane = lanes.LANES[v.choice(params, "lane", lanes.LANES)]
    _check_images(x, out, None)
    _, h, w, _ = x.shape
    _, oh, ow, _ = out.shape
    y_index = v.table("weight 'y_index'", weights["y_index"], 0, h, shape=(oh,))
    x_index = v.table("weight 'x_index'", weights["x_index"], 0, w, shape=(ow,))
    if out.size == 0:
        return noop, ()
    fn = pick(k.nearest_serial, k.nearest_parallel, out.size, out.shape[0] * out.shape[1],
              threads)
    return fn, (x.view(lane), out.view(lane), y_index, x_index)


def _check_images(x, out, dtype) -> None:
    """x [N, H, W, C] and out [N, OH, OW, C] of one dtype (``dtype`` if given)."""
    v.array("the input", x, dtype, ndim=4)
    v.array("the output", out, x.dtype, ndim=4)
    v.require(x.shape[0] == out.shape[0] and x.shape[3] == out.shape[3],
              f"input {list(x.shape)} and output {list(out.shape)} differ in batch or channels")


@binds("f32_resize_bilinear_nhwc")
def bind_bilinear(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    _check_images(x, out, np.float32)
    _, h, w, _ = x.shape
    _, oh, ow, _ = out.shape
    tables = (v.table("weight 'y_index'", weights["y_index"], 0, h, shape=(2, oh)),
              v.array("weight 'y_weight'", weights["y_weight"], np.float32, shape=(oh,)),
              v.table("weight 'x_index'", weights["x_index"], 0, w, shape=(2, ow)),
              v.array("weight 'x_weight'", weights["x_weight"], np.float32, shape=(ow,)))
    if out.size == 0:
        return noop, ()
    fn = pick(k.bilinear_serial, k.bilinear_parallel, out.size, out.shape[0] * out.shape[1],
              threads)
    return fn, (x, out, *tables)


@binds("f32_resize_taps_nhwc")
def bind_taps(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    _check_images(x, out, np.float32)
    _, h, w, _ = x.shape
    _, oh, ow, _ = out.shape
    ky = np.shape(weights["y_index"])[-1]
    kx = np.shape(weights["x_index"])[-1]
    tables = (v.table("weight 'y_index'", weights["y_index"], 0, h, shape=(oh, ky)),
              v.array("weight 'y_weight'", weights["y_weight"], np.float32, shape=(oh, ky)),
              v.array("weight 'y_outside'", weights["y_outside"], np.uint8, shape=(oh,)),
              v.table("weight 'x_index'", weights["x_index"], 0, w, shape=(ow, kx)),
              v.array("weight 'x_weight'", weights["x_weight"], np.float32, shape=(ow, kx)),
              v.array("weight 'x_outside'", weights["x_outside"], np.uint8, shape=(ow,)),
              v.array("weight 'fill'", weights["fill"], np.float32, shape=(1,)))
    if out.size == 0:
        return noop, ()
    fn = pick(k.taps_serial, k.taps_parallel, out.size, out.shape[0] * out.shape[1], threads)
    return fn, (x, out, *tables)
