"""RESIZE (NHWC, nearest or linear; kernels/f32_resize.py).

The lowering turns the ONNX coordinate rules into per-axis index tables (and blend weights for
linear) once; the kernels gather rows and blend across channels. Nearest works for every dtype
(byte lanes); linear needs fp32.
"""
from __future__ import annotations

import numpy as np

from kernels import f32_layout as lanes
from kernels import f32_resize as k
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families.layout import split_inputs
from mobile_engine.planning.step import Step, lowers


@lowers(Op.RESIZE)
def lower_resize(node: Node, graph: Graph) -> list[Step]:
    x = graph.tensors[node.inputs[0]]
    a = node.attrs
    n, h, w, c = x.shape
    oh, ow = a["size"]
    mode = a["mode"]
    if mode not in ("nearest", "linear"):
        raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE): mode {mode!r}; supported: "
                                       f"nearest, linear")
    if mode == "linear" and x.dtype is not DType.FLOAT32:
        raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE): linear resize of "
                                       f"{x.dtype.value} input {x.shape}; it needs float32")
    sh, sw = k.resize_scales((h, w), (oh, ow), a["scales"])
    try:
        y_index, y_weight = k.axis_tables(h, oh, sh, mode, a["coordinate_mode"],
                                          a["nearest_mode"])
        x_index, x_weight = k.axis_tables(w, ow, sw, mode, a["coordinate_mode"],
                                          a["nearest_mode"])
    except (ValueError, ZeroDivisionError) as exc:
        raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE, input {x.shape} -> "
                                       f"{(n, oh, ow, c)}): {exc}") from None
    names, consts, params = split_inputs(node, graph)
    if mode == "nearest":
        lane = lanes.lane_bytes(c * x.dtype.itemsize)
        params["lane"] = lane
        weights = {**consts, "y_index": np.ascontiguousarray(y_index[0]),
                   "x_index": np.ascontiguousarray(x_index[0])}
        return [Step(node.name, f"{lanes.LANE_PREFIX[lane]}_resize_nearest_nhwc", names,
                     list(node.outputs), params, weights)]
    weights = {**consts, "y_index": y_index, "y_weight": y_weight, "x_index": x_index,
               "x_weight": x_weight}
    return [Step(node.name, "f32_resize_bilinear_nhwc", names, list(node.outputs), params,
                 weights, flops=9 * n * oh * ow * c)]
