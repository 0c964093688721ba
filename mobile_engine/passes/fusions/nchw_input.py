"""Absorbed transpose: a conv whose input is ``TRANSPOSE(src, perm=(0, 2, 3, 1))`` reads the
NCHW tensor ``src`` itself (its indirection walks planar rows), so the transpose, a pass over the
image, disappears (multistyle26's first conv reads the NCHW camera image).

Math: ``conv(nhwc(src))`` with the weights packed ``[.., KH, C/g, KW, NR]`` reads the same
values. Legal when the transpose's output is read only by the conv (as x, once) and is not a
graph output, src is a plain float32 run-time 4-d tensor, and the conv (plain float32, NHWC
input) runs the igemm or pixel-lane kernel (both read planar rows).
Marks: the transpose ``fused_into`` the conv; the conv's record: "nchw_input" = src.
"""
from __future__ import annotations

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes.fusions.common import absorb_per_conv, plain_float
from mobile_engine.passes.fusions.target import KernelTarget

NHWC_OF_NCHW = (0, 2, 3, 1)


def planar_source(conv: Node, graph: Graph, target: KernelTarget) -> tuple[Node, str] | None:
    """(the transpose, its NCHW input) that ``conv`` reads directly, or None."""
    if conv.op is not Op.CONV2D or conv.attrs["in_layout"] != "nhwc" or \
            not plain_float(graph, conv):
        return None
    t = conv.inputs[0]
    p = graph.producer(t)
    if p is None or p.op is not Op.TRANSPOSE or tuple(p.attrs["perm"]) != NHWC_OF_NCHW or \
            graph.is_output(t) or [id(n) for n in graph.consumers(t)] != [id(conv)] or \
            conv.inputs.count(t) != 1:
        return None
    src = graph.tensors[p.inputs[0]]
    w = graph.const(conv.inputs[1])
    if src.is_const or len(src.shape) != 4 or src.dtype is not DType.FLOAT32 or \
            src.quant is not None or w is None or w.ndim != 4:
        return None
    family = target.conv_kernel(src.shape[1], w.shape[0], conv.attrs["group"], w.shape[2],
                                w.shape[3], conv.attrs["strides"][1])
    return (p, src.name) if family in ("igemm", "pix") else None


def run(graph: Graph, target: KernelTarget) -> int:
    return absorb_per_conv(graph, lambda conv: planar_source(conv, graph, target), "nchw_input")
