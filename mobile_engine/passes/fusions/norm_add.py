"""fp32 instance norm + residual add: a norm that keeps its own step (its conv runs Winograd, or
no conv writes it) adds the residual in its normalising pass.

Math: ``y = act_add(norm(x) + r)``; the ADD's pass over three tensors disappears (multistyle26's
residual blocks: the norm after each Winograd conv, then the add). Legal under
``conv_norm.fused_add``'s rules with the norm as the step's head: the norm is plain float32
NHWC, not absorbed by its conv, has no activation, its output is read only by the ADD (once)
and is not a graph output; the other operand is a run-time float32 tensor of the same shape
written before the norm; the ADD and its readers are plain float32.
Marks: the ADD ``fused_into`` the norm; the norm's record: "add", "residual".
"""
from __future__ import annotations

from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import Op
from mobile_engine.passes.fusions.common import plain_float
from mobile_engine.passes.fusions.conv_norm import fused_add
from mobile_engine.passes.fusions.target import KernelTarget


def run(graph: Graph, target: KernelTarget) -> int:
    fused = 0
    for norm in graph.nodes:
        if norm.op is not Op.INSTANCE_NORM or norm.attrs["layout"] != "nhwc" or \
                fusion.absorbed(norm) or fusion.fusion(norm).get("add") or \
                not plain_float(graph, norm):
            continue
        found = fused_add(norm, norm, graph)
        if found is None or fusion.absorbed(found[0]):
            continue
        fusion.absorb(found[0], norm, "add")
        fusion.record(norm, "residual", found[1])
        fused += 1
    return fused
