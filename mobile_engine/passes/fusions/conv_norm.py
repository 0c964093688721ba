"""fp32 conv + instance norm (+ residual add): an igemm conv read only by an NHWC instance norm
computes the norm's statistics in its epilogue (``kernels/f32_conv2d.py`` ``sums``), then the
same step normalises its output in place (and adds a residual after the norm).

Math: ``y = act(norm(conv(x)))`` or ``y = act_add(norm(conv(x)) + r)``; the statistics pass over
the pre-norm tensor and the tensor itself disappear. Legal when the conv (plain float32, NHWC in
and out, no activation) runs the igemm kernel (not Winograd: ``KernelTarget.conv_winograd``),
its output is read only by the norm (as x) and is
not a graph output, the norm and every reader of its output are plain float32, and the norm's
run-time scale/bias (or the style vector they come from, ``style_chain``) exist before the conv.
The residual add joins when the norm has no activation, its output is read only by the ADD
(once) and is not a graph output, the other operand is a run-time float32 tensor of the same
shape written before the conv, and the ADD and its readers are plain float32.
Marks: the norm (and ADD) ``fused_into`` the conv; the conv's record: "norm", "add", "residual".
"""
from __future__ import annotations

from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.fusions.common import available_before, plain_float
from mobile_engine.passes.fusions.target import KernelTarget


def fused_norm(conv: Node, graph: Graph, target: KernelTarget) -> Node | None:
    """The INSTANCE_NORM that runs inside ``conv``'s step, or None."""
    if conv.op is not Op.CONV2D or conv.attrs["activation"] is not Activation.NONE or \
            conv.attrs["in_layout"] != "nhwc" or conv.attrs["out_layout"] != "nhwc":
        return None
    out = conv.outputs[0]
    users = graph.consumers(out)
    if len(users) != 1 or graph.is_output(out):
        return None
    norm = users[0]
    if norm.op is not Op.INSTANCE_NORM or norm.attrs["layout"] != "nhwc" or \
            norm.inputs[0] != out or out in norm.inputs[1:]:
        return None
    w = graph.const(conv.inputs[1])
    x = graph.tensors[conv.inputs[0]]
    if w is None or w.ndim != 4 or len(x.shape) != 4 or x.is_const:
        return None
    if target.conv_kernel(x.shape[3], w.shape[0], conv.attrs["group"], w.shape[2], w.shape[3],
                          conv.attrs["strides"][1]) != "igemm" \
            or target.conv_winograd(conv, graph):
        return None
    if not (plain_float(graph, conv) and plain_float(graph, norm)):
        return None
    if any(not plain_float(graph, u) for u in graph.consumers(norm.outputs[0])):
        return None
    style = fusion.fusion(norm)
    for i, role in ((1, "style_scale"), (2, "style_bias")):
        name = style[role][0] if role in style else norm.inputs[i]
        if name and not available_before(graph, name, conv):
            return None
    return norm


def fused_add(conv: Node, norm: Node, graph: Graph) -> tuple[Node, str] | None:
    """(add, residual) when the residual ADD after ``norm`` joins ``conv``'s step, or None."""
    out = norm.outputs[0]
    users = graph.consumers(out)
    if norm.attrs["activation"] is not Activation.NONE or len(users) != 1 or \
            graph.is_output(out):
        return None
    add = users[0]
    if add.op is not Op.ADD or len(add.outputs) != 1 or add.inputs.count(out) != 1:
        return None
    other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
    r, o, y = (graph.tensors[n] for n in (other, out, add.outputs[0]))
    if r.is_const or r.shape != o.shape or y.shape != o.shape or not plain_float(graph, add):
        return None
    if any(not plain_float(graph, u) for u in graph.consumers(add.outputs[0])):
        return None
    return (add, other) if available_before(graph, other, conv) else None


def run(graph: Graph, target: KernelTarget) -> int:
    fused = 0
    for conv in graph.nodes:
        norm = fused_norm(conv, graph, target) if conv.op is Op.CONV2D else None
        if norm is None or fusion.absorbed(norm):
            continue
        fusion.absorb(norm, conv, "norm")
        found = fused_add(conv, norm, graph)
        if found is not None and not fusion.absorbed(found[0]):
            fusion.absorb(found[0], conv, "add")
            fusion.record(conv, "residual", found[1])
        fused += 1
    return fused
