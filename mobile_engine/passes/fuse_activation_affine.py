"""fuse_activation_affine: a scalar scale and shift after a conv's hard swish join its epilogue.

PP-LCNetV3 (PP-OCRv4's detector and recogniser backbones) follows every activation with a
"learnable affine block", ``act(x) * a + b`` with two scalars, which exports write out as a MUL
and an ADD: two element-wise passes over each activation tensor (5.1 of 78.8 ms, 1 thread, in
the detector at 640x640), and in an int8 plan two float steps between the conv and its quantize.
Math (a, b scalars)::

    hard_swish(y) * a          == HARD_SWISH_AFFINE(y; a, 0)
    HARD_SWISH_AFFINE(y; s, t) * c == HARD_SWISH_AFFINE(y; s * c, t * c)
    HARD_SWISH_AFFINE(y; s, t) + d == HARD_SWISH_AFFINE(y; s, t + d)     (and - d: + (-d))

Legality: the producer is a CONV2D whose activation is HARD_SWISH or HARD_SWISH_AFFINE; its
output has one user (the MUL, ADD or SUB, with no activation of its own) and is not a graph
output; the other operand is a float32 constant whose elements are one number (a SUB only as
``x - d``), and the result has the conv output's shape. Applied until nothing joins.
"""
from __future__ import annotations

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, other_input, rewrite_until_done, scalar_const

_HARD_SWISH = (Activation.HARD_SWISH, Activation.HARD_SWISH_AFFINE)


def match(graph: Graph, node: Node, index: Index) -> tuple[Node, float] | None:
    """(conv, the constant) when ``node`` joins its producer's hard swish, else None."""
    if node.op not in (Op.MUL, Op.ADD, Op.SUB) or \
            node.attrs.get("activation", Activation.NONE) is not Activation.NONE:
        return None
    for t in node.inputs:
        conv = index.producer(t, Op.CONV2D)
        other = other_input(node, t)
        if conv is None or other is None or index.sole_user(t) is not node or \
                conv.attrs["activation"] not in _HARD_SWISH or \
                node.op is Op.SUB and node.inputs[0] != t:
            continue
        k = scalar_const(graph, other)
        if k is None or graph.const(other).dtype.name != "float32" or \
                graph.tensors[node.outputs[0]].shape != graph.tensors[t].shape:
            continue
        return conv, k
    return None


def rewrite(graph: Graph, node: Node, conv: Node, k: float) -> None:
    scale, shift = conv.attrs["act_params"] if \
        conv.attrs["activation"] is Activation.HARD_SWISH_AFFINE else (1.0, 0.0)
    if node.op is Op.MUL:
        scale, shift = scale * k, shift * k
    else:
        shift = shift + (k if node.op is Op.ADD else -k)
    old = conv.outputs[0]
    conv.attrs["activation"] = Activation.HARD_SWISH_AFFINE
    conv.attrs["act_params"] = (float(scale), float(shift))
    conv.outputs = [node.outputs[0]]
    graph.remove_node(node)
    del graph.tensors[old]


def run(graph: Graph) -> int:
    return rewrite_until_done(graph, match, rewrite)
