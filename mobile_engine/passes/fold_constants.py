"""fold_constants: evaluate every node whose inputs are all constants.

Math: ``y = op(c1, ..., ck)`` with every ``ci`` known at compile time is computed once with the
numpy references (``interpret.evaluate``) and stored as a constant tensor; the node disappears.

Legality: all non-omitted inputs are constants, and no output is a graph output (the runtime
contract is that graph outputs are written by a step, so those nodes stay).
"""
from __future__ import annotations

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.interpret import evaluate


def match(graph: Graph, node: Node) -> bool:
    ins = [i for i in node.inputs if i]
    return (bool(ins) and all(graph.const(i) is not None for i in ins)
            and not set(node.outputs) & set(graph.outputs))


def run(graph: Graph) -> int:
    """Fold every foldable node (in topological order, so chains fold in one sweep)."""
    folded = 0
    for node in list(graph.nodes):
        if not match(graph, node):
            continue
        outs = evaluate(node, [graph.const(i) if i else None for i in node.inputs])
        for name, value in zip(node.outputs, outs):
            t = graph.tensors[name]
            t.data = value.astype(t.dtype.np, copy=False).reshape(t.shape)
        graph.remove_node(node)
        folded += 1
    return folded
