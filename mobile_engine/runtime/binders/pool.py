"""Pooling binders: max/average windows and the global average pool (fp32 NHWC).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_pool as k
from kernels.indirection import conv_output_size
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.layout import noop, operands, pick
from mobile_engine.runtime.binders.registry import binds

# NOTE: the max pool kernel walks every window row (skipping those outside the input): a
# window of 2^40 rows with pads to match passes the geometry check and would loop for hours.
MAX_WINDOW = 1 << 16


def _bind_pool(maxpool: bool):
    """The binder of the max (``dilations``) or average (``count_include_pad``) pool: the
    kernel id, not the params present, says which kernel runs."""
    def bind(params, weights, inputs, outputs, threads=None):
        x, out = operands(params, weights, inputs)[0], outputs[0]
        v.array("the input", x, np.float32, ndim=4)
        v.array("the output", out, np.float32, ndim=4)
        (kh, kw) = v.integers(params, "kernel", 2, lo=1, hi=MAX_WINDOW)
        (sh, sw) = v.integers(params, "strides", 2, lo=1)
        (pt, pl, pb, pr) = v.integers(params, "pads", 4)
        (dh, dw) = v.integers(params, "dilations", 2, lo=1) if maxpool else (1, 1)
        include_pad = False if maxpool else v.flag(params, "count_include_pad")
        n, h, w, c = x.shape
        # NOTE: the kernels clip every tap to the input; the geometry check keeps a tampered
        # window from making them loop far beyond the real work.
        geometry = (n, conv_output_size(h, kh, sh, dh, pt, pb),
                    conv_output_size(w, kw, sw, dw, pl, pr), c)
        v.require(out.shape == geometry, f"window {kh}x{kw} strides {sh}x{sw} dilations "
                                         f"{dh}x{dw} pads {[pt, pl, pb, pr]} on input "
                                         f"{list(x.shape)} give {list(geometry)}, the output "
                                         f"is {list(out.shape)}")
        if out.size == 0:
            return noop, ()
        work, tasks = out.size * kh * kw, out.shape[0] * out.shape[1]
        if maxpool:
            fn = pick(k.maxpool_serial, k.maxpool_parallel, work, tasks, threads)
            return fn, (x, out, kh, kw, sh, sw, pt, pl, dh, dw)
        fn = pick(k.avgpool_serial, k.avgpool_parallel, work, tasks, threads)
        return fn, (x, out, kh, kw, sh, sw, pt, pl, include_pad)
    return bind


binds("f32_maxpool2d_nhwc")(_bind_pool(True))
binds("f32_avgpool2d_nhwc")(_bind_pool(False))


@binds("f32_global_avgpool_nhwc")
def bind_global_pool(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    v.array("the input", x, np.float32, ndim=4)
    n, h, w, c = x.shape
    v.array("the output", out, np.float32, size=n * c)
    if out.size == 0:
        return noop, ()
    fn = pick(k.global_avgpool_serial, k.global_avgpool_parallel, x.size, h * w, threads)
    chunks = k.GLOBAL_CHUNKS if fn is k.global_avgpool_parallel else 1
    # NOTE: scratch allocated once here, at bind time; run() never allocates.
    partial = np.zeros((n * chunks, c), np.float64)
    return fn, (x.reshape(n, h * w, c), out.reshape(n, c), partial)
