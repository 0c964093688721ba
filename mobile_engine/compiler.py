"""compile(): model -> optimised IR -> kernel steps -> Plan (the public entry point)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from mobile_engine.errors import EngineError, UnsupportedOperatorError
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.verify import verify
from mobile_engine.plan.plan import Plan
from mobile_engine.planning.lower import lower_graph

ENGINE_VERSION = "0.1.0"


def _io(graph: Graph, names: list[str]) -> list[dict]:
    return [{"name": n, "shape": list(graph.tensors[n].shape),
             "dtype": graph.tensors[n].dtype.value} for n in names]


def _source_hash(model) -> str | None:
    if isinstance(model, (str, Path)):
        h = hashlib.sha256()
        with open(model, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if isinstance(model, bytes):
        return hashlib.sha256(model).hexdigest()
    return None


def import_model(model, input_shapes: dict | None = None) -> Graph:
    """An IR graph from an ONNX file/bytes/ModelProto, or a Graph (copied) as it is."""
    if isinstance(model, Graph):
        graph = model.copy()
        verify(graph)
        return graph
    from mobile_engine.importers.onnx import import_onnx
    return import_onnx(model, input_shapes)


def compile(model, input_shapes: dict | None = None, quantize: str | None = None,
            calibration: Iterable[dict] | None = None, disable_passes: Iterable[str] = (),
            verify_each: bool = False) -> Plan:
    """Compile a model into a runtime plan.

    Parameters
    ----------
    model : path to an ONNX file, ONNX bytes, ``onnx.ModelProto`` or an IR ``Graph``
    input_shapes : {input name: shape} fixing symbolic dimensions (e.g. ``{"image": (1, 3, 480, 640)}``)
    quantize : None for float32 ("int8" is not available yet)
    calibration : representative feed dicts for ``quantize="int8"``
    disable_passes : names of graph passes to skip (see ``mobile_engine.passes.pipeline.PIPELINE``)
    """
    from mobile_engine.passes.pipeline import optimize
    if quantize not in (None, "none", "fp32"):
        raise UnsupportedOperatorError(f"quantize={quantize!r} is not supported yet; use None")
    graph = import_model(model, input_shapes)
    reports = optimize(graph, disable=disable_passes, verify_each=verify_each)
    verify(graph)
    lowered = lower_graph(graph)
    provenance = {
        "source": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
        "source_sha256": _source_hash(model),
        "graph": graph.name,
        "engine_version": ENGINE_VERSION,
        "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
        "precision": "fp32",
    }
    passes = [{"name": r.name, "rewrites": r.rewrites,
               "delta": {op.name: d for op, d in r.changes().items()}} for r in reports]
    if not lowered.steps and not graph.outputs:
        raise EngineError("the model has no outputs")
    return Plan.from_lowered(lowered, _io(graph, graph.inputs), _io(graph, graph.outputs),
                             provenance, passes)
