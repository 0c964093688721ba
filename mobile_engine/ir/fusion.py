"""Kernel-fusion marks: how the kernel-fusion passes (``mobile_engine/passes/fusions``) tell
lowering which nodes run inside another node's step.

Two attributes, allowed on every op:

- ``fused_into`` (str): the name of the node whose step computes this one; the node lowers to
  no step of its own.
- ``fusion`` (dict of str -> str or list of str): on that head node, what it absorbed, by role
  (for example ``{"norm": "<node>", "add": "<node>", "residual": "<tensor>"}``); its lowering
  reads these names instead of matching patterns itself.

The marks are plain data on the IR: passes write them, lowering reads them, nothing else
changes the graph's meaning (``ir/interpret.py`` ignores them).
"""
from __future__ import annotations

from mobile_engine.ir.graph import Graph, Node

FUSED_INTO = "fused_into"
FUSION = "fusion"
MARKS = (FUSED_INTO, FUSION)


def absorb(node: Node, head: Node, role: str | None = None, value=None) -> None:
    """Mark ``node`` as computed by ``head``'s step; record ``role`` -> ``value`` (default: the
    node's name) in ``head``'s fusion record."""
    node.attrs[FUSED_INTO] = head.name
    if role is not None:
        record(head, role, node.name if value is None else value)


def record(head: Node, role: str, value) -> None:
    """Set ``role`` in ``head``'s fusion record (a str or a list of str)."""
    value = list(value) if isinstance(value, (list, tuple)) else value
    head.attrs[FUSION] = {**fusion(head), role: value}       # a new dict: copies share none


def fusion(node: Node) -> dict:
    """The node's fusion record (empty when it absorbed nothing)."""
    return node.attrs.get(FUSION, {})


def absorbed(node: Node) -> bool:
    """True when another node's step computes ``node``."""
    return bool(node.attrs.get(FUSED_INTO))


def clear(graph: Graph) -> None:
    """Remove every mark (the fusion passes start from a clean graph)."""
    for node in graph.nodes:
        for key in MARKS:
            node.attrs.pop(key, None)
