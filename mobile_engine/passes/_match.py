"""Pattern helpers shared by the passes: use maps, operand matching, node replacement.

``Graph.producer``/``consumers`` scan every node; a pass that looks at every node builds an
``Index`` once per sweep instead (rebuilt after each rewrite, which keeps passes O(N) per rewrite).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from mobile_engine.ir import shapes
from mobile_engine.ir.builder import normalize_attrs
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op


class Index:
    """Producer and consumer maps of a graph at one moment (stale after any rewrite)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.producers: dict[str, Node] = {}
        self.users: dict[str, list[Node]] = {}
        for n in graph.nodes:
            for o in n.outputs:
                self.producers[o] = n
            for i in n.inputs:
                if i:
                    users = self.users.setdefault(i, [])
                    if not users or users[-1] is not n:
                        users.append(n)

    def producer(self, tensor: str, op: Op | None = None) -> Node | None:
        """The node writing ``tensor`` (only if its op is ``op`` when given)."""
        n = self.producers.get(tensor)
        return n if n is not None and (op is None or n.op is op) else None

    def consumers(self, tensor: str) -> list[Node]:
        return self.users.get(tensor, [])

    def sole_user(self, tensor: str) -> Node | None:
        """The only consumer of ``tensor`` (None if it has several or is a graph output)."""
        users = self.consumers(tensor)
        if len(users) != 1 or tensor in self.graph.outputs:
            return None
        return users[0]

    def private(self, tensor: str, allowed: Iterable[Node]) -> bool:
        """True when ``tensor`` is read only by ``allowed`` nodes and is not a graph output."""
        ids = {id(n) for n in allowed}
        users = self.consumers(tensor)
        return tensor not in self.graph.outputs and all(id(n) in ids for n in users)


def rewrite_until_done(graph: Graph, match: Callable, rewrite: Callable) -> int:
    """``rewrite_matches`` sweeps until one finds nothing (a rewrite can make the next match,
    e.g. ``x * c + d``); the total count."""
    total = 0
    while True:
        n = rewrite_matches(graph, match, rewrite)
        total += n
        if not n:
            return total


def rewrite_matches(graph: Graph, match: Callable, rewrite: Callable) -> int:
    """Sweep ``graph`` once: for each node where ``match(graph, node, index)`` finds something,
    call ``rewrite(graph, node, *found)`` (``found`` a node or a tuple). Returns the count."""
    count = 0
    index = Index(graph)
    for node in list(graph.nodes):
        found = match(graph, node, index)
        if found is not None:
            rewrite(graph, node, *(found if isinstance(found, tuple) else (found,)))
            index = Index(graph)
            count += 1
    return count


def fold_into_conv(graph: Graph, conv: Node, node: Node, w: np.ndarray, b: np.ndarray,
                   tag: str) -> None:
    """``conv`` takes new weights ``w`` and bias ``b`` (constants named after ``tag``) and
    writes ``node``'s output; ``node`` (folded into it) and the conv's old output go."""
    w_name = graph.add_const(graph.fresh_name(f"{conv.name}_w_{tag}"), w.astype(np.float32))
    b_name = graph.add_const(graph.fresh_name(f"{conv.name}_b_{tag}"), b.astype(np.float32))
    old = conv.outputs[0]
    conv.inputs = [conv.inputs[0], w_name, b_name]
    conv.outputs = [node.outputs[0]]
    graph.remove_node(node)
    del graph.tensors[old]


def other_input(node: Node, tensor: str) -> str | None:
    """For a binary node reading ``tensor`` once, its other operand (None otherwise)."""
    a, b = node.inputs[0], node.inputs[1]
    if a == tensor and b != tensor:
        return b
    if b == tensor and a != tensor:
        return a
    return None


def scalar_const(graph: Graph, tensor: str) -> float | None:
    """The value of a constant whose elements all equal one number, else None."""
    data = graph.const(tensor)
    if data is None or data.size == 0:
        return None
    flat = np.asarray(data).reshape(-1)
    if not np.all(flat == flat[0]):
        return None
    return float(flat[0])


def make_node(graph: Graph, op: Op, inputs: list[str], name: str, output: str | None = None,
              **attrs) -> Node:
    """A new node whose output tensor is created with inferred shape (or reuses ``output``).

    The node is not placed in ``graph.nodes``; the caller inserts it (see ``place``).
    """
    node = Node(graph.fresh_name(name), op, list(inputs), [], normalize_attrs(op, attrs))
    (shape, dtype), = shapes.infer(node, graph)
    if output is None:
        output = graph.fresh_name(name)
        graph.add_tensor(output, shape, dtype)
    else:
        t = graph.tensors[output]
        if t.shape != shape or t.dtype is not dtype:
            raise AssertionError(f"{op.name} would write {output!r} as {shape} {dtype}, "
                                 f"but it is {t.shape} {t.dtype}")
    node.outputs = [output]
    return node


def place(graph: Graph, new: list[Node], at: Node) -> None:
    """Insert ``new`` (in order) just before node ``at``."""
    i = position(graph, at)
    graph.nodes[i:i] = new


def position(graph: Graph, node: Node) -> int:
    """Index of ``node`` itself in ``graph.nodes`` (identity, not dataclass equality)."""
    return next(i for i, n in enumerate(graph.nodes) if n is node)


def remove(graph: Graph, nodes: Iterable[Node], keep: Iterable[str] = ()) -> None:
    """Remove ``nodes`` and their output tensors (except names in ``keep``)."""
    keep = set(keep)
    ids = {id(n) for n in nodes}
    for n in [n for n in graph.nodes if id(n) in ids]:
        graph.nodes.remove(n)
        for o in n.outputs:
            if o not in keep and o not in graph.outputs:
                graph.tensors.pop(o, None)


def drop_if_unused(graph: Graph, node: Node) -> bool:
    """Remove ``node`` when none of its outputs is read or is a graph output."""
    outs = set(node.outputs)
    if outs & set(graph.outputs) or any(outs & set(n.inputs) for n in graph.nodes):
        return False
    remove(graph, [node])
    return True


def invert_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def is_identity_perm(perm: tuple[int, ...]) -> bool:
    return tuple(perm) == tuple(range(len(perm)))
