"""plan_from_graph: an optimised IR graph (float or int8) -> a Plan: lowering, then the manifest.

Used by ``compile`` (compiler.py) and by the compile-time runs of a graph's float or int8 plan
(calibration.py, quality.py), which compiler.py in turn imports.
"""
from __future__ import annotations

from typing import Iterable

from mobile_engine import __version__ as ENGINE_VERSION
from mobile_engine.errors import EngineError
from mobile_engine.ir.graph import Graph
from mobile_engine.plan.plan import Plan
from mobile_engine.passes.pipeline import fuse
from mobile_engine.planning.lower import lower_graph
from mobile_engine.planning.target import TARGET
from mobile_engine.runtime.tiles import plan_tiles
from mobile_engine.targets import Target, host


def _io(graph: Graph, names: list[str]) -> list[dict]:
    return [{"name": n, "shape": list(graph.tensors[n].shape),
             "dtype": graph.tensors[n].dtype.value} for n in names]


def plan_from_graph(graph: Graph, provenance: dict | None = None, reports=(),
                    disable_passes: Iterable[str] = (), target: Target | None = None) -> Plan:
    """Lower an optimised IR graph (float or int8) into a Plan: the kernel-fusion passes mark a
    copy of it (``passes/pipeline.py`` ``FUSION_PASSES``, minus ``disable_passes``), then
    planning lowers the copy. ``target`` (default: this machine) is recorded in the manifest
    with the tile each step runs as there (``runtime/tiles.py``)."""
    graph = graph.copy()
    reports = list(reports) + fuse(graph, TARGET, disable_passes)
    target = target or host()
    lowered = lower_graph(graph, target.registers)
    passes = [{"name": r.name, "rewrites": r.rewrites,
               "delta": {op.name: d for op, d in r.changes().items()}} for r in reports]
    if not lowered.steps and not graph.outputs:
        raise EngineError("the model has no outputs")
    provenance = provenance or {"graph": graph.name, "engine_version": ENGINE_VERSION}
    provenance["target"] = target.name
    plan = Plan.from_lowered(lowered, _io(graph, graph.inputs), _io(graph, graph.outputs),
                             provenance, passes)
    record = target.record()
    record["tiles"] = plan_tiles([s.kernel for s in lowered.steps], target.registers,
                                 target.int8_dot)
    plan.manifest["target"] = record
    return plan
