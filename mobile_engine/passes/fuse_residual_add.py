"""fuse_residual_add: ADD(conv(x), r) becomes CONV2D(x, w, bias, residual=r).

Math: the conv kernel adds the residual to each output element after the bias and before the
activation, so ``add(conv(x, w, b), r) == conv(x, w, b, r)`` and an ADD carrying an activation
moves it to the conv: ``act(conv(x) + r)``. Runs before fuse_activation so that
``relu(conv(x) + r)`` becomes one conv with the residual and the ReLU.

Legality: the producer is a CONV2D with no activation and no residual; its output has one user
(the ADD) and is not a graph output; ``r`` is another tensor of exactly the conv output's shape
and dtype (no broadcasting). A conv without bias gets a zero bias constant (the IR's CONV2D
inputs are positional: x, w, bias, residual).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, rewrite_matches


def match(graph: Graph, add: Node, index: Index) -> tuple[Node, str] | None:
    """(conv, residual tensor) for ``add``, or None."""
    if add.op is not Op.ADD:
        return None
    for side in (0, 1):
        conv_out, other = add.inputs[side], add.inputs[1 - side]
        conv = index.producer(conv_out, Op.CONV2D)
        if conv is None or other == conv_out or index.sole_user(conv_out) is not add:
            continue
        if conv.attrs["activation"] is not Activation.NONE or \
                (len(conv.inputs) > 3 and conv.inputs[3]):
            continue
        c, o = graph.tensors[conv_out], graph.tensors[other]
        if c.shape != o.shape or c.dtype is not o.dtype:
            continue
        return conv, other
    return None


def rewrite(graph: Graph, add: Node, conv: Node, residual: str) -> None:
    old = conv.outputs[0]
    if len(conv.inputs) < 3 or not conv.inputs[2]:
        co = graph.tensors[conv.inputs[1]].shape[0]
        bias = graph.add_const(graph.fresh_name(f"{conv.name}_bias"), np.zeros(co, np.float32))
        conv.inputs = conv.inputs[:2] + [bias]
    conv.inputs = conv.inputs[:3] + [residual]
    conv.attrs["activation"] = add.attrs.get("activation", Activation.NONE)
    conv.attrs["act_params"] = add.attrs.get("act_params", ())
    conv.outputs = [add.outputs[0]]
    # the residual may be computed after the conv: the conv moves to the ADD's place
    nodes = [n for n in graph.nodes if n is not conv]
    nodes[next(i for i, n in enumerate(nodes) if n is add)] = conv
    graph.nodes = nodes
    del graph.tensors[old]


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
