"""fuse_hard_swish: hard swish written out, ``x * clip(x + 3, 0, 6) / 6`` (or ``* (1/6)``),
or ``x * hard_sigmoid(x)`` with alpha 1/6 and beta 1/2, becomes one HARD_SWISH(x).

Exports of MobileNetV3-style nets (PaddleOCR's PP-LCNet, ...) spell it as four element-wise
passes; as one op it is one pass, or none once fuse_activation (after this pass) moves it into
the producing conv's epilogue.

Math: the same function; the kernels compute ``x * clip(x * (1/6) + 1/2, 0, 1)`` in float32
(kernels/activation.py), within a rounding or two of the written-out form.
Legality: every intermediate (x + 3, the clip, the product; the hard sigmoid) is read only by
the next node of the pattern and is not a graph output; the constants are the scalars 3, 0, 6
and 6 (or 1/6); all float32 and no node carries an activation. The last node's output name is
kept.
"""
from __future__ import annotations

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, other_input, rewrite_matches, scalar_const


def _plain(node: Node | None, op: Op) -> bool:
    return node is not None and node.op is op and \
        node.attrs.get("activation", Activation.NONE) is Activation.NONE


def _scalar(graph: Graph, node: Node, t: str) -> float | None:
    other = other_input(node, t)
    return None if other is None else scalar_const(graph, other)


def _gate(graph: Graph, index: Index, g: str, x: str) -> list[Node] | None:
    """The nodes computing ``clip(x + 3, 0, 6)`` or ``6 * hard_sigmoid(x)``-like gate ``g``
    (returned with its scale: the clip form needs a final / 6, the hard sigmoid none)."""
    node = index.producer(g)
    if node is None or index.sole_user(g) is None:
        return None
    if node.op is Op.HARD_SIGMOID and node.inputs[0] == x and \
            abs(node.attrs["alpha"] - 1 / 6) < 1e-6 and abs(node.attrs["beta"] - 0.5) < 1e-6:
        return [node]
    if node.op is Op.CLIP and node.attrs["min"] == 0.0 and node.attrs["max"] == 6.0:
        add = index.producer(node.inputs[0])
        if _plain(add, Op.ADD) and index.sole_user(add.outputs[0]) is node and \
                x in add.inputs and _scalar(graph, add, x) == 3.0:
            return [add, node]
    return None


def match(graph: Graph, last: Node, index: Index) -> tuple[str, list[Node]] | None:
    """(x, the pattern's other nodes) when ``last`` ends a written-out hard swish, else None."""
    if graph.tensors[last.outputs[0]].dtype is not DType.FLOAT32:
        return None
    if _plain(last, Op.MUL):                           # x * hard_sigmoid(x)
        for g in last.inputs:
            x = other_input(last, g)
            nodes = _gate(graph, index, g, x) if x else None
            if nodes is not None and nodes[0].op is Op.HARD_SIGMOID:
                return x, nodes
    if not (_plain(last, Op.DIV) or _plain(last, Op.MUL)):
        return None
    for m in last.inputs:                              # (x * clip(x + 3, 0, 6)) / 6
        k = _scalar(graph, last, m)
        mul = index.producer(m)
        if k is None or (last.op is Op.DIV and k != 6.0) or \
                (last.op is Op.MUL and abs(k - 1 / 6) > 1e-7) or not _plain(mul, Op.MUL) or \
                index.sole_user(m) is not last:
            continue
        for g in mul.inputs:
            x = other_input(mul, g)
            nodes = _gate(graph, index, g, x) if x else None
            if nodes is not None and nodes[0].op is Op.ADD:
                return x, nodes + [mul]
    return None


def rewrite(graph: Graph, last: Node, x: str, nodes: list[Node]) -> None:
    for n in nodes:
        graph.remove_node(n)
        del graph.tensors[n.outputs[0]]
    last.op, last.inputs, last.attrs = Op.HARD_SWISH, [x], {}


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
