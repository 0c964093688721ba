"""Quality runs of an int8 plan against its float plan: per-output PSNR per image (relative to
each output's own range), top-1/top-5 agreement of classifier-like outputs, a user's decode hook,
per-layer SQNR, --min-psnr (the measures and the report: quantize/report.py).

``min_psnr``: while the worst output on the worst image (calibration and validation images
alike) is below the target, the conv whose float version raises that worst figure most (each
int8 conv tried in float, one plan each) is kept in float; when no int8 conv is left the report
says the target cannot be reached.

``decode``: ``decode({output name: array}) -> {name: array}`` turns a detector's raw outputs
into what matters (boxes in pixels, scores per anchor, ...); each returned array is measured
like an output (named ``decoded:NAME``) and counts for ``min_psnr``. Its arrays must keep their
shape between the float and the int8 plan (decode before non-maximum suppression).

The math lives in ``quantize/``; this module, beside compiler.py, runs the plans.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from mobile_engine.errors import EngineError
from mobile_engine.graph_to_plan import plan_from_graph
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.interpret import dequantize
from mobile_engine.ir.ops import Op
from mobile_engine.passes.quantize_int8 import QuantizeResult, quantize_int8
from mobile_engine.runtime.session import Session
from quantize.report import ImageSet, LayerError, QualityReport, measure
from quantize.table import QuantTable

Decode = Callable[[dict], dict]


def _run_all(sess: Session, names: list[str], feeds: list[dict]) -> list[dict]:
    return [dict(zip(names, (np.array(a) for a in sess.run(names, f)))) for f in feeds]


def _decoded(decode: Decode | None, outputs: dict) -> dict:
    if decode is None:
        return {}
    got = decode(dict(outputs))
    if not isinstance(got, dict):
        raise EngineError(f"the decode hook returned {type(got).__name__}; return a dict "
                          f"{{name: array}}")
    return {f"decoded:{k}": np.asarray(v) for k, v in got.items()}


def measure_set(name: str, refs: list[dict], outs: list[dict], decode: Decode | None = None,
                note: str = "") -> ImageSet:
    """Every output (and decoded array) of the float runs ``refs`` against the int8 runs
    ``outs`` (one dict per image)."""
    refs = [{**r, **_decoded(decode, r)} for r in refs]
    outs = [{**o, **_decoded(decode, o)} for o in outs]
    result = ImageSet(name, len(refs), note=note)
    for key in (refs[0] if refs else {}):
        for r, o in zip(refs, outs):
            if np.shape(r[key]) != np.shape(o[key]):
                raise EngineError(f"decode hook: {key!r} has shape {list(np.shape(r[key]))} "
                                  f"from the float plan and {list(np.shape(o[key]))} from the "
                                  f"int8 plan; return fixed-shape arrays (decode before "
                                  f"non-maximum suppression)")
        result.outputs.append(measure(key, [r[key] for r in refs], [o[key] for o in outs]))
    return result


def layer_errors(fsess: Session, qsess: Session, result: QuantizeResult,
                 feeds: list[dict]) -> list[LayerError]:
    """Per-layer SQNR of every int8-plan step writing an activation (rank >= 3) on ``feeds``."""
    qsteps = qsess.plan.steps
    qg = result.graph
    # activations only: small vectors (e.g. style mixing with equalized constants) are not
    # layers, and hold values rescaled by equalization
    wanted = {result.source.get(o, o) for s in qsteps for o in s["outputs"]
              if len(qg.tensors[o].shape) >= 3}
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for feed in feeds:
        ref = {n: np.asarray(v) for n, v in feed.items() if n in wanted}

        def keep(i, arrays):
            for name, arr in zip(fsess.plan.steps[i]["outputs"], arrays):
                if name in wanted:
                    ref[name] = arr.copy()
        fsess.run_observed(feed, keep)

        def compare(i, arrays):
            for name, arr in zip(qsteps[i]["outputs"], arrays):
                f = ref.get(result.source.get(name, name))
                if f is None or f.shape != arr.shape:
                    continue
                t = qg.tensors[name]
                q = dequantize(arr, t.quant) if t.quant is not None else arr.astype(np.float32)
                d = result.equalized.get(result.source.get(name, name))
                if d is not None:
                    q = q * np.asarray(d, np.float32)
                f64 = f.astype(np.float64)
                signal[name] = signal.get(name, 0.0) + float(np.sum(f64 * f64))
                noise[name] = noise.get(name, 0.0) + float(np.sum((f64 - q) ** 2))
        qsess.run_observed(feed, compare)
    layers = []
    for s in qsteps:
        for name in s["outputs"]:
            if name in noise:
                sqnr = float("inf") if noise[name] == 0 else 10 * np.log10(
                    max(signal[name], 1e-300) / noise[name])
                layers.append(LayerError(s["name"], s["kernel"], name,
                                         qg.tensors[name].dtype.value, sqnr))
    return layers


def evaluate(graph: Graph, result: QuantizeResult, sets: dict[str, list[dict]],
             threads: int | None = None, decode: Decode | None = None,
             notes: dict[str, str] | None = None) -> QualityReport:
    """The report of ``result`` on named sets of feeds ({"calibration": [...], "validation":
    [...]}; empty sets are left out): per output per image; per layer on the validation set
    (else the calibration set)."""
    fsess = Session(plan_from_graph(graph), threads)
    qsess = Session(plan_from_graph(result.graph), threads)
    outs = list(graph.outputs)
    report = QualityReport(kept_float=list(result.kept_float))
    for name, feeds in sets.items():
        if feeds:
            report.sets.append(measure_set(name, _run_all(fsess, outs, feeds),
                                           _run_all(qsess, outs, feeds), decode,
                                           (notes or {}).get(name, "")))
    layer_feeds = sets.get("validation") or sets.get("calibration") or []
    report.layers = layer_errors(fsess, qsess, result, layer_feeds)
    return report


def _worst(result: QuantizeResult, feeds: list[dict], refs: list[dict], threads,
           decode: Decode | None) -> float:
    """The worst output's PSNR over ``feeds`` (float outputs ``refs``)."""
    sess = Session(plan_from_graph(result.graph), threads)
    outs = _run_all(sess, list(refs[0]), feeds)
    s = measure_set("", refs, outs, decode)
    return s.worst.min_psnr_db


