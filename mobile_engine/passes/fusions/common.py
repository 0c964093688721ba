"""Small graph queries the kernel-fusion passes share."""
from __future__ import annotations

from typing import Callable

from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op


def plain(graph: Graph, name: str) -> bool:
    """``name`` is a float32 tensor without quant params."""
    t = graph.tensors[name]
    return t.dtype is DType.FLOAT32 and t.quant is None


def plain_float(graph: Graph, node: Node) -> bool:
    """Every tensor ``node`` reads or writes is plain float32."""
    return all(plain(graph, n) for n in node.inputs + node.outputs if n)


def is_quantized(node: Node, graph: Graph) -> bool:
    """True when any tensor of ``node`` carries quant params (it has quantized semantics)."""
    return any(graph.tensors[n].quant is not None for n in node.inputs + node.outputs if n)


def available_before(graph: Graph, name: str, node: Node) -> bool:
    """``name`` is available when ``node`` runs: a graph input, a constant, or written earlier."""
    p = graph.producer(name)
    if p is None:
        return True
    at = next(i for i, n in enumerate(graph.nodes) if n is node)
    return next(i for i, n in enumerate(graph.nodes) if n is p) < at


def sole_reader(graph: Graph, name: str, reader: Node) -> bool:
    """``reader`` is the only node reading ``name``, which is not a graph output."""
    return bool(name) and not graph.is_output(name) and \
        [id(n) for n in graph.consumers(name)] == [id(reader)]


def absorb_per_conv(graph: Graph, find: Callable[[Node], object], role: str) -> int:
    """For each CONV2D, ``find(conv)`` gives None, the node its step absorbs, or (node, value):
    the node (unless another step has it) is marked ``fused_into`` the conv, with ``role`` ->
    value (default the node's name) in the conv's record. Returns how many were marked."""
    fused = 0
    for conv in graph.nodes:
        found = find(conv) if conv.op is Op.CONV2D else None
        node, value = found if isinstance(found, tuple) else (found, None)
        if node is not None and not fusion.absorbed(node):
            fusion.absorb(node, conv, role, value)
            fused += 1
    return fused
