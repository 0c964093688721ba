"""Style chain: a norm whose scale (or bias) is ``REDUCE_SUM(MUL(u, G), axis 0)`` computes it
itself, ``u @ G``, in its step (``f32_norm`` ``style_matvec``).

multistyle26 computes every norm's scale and bias from the style vector u[K, 1] and a constant
G[K, C] (~100 tiny steps per plan when run op by op). Math: ``sum_k u[k] * G[k, c]``, the same
sum in the same order. Legal when each intermediate (the MUL's and the REDUCE_SUM's outputs) is
read only on this path and is not a graph output, the REDUCE_SUM reduces axis 0 without
keepdims, the MUL has no activation, u is a run-time float32 [K, 1] and G [K, C] is a float32
constant, or, in int8 plans, the DEQUANTIZE of an int8 constant read only by the MUL (the step
keeps the int8 bytes: a quarter of the plan's bytes).

Marks: the norm's record holds ``style_scale``/``style_bias`` = [u, G]; the MUL and REDUCE_SUM
(and G's DEQUANTIZE) are ``fused_into`` the norm when the norm is the step that reads them: a
plain float32 norm read only by plain float32 nodes, or a norm of the int8 kernels.
"""
from __future__ import annotations

from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.fusions.common import plain, sole_reader
from mobile_engine.passes.fusions.int8_norm_add import int8_norm
from mobile_engine.passes.fusions.target import KernelTarget

ROLES = {1: "style_scale", 2: "style_bias"}


def _chain(norm: Node, graph: Graph, index: int) -> tuple[Node, Node] | None:
    """(REDUCE_SUM, MUL) feeding input ``index`` of ``norm`` along a legal chain, or None."""
    t = norm.inputs[index] if index < len(norm.inputs) else ""
    if not sole_reader(graph, t, norm):
        return None
    red = graph.producer(t)
    if red is None or red.op is not Op.REDUCE_SUM or red.attrs["keepdims"] or \
            [a % 2 for a in red.attrs["axes"]] != [0]:
        return None
    m = red.inputs[0]
    mul = graph.producer(m)
    if not sole_reader(graph, m, red) or mul is None or mul.op is not Op.MUL or \
            mul.attrs["activation"] is not Activation.NONE or len(mul.inputs) != 2:
        return None
    shape = graph.tensors[m].shape
    if len(shape) != 2 or graph.tensors[t].shape != (shape[1],):
        return None
    return red, mul


def int8_matrix(graph: Graph, name: str) -> bool:
    """G = ``name`` is a constant, or the DEQUANTIZE of a 2-d int8 constant read only here."""
    if graph.const(name) is not None:
        return True
    dq = graph.producer(name)
    if dq is None or dq.op is not Op.DEQUANTIZE or graph.is_output(name) or \
            len(graph.consumers(name)) != 1:
        return False
    src = graph.tensors[dq.inputs[0]]
    return src.is_const and src.dtype is DType.INT8 and src.quant is not None and \
        len(src.shape) == 2


def style_source(norm: Node, graph: Graph, index: int, int8: bool) -> tuple[str, str] | None:
    """(u, G) of input ``index`` (1 scale, 2 bias), or None (see the module docstring)."""
    found = _chain(norm, graph, index)
    if found is None:
        return None
    red, mul = found
    shape = graph.tensors[red.inputs[0]].shape
    t = norm.inputs[index]
    for u, g in (mul.inputs, mul.inputs[::-1]):
        ut = graph.tensors[u]
        if ut.is_const or ut.shape != (shape[0], 1) or graph.tensors[g].shape != shape or \
                not all(plain(graph, n) for n in (u, g, red.inputs[0], t)):
            continue
        if int8_matrix(graph, g) if int8 else graph.const(g) is not None:
            return u, g
    return None


def float_norm(norm: Node, graph: Graph) -> bool:
    """A plain float32 norm read only by plain float32 nodes."""
    if not all(plain(graph, n) for n in norm.inputs + norm.outputs if n):
        return False
    return all(plain(graph, n) for u in graph.consumers(norm.outputs[0])
               for n in u.inputs + u.outputs if n)


def run(graph: Graph, target: KernelTarget) -> int:
    fused = 0
    for norm in graph.nodes:
        if norm.op is not Op.INSTANCE_NORM:
            continue
        int8 = int8_norm(norm, graph)
        reads = int8 or float_norm(norm, graph)
        for index, role in ROLES.items():
            src = style_source(norm, graph, index, int8)
            if src is None:
                continue
            fusion.record(norm, role, list(src))
            if not reads:
                continue
            red, mul = _chain(norm, graph, index)
            fusion.absorb(red, norm)
            fusion.absorb(mul, norm)
            dq = graph.producer(src[1])
            if int8 and dq is not None and dq.op is Op.DEQUANTIZE:
                fusion.absorb(dq, norm)
            fused += 1
    return fused
