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


Lowering = Callable[[Node, Graph], list[Step]]

LOWERINGS: dict[Op, Lowering] = {}


def lowers(*ops: Op):
    def register(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return register


def lower_node(node: Node, graph: Graph) -> list[Step]:
    fn = LOWERINGS.get(node.op)
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
