"""int8 norm + residual add: an instance norm (float output) read only by a quantized ADD runs
as one step that normalises, adds the (uint8) residual and requantizes (or writes float).

Math: ``y = q(act(norm(x) + dq(r)))``: the norm's float output never reaches memory. Legal when
the norm's output has no quant params and is read only by the ADD, which is quantized and takes
it as its norm input (``quantize_int8.fused_norm_input``: the other operand exists by the time
the norm runs). Marks: the ADD is ``fused_into`` the norm; the norm's record names it ("add").
"""
from __future__ import annotations

from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes.fusions.common import is_quantized
from mobile_engine.passes.fusions.target import KernelTarget
from mobile_engine.passes.quantize_int8 import fused_norm_input


def fused_add(norm: Node, graph: Graph) -> Node | None:
    """The quantized ADD that ``norm`` (float output) runs inside, or None."""
    out = norm.outputs[0]
    add = graph.single_consumer(out)
    if add is None or add.op is not Op.ADD or graph.tensors[out].quant is not None \
            or fused_norm_input(graph, add) != out or not is_quantized(add, graph):
        return None
    return add


def run(graph: Graph, target: KernelTarget) -> int:
    fused = 0
    for norm in graph.nodes:
        if norm.op is Op.INSTANCE_NORM and not fusion.absorbed(norm):
            add = fused_add(norm, graph)
            if add is not None and not fusion.absorbed(add):
                fusion.absorb(add, norm, "add")
                fused += 1
    return fused


def int8_norm(norm: Node, graph: Graph) -> bool:
    """``norm`` runs the int8 norm kernels: quantized, or fused into a quantized ADD."""
    return norm.op is Op.INSTANCE_NORM and (is_quantized(norm, graph) or
                                            "add" in fusion.fusion(norm))
