"""Conv + PReLU: a PReLU with per-channel constant slopes after an igemm conv runs in the conv's
epilogue (``kernels/activation.prelu_span`` over each finished row part, still in L1/L2), so its
pass over the tensor disappears. MediaPipe's face landmark and palm detector put one after
almost every full conv (23 and 26 PReLU steps).

Math: ``prelu(conv(x) + r, s)[.., c] = y if y >= 0 else y * s[c]`` with ``y = conv(x) + r``,
computed on the conv's stored outputs. Legal when the conv (plain float32, NHWC in and out, no
activation, no fusion but an absorbed channel PAD or NCHW input) runs the igemm kernel (not
Winograd); its output is read only by the PRELU (as x, once) and is not a graph output; the
PRELU carries no activation of its own, and its slope is a constant of one value or one per
output channel (any other axes of size 1); all tensors are plain float32.
Marks: the PRELU ``fused_into`` the conv; the conv's record: "prelu" = the PRELU's name (its
slope and output are read from the node).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.fusions.common import absorb_per_conv, plain_float, sole_reader
from mobile_engine.passes.fusions.target import KernelTarget

# fusion records the conv may already hold: both keep the igemm kernel and its NHWC output
COMPATIBLE = {"channel_pad_residual", "nchw_input"}


def channel_slopes(prelu: Node, graph: Graph, co: int) -> np.ndarray | None:
    """The PRELU's slope as f32[co] (one value repeated, or one per channel), or None."""
    s = graph.const(prelu.inputs[1])
    if s is None or s.dtype != np.float32:
        return None
    if s.size == 1:
        return np.full(co, s.reshape(()), np.float32)
    if s.ndim == 0 or s.shape[-1] != co or s.size != co:
        return None
    return np.ascontiguousarray(s.reshape(co))


def fused_prelu(conv: Node, graph: Graph, target: KernelTarget) -> Node | None:
    """The PRELU that runs in ``conv``'s epilogue, or None."""
    if conv.op is not Op.CONV2D or conv.attrs["activation"] is not Activation.NONE or \
            conv.attrs["in_layout"] != "nhwc" or conv.attrs["out_layout"] != "nhwc" or \
            not set(fusion.fusion(conv)) <= COMPATIBLE or not plain_float(graph, conv):
        return None
    out = conv.outputs[0]
    users = graph.consumers(out)
    if len(users) != 1 or not sole_reader(graph, out, users[0]):
        return None
    prelu = users[0]
    if prelu.op is not Op.PRELU or prelu.inputs[0] != out or prelu.inputs[1] == out or \
            prelu.attrs.get("activation", Activation.NONE) is not Activation.NONE or \
            not plain_float(graph, prelu):
        return None
    w, x = graph.const(conv.inputs[1]), graph.tensors[conv.inputs[0]]
    if w is None or w.ndim != 4 or len(x.shape) != 4 or \
            graph.tensors[prelu.outputs[0]].shape != graph.tensors[out].shape or \
            channel_slopes(prelu, graph, w.shape[0]) is None:
        return None
    family = target.conv_kernel(x.shape[3], w.shape[0], conv.attrs["group"], w.shape[2],
                                w.shape[3], conv.attrs["strides"][1])
    if family != "igemm" or target.conv_winograd(conv, graph):
        return None
    return prelu


def run(graph: Graph, target: KernelTarget) -> int:
    return absorb_per_conv(graph, lambda conv: fused_prelu(conv, graph, target), "prelu")
