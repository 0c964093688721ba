"""GraphBuilder: build IR graphs in Python (tests, hand-made nets, importers).

    b = GraphBuilder("tiny")
    x = b.input("x", (1, 8, 8, 3))                         # NHWC
    y = b.node(Op.CONV2D, x, b.const(w), b.const(bias), pads=(1, 1, 1, 1))
    y = b.node(Op.RELU, y)
    g = b.build(y)

Every node's output shape and dtype are inferred as it is added, so a mistake raises at once,
naming the node.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mobile_engine.errors import GraphError
from mobile_engine.ir import shapes
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import ATTRIBUTES, Op, default_attrs


def normalize_attrs(op: Op, attrs: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and values coerced to the schema's types (lists -> tuples, ...)."""
    schema = ATTRIBUTES.get(op, {})
    out = default_attrs(op)
    for name, value in attrs.items():
        if name not in schema:
            raise GraphError(f"{op.name} has no attribute {name!r}; it has: "
                             f"{', '.join(schema) or 'none'}")
        kind = schema[name][0]
        if isinstance(kind, tuple):
            value = tuple(int(v) for v in value)
        elif kind == "floats":
            value = tuple(float(v) for v in value)
        elif kind == "float":
            value = float(value)
        elif kind == "int":
            value = int(value)
        elif kind == "bool":
            value = bool(value)
        out[name] = value
    return out


class GraphBuilder:
    def __init__(self, name: str = "graph") -> None:
        self.graph = Graph(name)
        self._count = 0

    def input(self, name: str, shape, dtype: DType = DType.FLOAT32) -> str:
        self.graph.add_tensor(name, shape, dtype)
        self.graph.inputs.append(name)
        return name

    def const(self, data, name: str | None = None) -> str:
        data = np.asarray(data)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        return self.graph.add_const(name or self.graph.fresh_name("const"), data)

    def node(self, op: Op, *inputs: str | None, name: str | None = None, outputs: int = 1,
             **attrs) -> str | list[str]:
        """Add a node; returns its output name (a list when ``outputs`` > 1)."""
        self._count += 1
        name = name or f"{op.value}_{self._count}"
        outs = [self.graph.fresh_name(name) for _ in range(outputs)]
        node = Node(name, op, [i or "" for i in inputs], outs, normalize_attrs(op, attrs))
        for o, (shape, dtype) in zip(outs, shapes.infer(node, self.graph)):
            self.graph.add_tensor(o, shape, dtype)
        self.graph.nodes.append(node)
        return outs[0] if outputs == 1 else outs

    def build(self, *outputs: str) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph
