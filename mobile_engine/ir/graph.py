"""Graph: named tensors (static shapes, dtypes, constant data) and nodes in topological order."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from mobile_engine.errors import GraphError
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.ops import Op


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    data: np.ndarray | None = None          # set for constants (initializers)
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass
class Node:
    name: str
    op: Op
    inputs: list[str]                        # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op.name}, {self.inputs} -> {self.outputs})"


class Graph:
    """A dataflow graph; ``nodes`` is kept in topological order by every mutator."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._names = itertools.count()

    # --- tensors -------------------------------------------------------------------------
    def add_tensor(self, name: str, shape, dtype: DType, data: np.ndarray | None = None,
                   quant: QuantParams | None = None) -> Tensor:
        if name in self.tensors:
            raise GraphError(f"graph {self.name!r}: tensor {name!r} defined twice")
        t = Tensor(name, tuple(int(d) for d in shape), dtype, data, quant)
        self.tensors[name] = t
        return t

    def add_const(self, name: str, data: np.ndarray) -> str:
        data = np.require(data, requirements="C")          # keeps 0-d scalars 0-d
        self.add_tensor(name, data.shape, DType.from_numpy(data.dtype), data)
        return name

    def const(self, name: str) -> np.ndarray | None:
        """The constant value of ``name``, or None when it is computed at run time."""
        t = self.tensors.get(name)
        return None if t is None else t.data

    def fresh_name(self, base: str) -> str:
        while True:
            name = f"{base}__{next(self._names)}"
            # NOTE: the counter makes names unique among generated ones; checking the tensors
            # keeps them clear of the model's own names (node names need not be unique).
            if name not in self.tensors:
                return name

    # --- structure -----------------------------------------------------------------------
    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def is_output(self, tensor: str) -> bool:
        return tensor in self.outputs

    def single_consumer(self, tensor: str) -> Node | None:
        """The only user of ``tensor`` when it has exactly one and is not a graph output."""
        users = self.consumers(tensor)
        if len(users) != 1 or self.is_output(tensor):
            return None
        return users[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def insert_node(self, node: Node, before: Node | None = None) -> Node:
        """Insert ``node``; by default just before its first consumer (keeps topological order)."""
        if before is None:
            users = [i for i, n in enumerate(self.nodes) if set(node.outputs) & set(n.inputs)]
            index = users[0] if users else len(self.nodes)
        else:
            index = self.nodes.index(before)
        self.nodes.insert(index, node)
        return node

    def remove_node(self, node: Node) -> None:
        self.nodes.remove(node)

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer read ``new`` instead of ``old`` (graph outputs are untouched)."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]

    def bypass(self, node: Node, keep: str) -> bool:
        """Remove ``node``, whose single output equals ``keep``; False when that is impossible.

        Graph outputs keep their names, so when ``node`` writes one, ``keep`` is renamed to it;
        that needs ``keep`` to be an intermediate tensor.
        """
        out = node.outputs[0]
        if out in self.outputs:
            t = self.tensors[keep]
            if keep in self.inputs or keep in self.outputs or t.is_const:
                return False
            self.remove_node(node)
            del self.tensors[out]
            self.rename_tensor(keep, out)
            return True
        self.remove_node(node)
        self.replace_uses(out, keep)
        del self.tensors[out]
        return True

    def rename_tensor(self, old: str, new: str) -> None:
        t = self.tensors.pop(old)
        self.tensors.pop(new, None)
        t.name = new
        self.tensors[new] = t
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
            n.outputs = [new if o == old else o for o in n.outputs]
        self.inputs = [new if i == old else i for i in self.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def prune(self) -> int:
        """Remove nodes and tensors that no graph output depends on; returns nodes removed."""
        live = set(self.outputs)
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if live & set(n.outputs):
                kept.append(n)
                live.update(i for i in n.inputs if i)
        removed = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        live.update(self.inputs)
        for name in [t for t in self.tensors if t not in live]:
            del self.tensors[name]
        return removed

    def toposort(self) -> None:
        """Re-order nodes topologically; raises GraphError naming a node on a cycle."""
        ready = {n for n in self.tensors if self.producer(n) is None}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            progress = [n for n in pending if all(i in ready or not i for i in n.inputs)]
            if not progress:
                raise GraphError(f"graph {self.name!r} has a cycle (or reads an undefined "
                                 f"tensor) at node {pending[0].name!r} ({pending[0].op.name})")
            for n in progress:
                ready.update(n.outputs)
                pending.remove(n)
            ordered.extend(progress)
        self.nodes = ordered

    def count(self, op: Op) -> int:
        return sum(1 for n in self.nodes if n.op is op)

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def copy(self) -> "Graph":
        g = Graph(self.name)
        g.tensors = {k: Tensor(t.name, t.shape, t.dtype, t.data, t.quant)
                     for k, t in self.tensors.items()}
        g.nodes = [Node(n.name, n.op, list(n.inputs), list(n.outputs), dict(n.attrs))
                   for n in self.nodes]
        g.inputs, g.outputs = list(self.inputs), list(self.outputs)
        return g
