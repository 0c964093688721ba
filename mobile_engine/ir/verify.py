"""verify(graph): the IR invariants, checked after every pass in tests.

Raises ``GraphError`` naming the node: unknown attributes or wrong attribute types, wrong input
counts, tensors read before they are written or written twice, stored shapes and dtypes that
differ from what shape inference derives.
"""
from __future__ import annotations

from mobile_engine.errors import GraphError
from mobile_engine.ir import shapes
from mobile_engine.ir.fusion import FUSED_INTO, FUSION
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import ATTRIBUTES, Activation, arity


def _check_attr(node: Node, name: str, kind, value) -> None:
    def bad(expected: str) -> GraphError:
        return GraphError(f"node {node.name!r} ({node.op.name}): attribute {name!r}={value!r} "
                          f"should be {expected}")
    if isinstance(kind, tuple):                       # ("ints", n)
        if not isinstance(value, tuple) or not all(isinstance(v, int) for v in value):
            raise bad("a tuple of ints")
        if kind[1] is not None and len(value) != kind[1]:
            raise bad(f"{kind[1]} ints")
    elif kind == "floats":
        if not isinstance(value, tuple) or not all(isinstance(v, float) for v in value):
            raise bad("a tuple of floats")
    elif kind == "activation":
        if not isinstance(value, Activation):
            raise bad("an Activation")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise bad("a bool")
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an int")
    elif kind == "float":
        if not isinstance(value, float):
            raise bad("a float")
    elif kind == "str" and not isinstance(value, str):
        raise bad("a str")
    elif kind == "fusion":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and (isinstance(v, str) or isinstance(v, list) and
                                        all(isinstance(s, str) for s in v))
                for k, v in value.items()):
            raise bad("a dict of str -> str or list of str")


# the kernel-fusion marks (ir/fusion.py), allowed on every op
FUSION_ATTRIBUTES = {FUSED_INTO: ("str", ""), FUSION: ("fusion", {})}


def verify(graph: Graph) -> None:
    written = {name for name, t in graph.tensors.items() if t.is_const} | set(graph.inputs)
    for name in graph.inputs:
        if name not in graph.tensors:
            raise GraphError(f"graph input {name!r} has no tensor")
    for node in graph.nodes:
        lo, hi = arity(node.op)
        if not lo <= len(node.inputs) <= hi:
            raise GraphError(f"node {node.name!r} ({node.op.name}) has {len(node.inputs)} inputs, "
                             f"expected {lo}..{hi}")
        schema = {**ATTRIBUTES.get(node.op, {}), **FUSION_ATTRIBUTES}
        for name, value in node.attrs.items():
            if name not in schema:
                raise GraphError(f"node {node.name!r} ({node.op.name}): unknown attribute {name!r}")
            _check_attr(node, name, schema[name][0], value)
        for name, (_, default) in schema.items():
            if default is None and name not in node.attrs:
                raise GraphError(f"node {node.name!r} ({node.op.name}): attribute {name!r} missing")
        for i in node.inputs:
            if i and i not in written:
                raise GraphError(f"node {node.name!r} ({node.op.name}) reads {i!r} before it is "
                                 f"written (or it does not exist)")
        for o in node.outputs:
            if o in written:
                raise GraphError(f"node {node.name!r} ({node.op.name}) writes {o!r}, which is "
                                 f"already written")
            written.add(o)
        for o, (shape, dtype) in zip(node.outputs, shapes.infer(node, graph)):
            t = graph.tensors.get(o)
            if t is None:
                raise GraphError(f"node {node.name!r}: output {o!r} has no tensor")
            if t.shape != shape or t.dtype is not dtype:
                raise GraphError(f"node {node.name!r} ({node.op.name}): output {o!r} is stored as "
                                 f"{t.shape} {t.dtype.value} but infers {shape} {dtype.value}")
    for o in graph.outputs:
        if o not in written:
            raise GraphError(f"graph output {o!r} is never written")
