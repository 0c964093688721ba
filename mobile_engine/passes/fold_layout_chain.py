"""fold_layout_chain: a chain of RESHAPE and TRANSPOSE nodes becomes at most one TRANSPOSE (of a
reshaped view), the fewest copies its element order allows.

ShuffleNet's channel shuffle, once sink_transposes has moved the NCHW transposes out of the
convs, reads ``TRANSPOSE(0, 3, 1, 2) -> RESHAPE [N, g, C/g, H, W] -> TRANSPOSE(0, 2, 1, 3, 4) ->
RESHAPE [N, C, H, W] -> TRANSPOSE(0, 2, 3, 1)``: three copies of the tensor for what is, in
NHWC, one transpose of each pixel's channels viewed as [g, C/g].

Math: the chain maps output element o to input element idx[o] (computed at compile time on an
index array). When idx decomposes into mixed-radix digits whose input strides, sorted, tile the
input contiguously, idx is ``transpose(reshape(x, R), perm)`` for those radices R: the chain is
replaced by RESHAPE -> TRANSPOSE -> RESHAPE (RESHAPE is a free view), or by RESHAPEs alone when
idx is the identity. Legality: a chain of at least two TRANSPOSE nodes, each intermediate read
only by the next node and not a graph output; the last node's output name is kept.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes._match import Index, make_node, place, remove

LAYOUT = (Op.RESHAPE, Op.TRANSPOSE)
MAX_ELEMENTS = 1 << 26       # the index array costs 8 bytes an element at compile time


def _chain(node: Node, index: Index) -> list[Node]:
    """The longest RESHAPE/TRANSPOSE chain starting at ``node`` (single readers between)."""
    chain = [node]
    while True:
        nxt = index.sole_user(chain[-1].outputs[0])
        if nxt is None or nxt.op not in LAYOUT or len(nxt.inputs) != 1:
            return chain
        chain.append(nxt)


def _index_map(graph: Graph, chain: list[Node]) -> np.ndarray:
    idx = np.arange(int(np.prod(graph.tensors[chain[0].inputs[0]].shape)), dtype=np.int64)
    idx = idx.reshape(graph.tensors[chain[0].inputs[0]].shape)
    for n in chain:
        idx = idx.reshape(graph.tensors[n.outputs[0]].shape) if n.op is Op.RESHAPE \
            else idx.transpose(n.attrs["perm"])
    return idx.reshape(-1)


def _digits(idx: np.ndarray) -> list[tuple[int, int]] | None:
    """(radix, input stride) per output digit, innermost first, with idx[o] = sum d_j * S_j;
    None when idx has no such form."""
    n = idx.size
    if n == 0 or idx[0] != 0:
        return None
    digits, block = [], 1
    while block < n:
        stride = int(idx[block])
        radix = 1
        while block * (radix + 1) <= n and int(idx[block * radix]) == radix * stride:
            radix += 1
        if radix == 1:
            return None
        digits.append((radix, stride))
        block *= radix
    if block != n:
        return None
    rebuilt = np.zeros(1, np.int64)
    for radix, stride in digits:
        rebuilt = (np.arange(radix, dtype=np.int64)[:, None] * stride
                   + rebuilt[None, :]).reshape(-1)
    return digits if np.array_equal(rebuilt, idx) else None


def match(graph: Graph, node: Node, index: Index) -> list[Node] | None:
    if node.op not in LAYOUT or len(node.inputs) != 1:
        return None
    p = index.producer(node.inputs[0])
    if p is not None and p.op in LAYOUT and index.sole_user(p.outputs[0]) is node:
        return None                                   # not the chain's first node
    chain = _chain(node, index)
    if sum(n.op is Op.TRANSPOSE for n in chain) < 2 or \
            np.prod(graph.tensors[node.inputs[0]].shape) > MAX_ELEMENTS:
        return None
    digits = _digits(_index_map(graph, chain))
    if digits is None:
        return None
    by_stride = sorted(range(len(digits)), key=lambda j: -digits[j][1])
    expect = 1
    for j in reversed(by_stride):                     # the input axes must tile it exactly
        if digits[j][1] != expect:
            return None
        expect *= digits[j][0]
    return chain + [digits, by_stride]


def rewrite(graph: Graph, first: Node, *found) -> None:
    *chain, digits, by_stride = found
    x, y = first.inputs[0], chain[-1].outputs[0]
    in_shape = tuple(digits[j][0] for j in by_stride)
    out_order = list(reversed(range(len(digits))))    # output digits, outermost first
    perm = tuple(by_stride.index(j) for j in out_order)
    remove(graph, chain[:-1])
    last = chain[-1]
    new = [make_node(graph, Op.RESHAPE, [x], f"{last.name}_view", shape=in_shape)]
    if perm != tuple(range(len(perm))):
        new.append(make_node(graph, Op.TRANSPOSE, [new[-1].outputs[0]], f"{last.name}_perm",
                             perm=perm))
    place(graph, new, last)
    last.op, last.inputs = Op.RESHAPE, [new[-1].outputs[0]]
    last.attrs = {"shape": tuple(graph.tensors[y].shape)}


def run(graph: Graph) -> int:
    count = 0
    while True:
        index = Index(graph)
        found = next(((n, m) for n in graph.nodes for m in [match(graph, n, index)]
                      if m is not None), None)
        if found is None:
            return count
        rewrite(graph, found[0], *found[1])
        count += 1
