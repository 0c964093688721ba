"""pack_output_pixels: an int8 CONV2D with few output channels computes f neighbouring output
pixels per position instead (f * Co channels, stride f along W), writing the same bytes.

The qu8 conv tiles are 16, 32 or 64 output channels wide: with Co = 3 or 8 most lanes of each
``vpdpbusd`` multiply padding. Along W, output pixel ``w = f * w' + j`` (phase j < f) is::

    y[h, f w' + j, co] = sum_{ky, kx} xp[h sh + ky, f w' + j + kx] W[co, ky, kx]
                       = sum_{ky, kx'} xp[h sh + ky, f w' + kx'] W'[j Co + co, ky, kx']

with ``W'[j Co + co, :, :, kx'] = W[co, :, :, kx' - j]`` for ``0 <= kx' - j < KW`` and 0
otherwise (KW' = KW + f - 1): a conv of stride (sh, f) on the same padded (and upsampled)
input, f * Co output channels, W / f output columns. In NHWC, ``[1, H, W / f, f Co]`` is
``[1, H, W, Co]`` byte for byte (channel ``j Co + co`` of column w' is channel co of column
``f w' + j``), so a RESHAPE (a view) restores the original tensor. The int8 weights are the
model's, moved (per-channel scales and bias repeated f times): every accumulator, and so every
output byte, is unchanged.

Cost per useful MAC, with lanes rounded up to 16: ``ceil(f Co / 16) 16 (KW + f - 1) /
(f Co KW)``; f is the divisor of W that minimises it, used when it saves at least a quarter
(arbitrary_transform: 9x9 3->8 f = 2, 3x3 16->8 upsampled f = 2, 9x9 8->3 f = 4).

Legality: CONV2D with uint8 input and int8 per-channel weights (after fold_qdq), group 1,
W stride 1, dilation 1, no residual input, NHWC, output width divisible by f.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.ir import shapes

LANES = 16              # the narrowest qu8 conv tile (kernels/qu8_conv2d.py TILES)
MIN_SAVING = 0.75       # apply when the cost falls to at most this fraction


def _cost(co: int, kw: int, f: int) -> float:
    return -(-f * co // LANES) * LANES * (kw + f - 1) / (f * co * kw)


def choose_factor(co: int, kw: int, width: int) -> int:
    """The pixel factor f for ``co`` output channels, kernel width ``kw``, output ``width``."""
    if co >= LANES:
        return 1
    best = min((f for f in range(1, LANES + 1) if width % f == 0 and f * co <= 4 * LANES),
               key=lambda f: (_cost(co, kw, f), f))
    return best if _cost(co, kw, best) <= MIN_SAVING * _cost(co, kw, 1) else 1


def _legal(graph: Graph, conv: Node) -> bool:
    a = conv.attrs
    if conv.op is not Op.CONV2D or a["group"] != 1 or a["strides"][1] != 1 \
            or tuple(a["dilations"]) != (1, 1) or len(conv.inputs) > 3 and conv.inputs[3] \
            or a.get("in_layout", "nhwc") != "nhwc" or a.get("out_layout", "nhwc") != "nhwc":
        return False
    x, w = graph.tensors[conv.inputs[0]], graph.tensors[conv.inputs[1]]
    y = graph.tensors[conv.outputs[0]]
    return (x.dtype is DType.UINT8 and w.is_const and w.dtype is DType.INT8
            and w.quant is not None and w.quant.axis == 0 and len(y.shape) == 4
            and y.shape[0] == 1 and (len(conv.inputs) < 3 or not conv.inputs[2]
                                     or graph.tensors[conv.inputs[2]].is_const))


def rewrite(graph: Graph, conv: Node, f: int) -> None:
    w = graph.tensors[conv.inputs[1]]
    co, ci, kh, kw = w.shape
    wide = np.zeros((f * co, ci, kh, kw + f - 1), np.int8)
    for j in range(f):
        wide[j * co:(j + 1) * co, :, :, j:j + kw] = w.data
    q = w.quant
    params = QuantParams(tuple(q.scale) * f, tuple(q.zero_point) * f, 0)
    wname = graph.fresh_name(f"{w.name}_x{f}")
    graph.add_tensor(wname, wide.shape, DType.INT8, wide, params)
    inputs = [conv.inputs[0], wname]
    if len(conv.inputs) > 2 and conv.inputs[2]:
        inputs.append(graph.add_const(graph.fresh_name(f"{conv.inputs[2]}_x{f}"),
                                      np.tile(np.asarray(graph.const(conv.inputs[2])), f)))
    y = graph.tensors[conv.outputs[0]]
    n_, h, wd, _ = y.shape
    packed = graph.fresh_name(f"{y.name}_x{f}")
    graph.add_tensor(packed, (n_, h, wd // f, f * co), y.dtype, quant=y.quant)
    attrs = dict(conv.attrs, strides=(conv.attrs["strides"][0], f), pixel_phases=f)
    new = Node(conv.name, Op.CONV2D, inputs, [packed], attrs)
    (shape, _), = shapes.infer(new, graph)
    if tuple(shape) != (n_, h, wd // f, f * co):
        del graph.tensors[packed], graph.tensors[wname]
        return
    view = Node(graph.fresh_name(f"{conv.name}_pixels"), Op.RESHAPE, [packed], [y.name],
                {"shape": y.shape})
    i = next(k for k, n in enumerate(graph.nodes) if n is conv)
    graph.nodes[i:i + 1] = [new, view]


def run(graph: Graph) -> int:
    count = 0
    for conv in list(graph.nodes):
        if not _legal(graph, conv):
            continue
        co, _, _, kw = graph.tensors[conv.inputs[1]].shape
        f = choose_factor(co, kw, graph.tensors[conv.outputs[0]].shape[2])
        if f > 1:
            before = len(graph.nodes)
            rewrite(graph, conv, f)
            count += len(graph.nodes) > before
    return count
