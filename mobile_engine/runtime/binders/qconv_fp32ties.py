"""int8 conv whose uint8 output rounds as its QDQ model's float32 conv
(kernels/qu8_requant_fp32ties.py): the ``fp32out`` conv into a scratch tensor, then the tie
rounding into the output."""
from __future__ import annotations

import numpy as np

from kernels import config
from kernels import qu8_requant_fp32ties as kties
from kernels import table
from kernels.f32_conv2d import readonly
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.conv import tables_from_params
from mobile_engine.runtime.binders.registry import BINDERS, binds

F32 = np.float32


def _bind(conv_kernel: str):
    def bind(params, weights, inputs, outputs, threads=None):
        v.require(len(outputs) == 2, f"{len(outputs)} outputs: expected [uint8 y, float32 "
                                     f"scratch]")
        y, scratch = outputs
        v.array("the output", y, np.uint8, ndim=4)
        v.array("the scratch", scratch, F32, shape=y.shape)
        v.require(params.get("act") == 0, "params['act'] must be 0 (none): the rounding clamps")
        conv_fn, conv_args = BINDERS[conv_kernel](params, weights, inputs[:1], [scratch],
                                                  threads)
        x = conv_args[0]
        rowmap, colmap = tables_from_params(params, x.shape, y.shape[1:3])
        co, c = y.shape[3], x.shape[3]
        kh, kw = rowmap.shape[1], colmap.shape[1]
        wf = v.array("weight 'wf'", weights.get("wf"), F32, shape=(co, c, kh, kw))
        taps = v.array("weight 'taps'", weights.get("taps"), np.int32, shape=(co, 2))
        v.require(bool(np.all((taps[:, 0] >= 0) & (taps[:, 1] >= 1)
                              & (taps[:, 0] + taps[:, 1] <= kw))),
                  f"weight 'taps' leaves the kernel's {kw} columns")
        bf = v.array("weight 'bf'", weights.get("bf"), F32, shape=(co,))
        delta = v.array("weight 'delta'", weights.get("delta"), F32, shape=(co,))
        sx, sy = params.get("sx"), params.get("sy")
        v.require(all(isinstance(s, float) and np.isfinite(s) and s > 0 for s in (sx, sy)),
                  f"params sx={sx!r}, sy={sy!r}: expected positive scales")
        zx = v.integer(params, "zx", 0, 255)
        zy, qmin, qmax = (v.integer(params, k, 0, 255) for k in ("zy", "qmin", "qmax"))
        parallel = config.use_parallel(y.size, y.shape[0] * y.shape[1], threads)
        fn = kties.kernel(parallel)
        args = (scratch, x, readonly(rowmap), readonly(colmap), wf, taps, bf, delta, F32(sx),
                np.int32(zx), F32(sy), F32(zy), F32(qmin), F32(qmax), y)

        def run():
            conv_fn(*conv_args)
            fn(*args)
        return run, ()

    return bind


for _grammar, _conv in (("qu8_conv2d_igemm_{mr}x{nr}c4_requant_fp32ties",
                         "qu8_conv2d_igemm_{mr}x{nr}c4_fp32out"),
                        ("qu8_conv2d_kdot16_{mr}x{lanes}_requant_fp32ties",
                         "qu8_conv2d_kdot16_{mr}x{lanes}_fp32out")):
    for _kernel, _fields in table.ids(_grammar).items():
        binds(_kernel)(_bind(_conv.format(**_fields)))
