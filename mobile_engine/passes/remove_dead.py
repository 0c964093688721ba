"""remove_dead: drop nodes no output depends on, and nodes that compute the identity.

Identity-like nodes (``y == x`` element for element, same shape and dtype):
RESHAPE to the input's shape, TRANSPOSE with perm ``(0, 1, ..., r-1)``, CAST to the input's
dtype, PAD with all-zero pads, RESIZE whose sampled indices are ``arange`` with zero
interpolation weight (checked numerically with the reference's own index rule, since e.g.
``tf_half_pixel_for_nn`` + ``round_prefer_ceil`` at scale 1 is a shift, not the identity).
Also ``RESHAPE(RESHAPE(x, s1), s2) -> RESHAPE(x, s2)`` (a reshape only relabels memory).

Legality: the node is bypassed with ``Graph.bypass``, which keeps graph output names; a node
copying a graph input or a constant straight to a graph output stays.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.interpret import resize_axis_taps, resize_axis_weights, resize_is_general
from mobile_engine.ir.ops import Op
from mobile_engine.passes._match import Index, is_identity_perm


def _resize_axis_is_identity(size: int, scale: float, a: dict, axis: int) -> bool:
    if resize_is_general(a):
        index, weight, outside = resize_axis_taps(size, size, scale, a, axis)
        picked = np.argmax(weight, axis=1)
        return bool(not outside.any() and np.allclose(weight.max(axis=1), 1.0, rtol=0,
                                                      atol=1e-12)
                    and np.allclose(weight.sum(axis=1), 1.0, rtol=0, atol=1e-12)
                    and np.array_equal(index[np.arange(size), picked], np.arange(size)))
    i0, i1, w = resize_axis_weights(size, size, scale, a["mode"], a["coordinate_mode"],
                                        a["nearest_mode"])
    return bool(np.array_equal(i0, np.arange(size))
                and (np.array_equal(i1, i0) or not np.any(w)))


def is_identity(graph: Graph, node: Node) -> bool:
    """True when ``node``'s output equals its first input."""
    x = graph.tensors[node.inputs[0]]
    y = graph.tensors[node.outputs[0]]
    if x.shape != y.shape or x.dtype is not y.dtype:
        return False
    a = node.attrs
    if node.op is Op.RESHAPE or node.op is Op.CAST:
        return True
    if node.op is Op.TRANSPOSE:
        return is_identity_perm(a["perm"])
    if node.op is Op.PAD:
        return not any(a["pads"])
    if node.op is Op.RESIZE:
        _, h, w, _ = x.shape
        sh, sw = a["scales"] if a["scales"] else (1.0, 1.0)
        return _resize_axis_is_identity(h, sh, a, 0) and _resize_axis_is_identity(w, sw, a, 1)
    return False


def run(graph: Graph) -> int:
    removed = graph.prune()
    changed = True
    while changed:
        changed = False
        index = Index(graph)
        for node in graph.nodes:
            if node.op is Op.RESHAPE:
                inner = index.producer(node.inputs[0], Op.RESHAPE)
                if inner is not None:                           # reshape(reshape(x)) -> reshape(x)
                    node.inputs[0] = inner.inputs[0]
                    if not index.consumers(inner.outputs[0])[1:] and \
                            inner.outputs[0] not in graph.outputs:
                        graph.remove_node(inner)
                        del graph.tensors[inner.outputs[0]]
                    removed += 1
                    changed = True
                    break
            if node.op in (Op.RESHAPE, Op.TRANSPOSE, Op.CAST, Op.PAD, Op.RESIZE) \
                    and is_identity(graph, node) and graph.bypass(node, node.inputs[0]):
                removed += 1
                changed = True
                break
    return removed + graph.prune()
