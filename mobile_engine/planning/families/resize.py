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
from mobile_engine.planning import validate as v
from mobile_engine.planning.families.layout import noop, operands, pick, split_inputs
from mobile_engine.planning.step import Step, binds, lowers


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


@binds("x32_resize_nearest_nhwc", "x8_resize_nearest_nhwc")
def bind_nearest(params, weights, inputs, outputs):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    lane = lanes.LANES[v.choice(params, "lane", lanes.LANES)]
    _check_images(x, out, None)
    _, h, w, _ = x.shape
    _, oh, ow, _ = out.shape
    y_index = v.table("weight 'y_index'", weights["y_index"], 0, h, shape=(oh,))
    x_index = v.table("weight 'x_index'", weights["x_index"], 0, w, shape=(ow,))
    if out.size == 0:
        return noop, ()
    fn = pick(k.nearest_serial, k.nearest_parallel, out.size, out.shape[0] * out.shape[1])
    return fn, (x.view(lane), out.view(lane), y_index, x_index)


def _check_images(x, out, dtype) -> None:
    """x [N, H, W, C] and out [N, OH, OW, C] of one dtype (``dtype`` if given)."""
    v.array("the input", x, dtype, ndim=4)
    v.array("the output", out, x.dtype, ndim=4)
    v.require(x.shape[0] == out.shape[0] and x.shape[3] == out.shape[3],
              f"input {list(x.shape)} and output {list(out.shape)} differ in batch or channels")


@binds("f32_resize_bilinear_nhwc")
def bind_bilinear(params, weights, inputs, outputs):
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
    fn = pick(k.bilinear_serial, k.bilinear_parallel, out.size, out.shape[0] * out.shape[1])
    return fn, (x, out, *tables)
