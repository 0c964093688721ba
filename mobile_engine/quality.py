"""Quality runs of an int8 plan against its float plan: per-layer SQNR, end-to-end PSNR,
--min-psnr (the measures and the report: quantize/report.py).

``min_psnr``: while the lowest PSNR over the feeds is below the target, the conv whose float
version raises it most (each int8 conv tried in float, one plan each) is kept in float.

The math lives in ``quantize/``; this module, beside compiler.py, runs the plans.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from mobile_engine.graph_to_plan import plan_from_graph
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.interpret import dequantize
from mobile_engine.ir.ops import Op
from mobile_engine.passes.quantize_int8 import QuantizeResult, quantize_int8
from mobile_engine.runtime.session import Session
from quantize.report import LayerError, QualityReport, psnr_db
from quantize.table import QuantTable


def _sessions(graph: Graph, result: QuantizeResult, threads):
    return Session(plan_from_graph(graph), threads), Session(plan_from_graph(result.graph),
                                                             threads)


def evaluate(graph: Graph, result: QuantizeResult, feeds: list[dict],
             threads: int | None = None) -> tuple[QualityReport, dict[str, float]]:
    """(the report, {int8-graph tensor: relative noise power}) of ``result`` on ``feeds``; the
    layers are the steps writing activations (rank >= 3)."""
    fsess, qsess = _sessions(graph, result, threads)
    qsteps = qsess.plan.steps
    qg = result.graph
    # activations only: small vectors (e.g. style mixing with equalized constants) are not
    # layers, and hold values rescaled by equalization
    wanted = {result.source.get(o, o) for s in qsteps for o in s["outputs"]
              if len(qg.tensors[o].shape) >= 3}
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    psnr = []
    out = graph.outputs[0]
    for feed in feeds:
        ref: dict[str, np.ndarray] = {n: np.asarray(feed[n]) for n in graph.inputs if n in wanted}

        def keep(i, arrays):
            for name, arr in zip(fsess.plan.steps[i]["outputs"], arrays):
                if name in wanted:
                    ref[name] = arr.copy()
        fsess.run_observed(feed, keep)

        qout = {}

        def compare(i, arrays):
            for name, arr in zip(qsteps[i]["outputs"], arrays):
                if name == out:
                    qout[out] = arr.copy()
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
        if out not in qout:
            qout[out] = qsess.run([out], feed)[0]
        psnr.append(psnr_db(ref[out] if out in ref else fsess.run([out], feed)[0], qout[out]))
    report = QualityReport(psnr_db=psnr, kept_float=list(result.kept_float))
    rel = {}
    for s in qsteps:
        for name in s["outputs"]:
            if name in noise:
                rel[name] = noise[name] / max(signal[name], 1e-300)
                sqnr = float("inf") if noise[name] == 0 else 10 * np.log10(
                    max(signal[name], 1e-300) / noise[name])
                report.layers.append(LayerError(s["name"], s["kernel"], name,
                                                qg.tensors[name].dtype.value, sqnr))
    return report, rel


def _min_psnr(result: QuantizeResult, feeds: list[dict], refs: list[np.ndarray],
              threads) -> float:
    sess = Session(plan_from_graph(result.graph), threads)
    out = result.graph.outputs[0]
    return min(psnr_db(ref, sess.run([out], f)[0]) for f, ref in zip(feeds, refs))


def quantize_with_report(graph: Graph, table: QuantTable, keep_float: Iterable[str] = (),
                         feeds: list[dict] | None = None, min_psnr: float | None = None,
                         threads: int | None = None
                         ) -> tuple[QuantizeResult, QualityReport | None]:
    """``quantize_int8`` and, given feeds, its quality report.

    With ``min_psnr``: while the lowest PSNR over the feeds is below it, every int8 conv is
    tried in float on its own (one int8 plan each) and the one whose float version gains the
    most is kept in float. Measured, not estimated: a layer's local noise says little about how
    much the layers after it amplify it (the first convs: most).
    """
    keep = list(keep_float)
    result = quantize_int8(graph, table, keep)
    if not feeds:
        return result, None
    steps = []
    if min_psnr is not None:
        fsess = Session(plan_from_graph(graph), threads)
        refs = [fsess.run([graph.outputs[0]], f)[0] for f in feeds]
        current = _min_psnr(result, feeds, refs, threads)
        while current < min_psnr:
            convs = [n.name for n in result.graph.nodes
                     if n.op is Op.CONV2D and n.name in result.quantized]
            if not convs:
                steps.append(f"no int8 conv left to keep in float; {current:.1f} dB < "
                             f"{min_psnr:.1f} dB")
                break
            trials = {}
            for name in convs:
                trial = quantize_int8(graph, table, keep + [name])
                trials[name] = (_min_psnr(trial, feeds, refs, threads), trial)
            best = max(trials, key=lambda k: trials[k][0])
            gain, result = trials[best]
            keep.append(best)
            steps.append(f"kept {best} in float: min PSNR {current:.1f} -> {gain:.1f} dB "
                         f"(the largest gain of {len(convs)} int8 convs)")
            current = gain
    report, _ = evaluate(graph, result, feeds, threads)
    report.target_db = min_psnr
    report.steps = steps
    return result, report
