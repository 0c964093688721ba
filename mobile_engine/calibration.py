"""Calibration runs: the FLOAT plan over representative feeds, recording per-tensor ranges.

The optimised float IR is lowered and bound in a ``Session``; ``Session.run_observed`` hands
over every step's outputs. Two passes over the feeds (kept in memory: a few images): the first
records each float activation's min, max and whether it is 8-bit image data (every value k/255),
the second a histogram over [min, max]; an observer (quantize/observers.py) turns the statistics
into the range stored in the ``QuantTable`` (quantize/calibrate.py ``make_table``). Before that,
per-channel statistics of the instance-norm outputs choose the equalization factors
(quantize/equalize.py); the ranges are measured on the equalized graph.

The math lives in ``quantize/``; this module, beside compiler.py, runs the plans.
"""
from __future__ import annotations

from typing import Callable, Iterable

from mobile_engine.errors import InputError
from mobile_engine.graph_to_plan import plan_from_graph
from mobile_engine.ir.graph import Graph
from mobile_engine.runtime.session import Session
from quantize import equalize as eq
from quantize.calibrate import make_table, observed_tensors, relabels
from quantize.observers import ChannelStats, TensorStats
from quantize.table import QuantTable


def collect(graph: Graph, feeds: list[dict], stats: dict, threads: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> dict:
    """Fill ``stats`` ({tensor name: TensorStats or ChannelStats}) over ``feeds``: a range pass
    (``observe_range``) then a histogram pass (``observe_hist``) over the float plan."""
    if not feeds:
        raise InputError("calibration needs at least one feed dict")
    sess = Session(plan_from_graph(graph), threads=threads)
    names = [list(s["outputs"]) for s in sess.plan.steps]
    computed = {n for ns in names for n in ns} | set(graph.inputs)
    copies = relabels(graph, computed, stats)
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
    observer : "percentile" (default, p = quantize.observers.PERCENTILE), "minmax", "mse" or
        "entropy"
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
    return make_table(graph, stats, observer, len(feeds), factors, meta)
