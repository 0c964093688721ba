"""fold_conv_affine: a constant per-channel scale or shift after a CONV2D folds into its weights.

Exports of re-parameterised blocks (PP-LCNet's "mobile one" blocks, learnable affine layers,
batch norms written out as Mul/Add) leave ``conv(x) * c`` and ``conv(x) + d`` behind, one
element-wise pass each. Math (per output channel o)::

    conv(x, W, b) * c == conv(x, W * c[o], b * c[o])      conv(x, W, b) + d == conv(x, W, b + d[o])

Legality: the conv is float32 NHWC with no activation and no residual; its output has one user
(the MUL or ADD, no activation of its own) and is not a graph output; the other operand is a
float32 constant holding one value or one per output channel (shape ``[Co]`` or ``[1, 1, 1,
Co]``). Applied until nothing folds (``x * c + d`` takes two rounds).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, fold_into_conv, other_input, rewrite_until_done


def _per_channel(data: np.ndarray | None, co: int) -> np.ndarray | None:
    """``data`` as float64[Co] when it is a scalar or a per-output-channel vector, else None."""
    if data is None or data.dtype != np.float32:
        return None
    if data.size == 1:
        return np.full(co, float(data.reshape(-1)[0]))
    if data.size == co and data.shape[-1] == co and all(d == 1 for d in data.shape[:-1]):
        return data.reshape(-1).astype(np.float64)
    return None


def match(graph: Graph, node: Node, index: Index) -> tuple[Node, np.ndarray] | None:
    """(conv, per-channel constant) that ``node`` (MUL or ADD) folds into, or None."""
    if node.op not in (Op.MUL, Op.ADD) or \
            node.attrs.get("activation", Activation.NONE) is not Activation.NONE:
        return None
    for t in node.inputs:
        conv = index.producer(t, Op.CONV2D)
        other = other_input(node, t)
        if conv is None or other is None or index.sole_user(t) is not node:
            continue
        a = conv.attrs
        if a["activation"] is not Activation.NONE or a["out_layout"] != "nhwc" or \
                len(conv.inputs) > 3 and conv.inputs[3]:
            continue
        w = graph.const(conv.inputs[1])
        y = graph.tensors[node.outputs[0]]
        if w is None or w.dtype != np.float32 or y.shape != graph.tensors[t].shape:
            continue
        k = _per_channel(graph.const(other), w.shape[0])
        if k is not None:
            return conv, k
    return None


def rewrite(graph: Graph, node: Node, conv: Node, k: np.ndarray) -> None:
    w = graph.const(conv.inputs[1]).astype(np.float64)
    has_bias = len(conv.inputs) > 2 and conv.inputs[2]
    b = graph.const(conv.inputs[2]).astype(np.float64).reshape(-1) if has_bias \
        else np.zeros(w.shape[0])
    if node.op is Op.MUL:
        w, b = w * k[:, None, None, None], b * k
    else:
        b = b + k
    fold_into_conv(graph, conv, node, w, b, "affine")


def run(graph: Graph) -> int:
    return rewrite_until_done(graph, match, rewrite)
