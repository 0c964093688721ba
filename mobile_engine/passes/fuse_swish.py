"""fuse_swish: ``MUL(x, SIGMOID(x))`` becomes one ``SILU(x)`` (x * sigmoid(x), "swish").

Exports write SiLU out as two nodes (YOLOv8: after every conv); as one unary op it runs in one
pass over x, and fuse_activation (after this pass) moves it into the producing conv's epilogue
(activation code SILU), so neither the sigmoid's tensor nor the product's pass exists.

Math: the same float32 steps, ``x * (1 / (1 + exp(-x)))`` (kernels/activation.py).
Legality: the MUL has no activation and reads x and the SIGMOID's output; the SIGMOID reads x,
its output is read only by that MUL and is not a graph output; all float32. The MUL's output
name is kept.
"""
from __future__ import annotations

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, other_input, rewrite_matches


def match(graph: Graph, mul: Node, index: Index) -> Node | None:
    """The SIGMOID of ``mul``'s other operand that ``mul`` multiplies by, or None."""
    if mul.op is not Op.MUL or mul.attrs.get("activation", Activation.NONE) is not Activation.NONE:
        return None
    for s in mul.inputs:
        sig = index.producer(s, Op.SIGMOID)
        if sig is None or other_input(mul, s) != sig.inputs[0] or index.sole_user(s) is not mul:
            continue
        x, y = graph.tensors[sig.inputs[0]], graph.tensors[mul.outputs[0]]
        if x.dtype is DType.FLOAT32 and y.dtype is DType.FLOAT32 and x.shape == y.shape:
            return sig
    return None


def rewrite(graph: Graph, mul: Node, sig: Node) -> None:
    x = sig.inputs[0]
    old = sig.outputs[0]
    graph.remove_node(sig)
    del graph.tensors[old]
    mul.op, mul.inputs, mul.attrs = Op.SILU, [x], {}


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