def quantize_with_report(graph: Graph, table: QuantTable, keep_float: Iterable[str] = (),
                         sets: dict[str, list[dict]] | None = None,
                         min_psnr: float | None = None, threads: int | None = None,
                         decode: Decode | None = None, notes: dict[str, str] | None = None
                         ) -> tuple[QuantizeResult, QualityReport | None]:
    """``quantize_int8`` and, given feeds (``sets``: {"calibration": [...], "validation":
    [...]}), its quality report.

    With ``min_psnr``: while the worst output on the worst image of every set is below it, every
    int8 conv is tried in float on its own (one int8 plan each) and the one whose float version
    gains the most is kept in float. Measured, not estimated: a layer's local noise says little
    about how much the layers after it amplify it (the first convs: most).
    """
    keep = list(keep_float)
    result = quantize_int8(graph, table, keep)
    sets = {k: v for k, v in (sets or {}).items() if v}
    if not sets:
        return result, None
    steps = []
    if min_psnr is not None:
        feeds = [f for v in sets.values() for f in v]
        fsess = Session(plan_from_graph(graph), threads)
        refs = _run_all(fsess, list(graph.outputs), feeds)
        current = _worst(result, feeds, refs, threads, decode)
        while current < min_psnr:
            convs = [n.name for n in result.graph.nodes
                     if n.op is Op.CONV2D and n.name in result.quantized]
            if not convs:
                steps.append(f"cannot reach {min_psnr:.1f} dB: no int8 conv left to keep in "
                             f"float; worst output {current:.1f} dB")
                break
            trials = {}
            for name in convs:
                trial = quantize_int8(graph, table, keep + [name])
                trials[name] = (_worst(trial, feeds, refs, threads, decode), trial)
            best = max(trials, key=lambda k: trials[k][0])
            gain, result = trials[best]
            keep.append(best)
            steps.append(f"kept {best} in float: worst output {current:.1f} -> {gain:.1f} dB "
                         f"(the largest gain of {len(convs)} int8 convs)")
            current = gain
    report = evaluate(graph, result, sets, threads, decode, notes)
    report.target_db = min_psnr
    report.steps = steps
    return result, report
