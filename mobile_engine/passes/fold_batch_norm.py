"""fold_batch_norm: CONV2D -> BATCH_NORM (NHWC) becomes one CONV2D with new weights and bias.

Math (per output channel o)::

    s[o]  = gamma[o] / sqrt(var[o] + eps)
    W'[o] = W[o] * s[o]                       # W is [Co, Ci/g, KH, KW]
    b'[o] = (b[o] - mean[o]) * s[o] + beta[o] # b = 0 when the conv has no bias

so ``BN(conv(x, W, b)) == conv(x, W', b')``; the BN's activation (if any) moves to the conv.

Legality: the conv output has one user (the BN) and is not a graph output; the conv has no fused
activation and no residual input; W, b and the four BN parameters are constants. A BATCH_NORM
that does not follow such a conv stays (it has its own kernel).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes._match import Index, fold_into_conv


def match(graph: Graph, bn: Node, index: Index) -> Node | None:
    """The conv that ``bn`` can fold into, or None."""
    if bn.op is not Op.BATCH_NORM:
        return None
    conv = index.producer(bn.inputs[0], Op.CONV2D)
    if conv is None or index.sole_user(conv.outputs[0]) is not bn:
        return None
    if conv.attrs.get("activation", Activation.NONE) is not Activation.NONE:
        return None
    if len(conv.inputs) > 3 and conv.inputs[3]:
        return None
    consts = [conv.inputs[1], *(conv.inputs[2:3] if len(conv.inputs) > 2 and conv.inputs[2]
                                else []), *bn.inputs[1:]]
    if any(graph.const(c) is None for c in consts):
        return None
    co = graph.tensors[conv.inputs[1]].shape[0]
    if graph.const(conv.inputs[1]).dtype != np.float32 or \
            any(graph.const(c).size != co for c in bn.inputs[1:]):
        return None
    return conv


def rewrite(graph: Graph, conv: Node, bn: Node) -> None:
    gamma, beta, mean, var = (graph.const(i).astype(np.float64).reshape(-1) for i in bn.inputs[1:])
    w = graph.const(conv.inputs[1])
    b = (graph.const(conv.inputs[2]).astype(np.float64)
         if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(w.shape[0]))
    s = gamma / np.sqrt(var + bn.attrs["epsilon"])
    conv.attrs["activation"] = bn.attrs["activation"]
    conv.attrs["act_params"] = bn.attrs["act_params"]
    fold_into_conv(graph, conv, bn, w.astype(np.float64) * s[:, None, None, None],
                   (b - mean) * s + beta, "bn")


def run(graph: Graph) -> int:
    count = 0
    while True:
        index = Index(graph)
        pair = next(((conv, n) for n in graph.nodes
                     for conv in [match(graph, n, index)] if conv is not None), None)
        if pair is None:
            return count
        rewrite(graph, *pair)
        count += 1
