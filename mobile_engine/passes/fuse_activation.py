"""fuse_activation: an activation node after a producer that has an epilogue moves into it.

Math: ``act(op(x...)) == op(x..., activation=act)``: the kernels apply the activation to each
output element before storing it. Mapping (params in ``act_params``): RELU -> RELU,
CLIP(min, max) -> CLAMP(min, max), LEAKY_RELU(alpha) -> LEAKY_RELU(alpha), SIGMOID, TANH,
HARD_SIGMOID(alpha, beta), HARD_SWISH.

Legality: the producer is in ``ops.ACTIVATION_PRODUCERS`` with activation NONE; its output has
one user (the activation) and is not a graph output. The activation's output name is kept (the
producer writes it), so graph outputs keep their names.
"""
from __future__ import annotations

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import ACTIVATION_PRODUCERS, UNARY_ACTIVATIONS, Activation, Op
from mobile_engine.passes._match import Index, rewrite_matches


def params(act: Node) -> tuple[float, ...]:
    a = act.attrs
    if act.op is Op.CLIP:
        return (float(a["min"]), float(a["max"]))
    if act.op is Op.LEAKY_RELU:
        return (float(a["alpha"]),)
    if act.op is Op.HARD_SIGMOID:
        return (float(a["alpha"]), float(a["beta"]))
    return ()


def match(graph: Graph, act: Node, index: Index) -> Node | None:
    """The producer ``act`` can fuse into, or None."""
    if act.op not in UNARY_ACTIVATIONS:
        return None
    prod = index.producer(act.inputs[0])
    if prod is None or prod.op not in ACTIVATION_PRODUCERS or len(prod.outputs) != 1:
        return None
    if prod.attrs.get("activation", Activation.NONE) is not Activation.NONE:
        return None
    if index.sole_user(prod.outputs[0]) is not act:
        return None
    if graph.tensors[act.outputs[0]].dtype is not graph.tensors[prod.outputs[0]].dtype:
        return None
    return prod


def rewrite(graph: Graph, act: Node, prod: Node) -> None:
    old = prod.outputs[0]
    prod.attrs["activation"] = UNARY_ACTIVATIONS[act.op]
    prod.attrs["act_params"] = params(act)
    prod.outputs = [act.outputs[0]]
    graph.remove_node(act)
    del graph.tensors[old]


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
