"""Step: one kernel call of a plan, chosen and prepared at compile time.

A lowering turns an IR node into steps (kernel id, runtime tensors, JSON-able params and packed
weight blobs); at load time a binder (``mobile_engine/runtime/binders``) turns a loaded step into a
``(function, args)`` pair that ``Session.run`` calls with no further work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mobile_engine.errors import EngineError, UnsupportedOperatorError
from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op


@dataclass
class Step:
    name: str                                   # the IR node it came from
    kernel: str                                 # kernel id, e.g. "f32_conv2d_igemm_4x32_minmax"
    inputs: list[str]                           # runtime tensors (graph inputs or arena tensors)
    outputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)        # ints, floats, strs, lists
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # packed blobs, C-contiguous
    flops: int = 0
    # arena tensors only this step touches (name -> (shape, dtype)): not in the graph, live
    # during the step alone; its binder gets them after its outputs (``Session._bind``)
    scratch: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)


Lowering = Callable[[Node, Graph], list[Step]]

# Two plain tables, filled once at import by the family modules: a node lowers with
# INT8_LOWERINGS[op] when its step has quantized semantics (``quantized``), else LOWERINGS[op].
LOWERINGS: dict[Op, Lowering] = {}
INT8_LOWERINGS: dict[Op, Lowering] = {}
# fused heads whose record names a role handled by a lowering of its own (e.g. "stats_members")
FUSED_LOWERINGS: dict[str, Lowering] = {}


def _registrar(table: dict[Op, Lowering], ops: tuple[Op, ...]):
    def register(fn: Lowering) -> Lowering:
        for op in ops:
            if op in table:
                raise RuntimeError(f"{op.name} has two lowerings: {table[op].__qualname__} and "
                                   f"{fn.__qualname__}")
            table[op] = fn
        return fn
    return register


def lowers(*ops: Op):
    """Register the decorated float lowering for ``ops``: one per op, never rebound."""
    return _registrar(LOWERINGS, ops)


def lowers_int8(*ops: Op):
    """Register the decorated lowering of quantized ``ops`` nodes: one per op."""
    return _registrar(INT8_LOWERINGS, ops)


def quantized(node: Node, graph: Graph) -> bool:
    """The node's step has quantized semantics: a tensor of the node, or of a node it absorbed
    ("norm", "add" in its fusion record), carries quant params."""
    record = fusion.fusion(node)
    nodes = [node] + [graph.node(record[r]) for r in ("norm", "add") if r in record]
    return any(graph.tensors[n].quant is not None for m in nodes for n in m.inputs + m.outputs
               if n)


def lowers_fusion(role: str):
    """Register the decorated lowering for fused heads whose record holds ``role``."""
    def register(fn: Lowering) -> Lowering:
        FUSED_LOWERINGS[role] = fn
        return fn
    return register


def lower_node(node: Node, graph: Graph) -> list[Step]:
    """The steps of ``node``: none when a kernel-fusion pass put it into another node's step
    (``ir/fusion.py``), else its fused head's or its op's lowering."""
    if fusion.absorbed(node):
        return []
    record = fusion.fusion(node)
    table = INT8_LOWERINGS if node.op in INT8_LOWERINGS and quantized(node, graph) \
        else LOWERINGS
    fn = next((FUSED_LOWERINGS[r] for r in record if r in FUSED_LOWERINGS), table.get(node.op))
    if fn is None:
        raise UnsupportedOperatorError(
            f"node {node.name!r} (op {node.op.name}) has no kernel; ops with kernels: "
            f"{', '.join(sorted(op.name for op in LOWERINGS))}")
    try:
        return fn(node, graph)
    except EngineError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, MemoryError, OverflowError) as exc:
        raise EngineError(f"node {node.name!r} ({node.op.name}): cannot lower it: "
                          f"{type(exc).__name__}: {exc}") from exc


def runtime_inputs(node: Node, graph: Graph) -> tuple[list[str], dict[str, np.ndarray]]:
    """Split a node's inputs into runtime tensor names and constants (kept as weights ``in<i>``)."""
    names, consts = [], {}
    for i, name in enumerate(node.inputs):
        data = graph.const(name) if name else None
        if data is not None:
            consts[f"in{i}"] = np.require(data, requirements="C")
        elif name:
            names.append(name)
    return names, consts


# NOTE: at the bottom on purpose: the family modules import this one for `lowers`/`binds`, and
# whoever imports the registries gets them filled.
import mobile_engine.planning.families  # noqa: E402,F401
