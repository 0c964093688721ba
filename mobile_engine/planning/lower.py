"""Lowering: an optimised IR graph -> kernel steps, tensor storage and arena offsets.

RESHAPE nodes become views: their output shares its input's storage and no step runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import mobile_engine.planning.families  # noqa: F401  (registers every op family)
from mobile_engine.errors import EngineError
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import VIEW_OPS
from mobile_engine.limits import check_arena
from mobile_engine.planning.arena import Lifetime, plan_offsets
from mobile_engine.planning.cpu import compiling_for
from mobile_engine.planning.step import Step, lower_node


@dataclass
class TensorSlot:
    shape: tuple[int, ...]
    dtype: str
    offset: int = 0          # bytes into the arena
    nbytes: int = 0


@dataclass
class Lowered:
    steps: list[Step]
    tensors: dict[str, TensorSlot]                 # every runtime tensor, views included
    arena_bytes: int
    constant_outputs: dict[str, np.ndarray] = field(default_factory=dict)


def lower_graph(graph: Graph, registers: tuple[int, int] | None = None) -> Lowered:
    """Lower ``graph`` for a CPU with vector ``registers`` (lanes, count; None: this machine's),
    which pick the conv tiles' channel widths (``planning/cpu.py``)."""
    steps: list[Step] = []
    storage: dict[str, str] = {}                     # tensor -> the tensor whose bytes it uses
    with compiling_for(registers):
        for node in graph.nodes:
            if node.op in VIEW_OPS and not graph.tensors[node.inputs[0]].is_const:
                storage[node.outputs[0]] = storage.get(node.inputs[0], node.inputs[0])
                continue
            steps.extend(lower_node(node, graph))

    runtime = {name for s in steps for name in s.inputs + s.outputs} | set(graph.inputs) \
        | {o for o in graph.outputs if not graph.tensors[o].is_const} | set(storage)
    for name in runtime:
        if name not in graph.tensors:
            raise EngineError(f"lowering produced a step on unknown tensor {name!r}")
        if graph.tensors[name].is_const:
            raise EngineError(f"a step reads constant {name!r} as a runtime tensor; its lowering "
                              f"should pass it as a weight")

    scratch = {name: (i, shape, dtype) for i, s in enumerate(steps)
               for name, (shape, dtype) in s.scratch.items()}
    for name in scratch:
        if name in graph.tensors or list(scratch).count(name) > 1:
            raise EngineError(f"lowering produced a scratch tensor {name!r} that is not unique")
    n = len(steps)
    first: dict[str, int] = {name: -1 for name in graph.inputs}
    last: dict[str, int] = {}
    for i, s in enumerate(steps):
        for name in s.inputs:
            root = storage.get(name, name)
            last[root] = max(last.get(root, i), i)
        for name in s.outputs:
            root = storage.get(name, name)
            first.setdefault(root, i)
            last[root] = max(last.get(root, i), i)
    for name in graph.outputs:
        if name in runtime:
            last[storage.get(name, name)] = n
    lifetimes = {}
    for root in {storage.get(name, name) for name in runtime}:
        t = graph.tensors[root]
        lifetimes[root] = Lifetime(first.get(root, -1), last.get(root, first.get(root, -1)),
                                   t.nbytes)
    for name, (i, shape, dtype) in scratch.items():
        lifetimes[name] = Lifetime(i, i, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    offsets, arena_bytes = plan_offsets(lifetimes)
    check_arena(arena_bytes, f"graph {graph.name!r}")
    tensors = {}
    for name in runtime:
        t = graph.tensors[name]
        tensors[name] = TensorSlot(t.shape, t.dtype.value, offsets[storage.get(name, name)],
                                   t.nbytes)
    for name, (_, shape, dtype) in scratch.items():
        tensors[name] = TensorSlot(tuple(shape), dtype, offsets[name], lifetimes[name].nbytes)
    consts = {o: graph.tensors[o].data for o in graph.outputs if graph.tensors[o].is_const}
    return Lowered(steps, tensors, arena_bytes, consts)
