"""int8 conv + instance norm: a quantized conv whose float output only an instance norm reads
runs the norm in its own step, feeding the norm's statistics from the exact int32 accumulators.

Why: quantizing a conv's output before an instance norm destroys the picture (the norm divides
by each channel's per-image deviation, small on flat content; DESIGN.md), so the pre-norm tensor
is float; computing its statistics in the conv's epilogue also saves a pass over it.
Math: ``norm(conv(x))`` unchanged; the statistics are sums over the same values.
Legal when the conv is quantized, has no activation and runs the int8 igemm kernel (the only
one with a statistics epilogue); its output is float32 without quant params, not a graph
output, read only by the norm (as x, NHWC); the norm runs the int8 norm kernels
(``int8_norm_add.int8_norm``), its activation fits the fused kernel and its step's run-time
inputs exist before the conv runs. Marks: the norm is ``fused_into`` the conv ("norm").
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.fusions.common import absorb_per_conv, available_before, is_quantized
from mobile_engine.passes.fusions.int8_norm_add import int8_norm
from mobile_engine.passes.fusions.target import KernelTarget


def fused_norm(conv: Node, graph: Graph, target: KernelTarget) -> Node | None:
    """The INSTANCE_NORM that runs inside quantized ``conv``'s step, or None."""
    if conv.op is not Op.CONV2D or not is_quantized(conv, graph) or \
            conv.attrs["activation"] is not Activation.NONE:
        return None
    out = conv.outputs[0]
    t = graph.tensors[out]
    users = graph.consumers(out)
    if t.quant is not None or t.dtype.np != np.float32 or graph.is_output(out) or \
            len(users) != 1 or users[0].op is not Op.INSTANCE_NORM:
        return None
    norm = users[0]
    if norm.inputs[0] != out or out in norm.inputs[1:] or \
            norm.attrs.get("layout", "nhwc") != "nhwc" or not int8_norm(norm, graph):
        return None
    x, w = graph.tensors[conv.inputs[0]], graph.tensors[conv.inputs[1]]
    if len(x.shape) != 4 or w.data is None or w.data.ndim != 4:
        return None
    co, _, kh, kw = w.data.shape
    if target.int8_conv_kernel(conv.attrs["group"], x.shape[3], co, kh, kw) != "igemm" or \
            not target.int8_norm_fuses(norm):
        return None
    inputs = target.int8_norm_inputs(norm, graph)
    if inputs is None or not all(available_before(graph, name, conv) for name in inputs):
        return None
    return norm


def run(graph: Graph, target: KernelTarget) -> int:
    return absorb_per_conv(graph, lambda conv: fused_norm(conv, graph, target), "norm")
