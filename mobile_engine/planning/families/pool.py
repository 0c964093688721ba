"""Pooling: MAX_POOL, AVG_POOL, GLOBAL_AVG_POOL (fp32, NHWC; kernels/f32_pool.py).

Params carry the window geometry as plain ints; binders pick the parallel variant when the
window taps (output elements x window size) reach ``PARALLEL_MIN_WORK``.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families.layout import split_inputs
from mobile_engine.planning.step import Step, lowers


def _check_f32(node: Node, graph: Graph) -> None:
    x = graph.tensors[node.inputs[0]]
    if x.dtype is not DType.FLOAT32:
        raise UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): input {x.name!r} "
                                       f"is {x.dtype.value} {x.shape}; pooling kernels are fp32")


@lowers(Op.MAX_POOL, Op.AVG_POOL)
def lower_pool(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    a = node.attrs
    names, consts, params = split_inputs(node, graph)
    params.update(kernel=list(a["kernel"]), strides=list(a["strides"]), pads=list(a["pads"]))
    out = graph.tensors[node.outputs[0]]
    flops = int(np.prod(out.shape)) * a["kernel"][0] * a["kernel"][1]
    if node.op is Op.MAX_POOL:
        params["dilations"] = list(a["dilations"])
        kernel = "f32_maxpool2d_nhwc"
    else:
        params["count_include_pad"] = bool(a["count_include_pad"])
        kernel = "f32_avgpool2d_nhwc"
    return [Step(node.name, kernel, names, list(node.outputs), params, consts, flops)]


@lowers(Op.GLOBAL_AVG_POOL)
def lower_global_pool(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    names, consts, params = split_inputs(node, graph)
    x = graph.tensors[node.inputs[0]]
    return [Step(node.name, "f32_global_avgpool_nhwc", names, list(node.outputs), params, consts,
                 int(np.prod(x.shape)))]
