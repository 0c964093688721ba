"""compile(): model -> optimised IR -> kernel steps -> Plan (the public entry point)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from mobile_engine.errors import EngineError, UnsupportedOperatorError
from mobile_engine.importers import parse_input_shapes
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import QUANT_OPS
from mobile_engine.ir.verify import verify
from mobile_engine.graph_to_plan import plan_from_graph
from mobile_engine.plan.plan import Plan
from mobile_engine.targets import resolve as resolve_target

from mobile_engine import __version__ as ENGINE_VERSION


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
    """An IR graph from an ONNX or TFLite file/bytes (told apart by content: TFLite's "TFL3"
    identifier), an ONNX ModelProto, or a Graph (copied) as it is."""
    if isinstance(model, Graph):
        graph = model.copy()
        verify(graph)
        return graph
    if _tflite_source(model):
        from mobile_engine.importers.tflite import import_tflite
        return import_tflite(model, input_shapes)
    from mobile_engine.importers.onnx import import_onnx
    return import_onnx(model, input_shapes)


def _tflite_source(model) -> bool:
    from mobile_engine.importers.tflite_base import is_tflite
    return not isinstance(model, Graph) and (
        is_tflite(model) or (isinstance(model, (str, Path)) and str(model).endswith(".tflite")))


def optimized_graph(model, input_shapes: dict | None = None, disable_passes: Iterable[str] = (),
                    verify_each: bool = False):
    """(the optimised IR of ``model``, the pass reports). A pre-quantized (QDQ) model's
    QUANTIZE/DEQUANTIZE pairs are folded into int8 ops (passes/fold_qdq.py).

    The same graph feeds the float plan, calibration and the int8 rewrite: its planar tail
    (passes/nchw_tail.py) stays float in int8 plans (quantize_int8 quantizes NHWC nodes only).
    """
    from mobile_engine.passes.pipeline import QDQ_PIPELINE, optimize
    graph = import_model(model, input_shapes)
    disable_passes = set(disable_passes)
    if not _has_qdq(graph):
        reports = optimize(graph, disable_passes, verify_each)
    else:
        # NOTE: in a QDQ model every conv is float until fold_qdq: nchw_tail runs after it
        reports = optimize(graph, disable_passes | {"nchw_tail"}, verify_each)
        reports += optimize(graph, disable_passes, verify_each, QDQ_PIPELINE)
        if _tflite_source(model):
            # LiteRT rounds its int8 convs in integer arithmetic: no float32 tie replay
            # (fold_qdq's float_ties is what an ONNX QDQ model's float32 conv computes)
            for node in graph.nodes:
                if node.attrs.get("float_ties"):
                    node.attrs["float_ties"] = False
    verify(graph)
    return graph, reports


def _has_qdq(graph: Graph) -> bool:
    return any(n.op in QUANT_OPS and not graph.tensors[n.inputs[0]].is_const
               for n in graph.nodes)


def _calibration_meta(model, input_shapes) -> dict:
    return {"source_sha256": _source_hash(model),
            "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()}}


def calibrate_model(model, input_shapes: dict | None = None, calibration: Iterable[dict] = (),
                    observer: str = "percentile", disable_passes: Iterable[str] = (),
                    progress=None):
    """The QuantTable of ``model`` over ``calibration`` feeds (see ``mobile_engine.calibration``)."""
    from mobile_engine.calibration import calibrate
    input_shapes = parse_input_shapes(input_shapes)
    graph, _ = optimized_graph(model, input_shapes, disable_passes)    # the graph compile() uses
    return calibrate(graph, calibration, observer, progress=progress,
                     meta=_calibration_meta(model, input_shapes))


def compile(model, input_shapes: dict | None = None, quantize: str | None = None,
            calibration: Iterable[dict] | None = None, disable_passes: Iterable[str] = (),
            verify_each: bool = False, *, quant_table=None, keep_float: Iterable[str] = (),
            observer: str = "percentile", min_psnr: float | None = None,
            validation: Iterable[dict] | None = None, progress=None, decode=None,
            evaluation: Iterable[dict] | None = None, target: str = "host") -> Plan:
    """Compile a model into a runtime plan.

    Parameters
    ----------
    model : path to an ONNX or TFLite file, their bytes, ``onnx.ModelProto`` or an IR ``Graph``
    input_shapes : {input name: shape} fixing symbolic dimensions, a tuple or a string
        (``{"image": (1, 3, 480, 640)}`` or ``{"image": "1x3x480x640"}``)
    quantize : None for float32, or "int8" (int8 weights, uint8 activations; DESIGN.md)
    calibration : representative feed dicts for ``quantize="int8"`` (e.g. 8 photos)
    disable_passes : names of passes to skip (``mobile_engine.passes.pipeline.PIPELINE`` and
        ``FUSION_PASSES``)
    quant_table : a ``quantize.table.QuantTable`` or the path of its JSON: skips calibration
    keep_float : names of conv/add nodes to leave in float
    observer : how calibration picks ranges: "percentile", "minmax", "mse" or "entropy"
    min_psnr : keep the layers that cost the most in float until the worst output's PSNR
        (relative to its own range; quantize/report.py) against the float plan, on every
        calibration and validation feed, reaches it (or say it cannot)
    validation : held-out feed dicts (never calibrated on) for the quality report; the report
        (per output per feed on the calibration and the validation feeds, per-layer SQNR)
        lands in ``plan.manifest["provenance"]["quantization"]["report"]``
    progress : ``progress(done, total)`` during calibration
    decode : ``decode({output name: array}) -> {name: array}``, e.g. a detector's raw outputs
        to boxes in pixels; each returned array is reported (and held to ``min_psnr``) like an
        output (mobile_engine/quality.py)
    evaluation : the former name of ``validation``
    target : the CPU the plan is for: "host" (this machine), an ARM core ("cortex-a76") or an
        x86 level ("x86-64-v3"); ``mobile_engine.targets.names()``. Recorded in the plan with
        the tile each step runs as there; the plan runs on any CPU (refit at load)
    """
    if quantize not in (None, "none", "fp32", "int8"):
        raise UnsupportedOperatorError(f"quantize={quantize!r} is not supported; use None or "
                                       f"\"int8\"")
    input_shapes = parse_input_shapes(input_shapes)     # tuples or "1x3x480x640" strings
    cpu = resolve_target(target)
    graph, reports = optimized_graph(model, input_shapes, disable_passes, verify_each)
    provenance = {
        "source": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
        "source_sha256": _source_hash(model),
        "graph": graph.name,
        "engine_version": ENGINE_VERSION,
        "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
        "precision": "fp32",
    }
    if quantize != "int8":
        return plan_from_graph(graph, provenance, reports, disable_passes, cpu)
    from mobile_engine.calibration import calibrate
    from mobile_engine.quality import quantize_with_report
    from quantize.table import as_table
    calibration = None if calibration is None else [dict(f) for f in calibration]
    if validation is None:
        validation = evaluation
    validation = None if validation is None else [dict(f) for f in validation]
    if quant_table is not None:
        table = as_table(quant_table)
    elif calibration:
        table = calibrate(graph, calibration, observer, progress=progress,
                          meta=_calibration_meta(model, input_shapes))
    else:
        raise EngineError("quantize=\"int8\" needs calibration=<feed dicts> (e.g. 8 photos) or "
                          "quant_table=<a calibrated table>")
    if min_psnr is not None and not (validation or calibration):
        raise EngineError("min_psnr needs validation=<feed dicts> (or calibration feeds)")
    sets = {"calibration": calibration, "validation": validation}
    notes = {"calibration": "the ranges were measured on these", "validation": "held out"}
    result, report = quantize_with_report(graph, table, keep_float, sets, min_psnr,
                                          decode=decode, notes=notes)
    provenance["precision"] = "int8"
    provenance["quantization"] = {
        "observer": table.meta.get("observer"), "images": table.meta.get("images"),
        "equalized_tensors": len(table.equalize), "int8_nodes": len(result.quantized),
        "kept_float": list(result.kept_float),
        "few_channel_float": list(result.few_channel_float), "summary": result.summary(),
        **({"report": report.as_dict()} if report is not None else {})}
    return plan_from_graph(result.graph, provenance, reports, disable_passes, cpu)
