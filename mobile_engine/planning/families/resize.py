"""RESIZE (NHWC, nearest, linear or cubic; kernels/f32_resize.py).

The lowering turns the ONNX coordinate rules into per-axis index tables (and blend weights for
linear) once; the kernels gather rows and blend across channels. Nearest works for every dtype
(byte lanes); linear needs fp32. Cubic, antialiased linear/cubic, tf_crop_and_resize and
half_pixel_symmetric run on the general K-tap kernel (fp32): per-axis tables of K indices and
weights (``reference.resize_axis_taps``) and an "outside" flag per row and column.
"""
from __future__ import annotations

import numpy as np

from kernels import f32_layout as lanes
from kernels import f32_resize as k
from kernels import reference as ref
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
    if mode not in ("nearest", "linear", "cubic"):
        raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE): mode {mode!r}; supported: "
                                       f"nearest, linear, cubic")
    general = ref.resize_is_general(mode, a["coordinate_mode"], a.get("antialias", False))
    if (mode != "nearest" or general) and x.dtype is not DType.FLOAT32:
        raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE): {mode} resize of "
                                       f"{x.dtype.value} input {x.shape}; it needs float32")
    sh, sw = k.resize_scales((h, w), (oh, ow), a["scales"])
    if general:
        return [_lower_taps(node, graph, (h, w), (oh, ow), (sh, sw))]
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


def _lower_taps(node: Node, graph: Graph, hw, ohw, scales) -> Step:
    a = node.attrs
    x = graph.tensors[node.inputs[0]]
    tables = {}
    for axis, name in enumerate("yx"):
        try:
            i, w, o = k.axis_taps(hw[axis], ohw[axis], scales[axis], a, axis)
        except (ValueError, ZeroDivisionError) as exc:
            raise UnsupportedOperatorError(f"node {node.name!r} (RESIZE, input {x.shape} -> "
                                           f"{ohw}): {exc}") from None
        tables.update({f"{name}_index": i, f"{name}_weight": w, f"{name}_outside": o})
    names, consts, params = split_inputs(node, graph)
    taps = tables["y_index"].shape[1] * tables["x_index"].shape[1]
    fill = np.array([a.get("extrapolation_value", 0.0)], np.float32)
    return Step(node.name, "f32_resize_taps_nhwc", names, list(node.outputs), params,
                {**consts, **tables, "fill": fill},
                flops=2 * taps * x.shape[0] * ohw[0] * ohw[1] * x.shape[3])
