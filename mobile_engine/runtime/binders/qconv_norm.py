"""int8 conv + instance norm in one step: the conv's exact int32 accumulators feed the norm's
statistics (never quantizing the pre-norm tensor), then the norm requantizes in place.
"""
from __future__ import annotations

import numpy as np

from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders import qconv
from mobile_engine.runtime.binders import qelementwise as qew
from mobile_engine.runtime.binders.registry import binds

# --- binder --------------------------------------------------------------------------------
def _bind(kernel: str):
    f = table.fields(kernel)
    mr, nr, suffix = f["mr"], f["nr"], f["suffix"]

    def bind(params, weights, inputs, outputs, threads=None):
        v.require(len(outputs) == 2 and len(inputs) >= 1,
                  f"{len(inputs)} inputs / {len(outputs)} outputs: expected x, the norm's "
                  f"inputs, and outputs [uint8 y, float32 scratch]")
        conv_fn, conv_args = qconv.bind_igemm(mr, nr, "fp32out", params, weights, inputs[:1],
                                              outputs[1:], threads)
        y = outputs[1]
        v.require(conv_args[13] == 0, "params['act'] must be 0 (none) before a fused norm")
        sums = np.zeros(y.shape[0] * y.shape[1] * 2 * y.shape[3], np.float64)
        norm_fn, norm_args = qew.bind_norm_qu8(params, weights, [y] + list(inputs[1:]),
                                               outputs[:1], suffix == "_add", sums, "norm_",
                                               threads)
        conv_args = conv_args + (sums,)

        def run():
            conv_fn(*conv_args)
            norm_fn(*norm_args)
        return run, ()

    return bind


for _kernel in table.ids("qu8_conv2d_igemm_{mr}x{nr}c4_instance_norm{suffix}"):
    binds(_kernel)(_bind(_kernel))
