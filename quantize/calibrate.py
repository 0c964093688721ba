"""Calibration: run the FLOAT plan over representative feeds and record per-tensor ranges.

The optimised float IR is lowered and bound in a ``Session``; ``Session.run_observed`` hands
over every step's outputs. Two passes over the feeds (kept in memory: a few images): the first
records each float activation's min, max and whether it is 8-bit image data (every value k/255),
the second a histogram over [min, max]; an observer (observers.py) turns the statistics into the
range stored in the ``QuantTable``. Before that, per-channel statistics of the instance-norm
outputs choose the equalization factors (equalize.py); the ranges are measured on the equalized
graph. Observed: the graph inputs and every float32 step output of
rank 4 (NHWC activations), i.e. everything the int8 rewrite may quantize.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from mobile_engine.errors import InputError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import Op
from quantize import equalize as eq
from quantize.observers import PERCENTILE, ChannelStats, TensorStats, observe
from quantize.table import QuantTable, TableEntry


def observed_tensors(graph: Graph) -> list[str]:
    """Float activations whose ranges calibration records: graph inputs and rank-4 tensors."""
    names = [n for n in graph.inputs if graph.tensors[n].dtype is DType.FLOAT32]
    for node in graph.nodes:
        for o in node.outputs:
            t = graph.tensors[o]
            if t.dtype is DType.FLOAT32 and len(t.shape) == 4 and not t.is_const:
                names.append(o)
    return names


def _relabels(graph: Graph, computed: set[str], stats: dict) -> dict[str, list[str]]:
    """{computed tensor: wanted tensors holding its values permuted} through TRANSPOSE/RESHAPE
    chains the float plan does not run (a conv reading its NCHW input directly): per-tensor
    statistics do not depend on the order of the values. Not for per-channel statistics."""
    source: dict[str, str] = {}
    for n in graph.nodes:
        if n.op in (Op.TRANSPOSE, Op.RESHAPE) and n.outputs[0] not in computed:
            src = source.get(n.inputs[0], n.inputs[0])
            if src in computed:
                source[n.outputs[0]] = src
    copies: dict[str, list[str]] = {}
    for name, src in source.items():
        if name in stats and isinstance(stats[name], TensorStats):
            copies.setdefault(src, []).append(name)
    return copies


def collect(graph: Graph, feeds: list[dict], stats: dict, threads: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Fill ``stats`` ({tensor name: TensorStats or ChannelStats}) over ``feeds``: a range pass
    (``observe_range``) then a histogram pass (``observe_hist``) over the float plan."""
    from mobile_engine.compiler import plan_from_graph
    from mobile_engine.runtime.session import Session
    if not feeds:
        raise InputError("calibration needs at least one feed dict")
    sess = Session(plan_from_graph(graph), threads=threads)
    names = [list(s["outputs"]) for s in sess.plan.steps]
    computed = {n for ns in names for n in ns} | set(graph.inputs)
    copies = _relabels(graph, computed, stats)
    total = 2 * len(feeds)
    for phase, method in enumerate(("observe_range", "observe_hist")):
        def update(name, arr, method=method):
            for target in [name] + copies.get(name, []):
                if target in stats:
                    getattr(stats[target], method)(arr)
        for k, feed in enumerate(feeds):
            for name in graph.inputs:
                update(name, feed[name])

            def on_step(i, arrays):
                for name, arr in zip(names[i], arrays):
                    update(name, arr)
            sess.run_observed(feed, on_step)
            if progress is not None:
                progress(phase * len(feeds) + k + 1, total)
    return stats


def calibrate(graph: Graph, feeds: Iterable[dict], observer: str = "percentile",
              equalize: bool = True, threads: int | None = None,
              progress: Callable[[int, int], None] | None = None,
              meta: dict | None = None) -> QuantTable:
    """A QuantTable of ``graph`` (the optimised float IR) from representative ``feeds``.

    Parameters
    ----------
    graph : the optimised float IR (``passes.pipeline.optimize`` applied); not modified
    feeds : feed dicts like ``Session.run``'s, e.g. real photos pre-processed to the model's input
    observer : "percentile" (default, p = observers.PERCENTILE), "minmax", "mse" or "entropy"
    equalize : first choose per-channel equalization factors (quantize/equalize.py; one more
        pass over the feeds), then calibrate the equalized graph
    progress : called as ``progress(done, total)`` after each run of the float plan
    """
    feeds = [dict(f) for f in feeds]
    groups = eq.find_groups(graph) if equalize else []
    runs = 2 * len(feeds) * (2 if groups else 1)
    done = [0]

    def step(k, _total):
        if progress is not None:
            progress(done[0] + k, runs)
    factors = {}
    if groups:
        cstats = collect(graph, feeds, {n: ChannelStats() for g in groups for n in g}, threads,
                         step)
        done[0] = 2 * len(feeds)
        factors = eq.choose_factors(groups, cstats)
        graph = graph.copy()
        eq.apply(graph, factors)
    stats = collect(graph, feeds, {n: TensorStats() for n in observed_tensors(graph)}, threads,
                    step)
    producers = {o: n.name for n in graph.nodes for o in n.outputs}
    table = QuantTable(meta={"observer": observer, "images": len(feeds),
                             **({"percentile": PERCENTILE} if observer == "percentile" else {}),
                             **({"equalize_alpha": eq.ALPHA} if factors else {}),
                             **(meta or {})},
                       equalize={k: [float(x) for x in v] for k, v in factors.items()})
    for name in observed_tensors(graph):
        s = stats[name]
        if s.count == 0 or not np.isfinite(s.minimum) or not np.isfinite(s.maximum):
            continue
        lo, hi = observe(s, observer)
        table.tensors[name] = TableEntry(float(lo), float(hi), s.minimum, s.maximum,
                                         s.on_255_grid, producers.get(name, ""))
    return table
