"""Calibration math: which tensors are observed, and the QuantTable from their statistics.

The runs over the feeds (the float plan in a ``Session``) are the compiler's
(``mobile_engine/calibration.py``): a range pass then a histogram pass fill one
``observers.TensorStats`` per tensor of :func:`observed_tensors`; an observer turns them into the
ranges :func:`make_table` stores. Observed: the graph inputs and every float32 step output of
rank 4 (NHWC activations), i.e. everything the int8 rewrite may quantize. :func:`relabels` maps
a computed tensor to the tensors holding its values permuted, which the float plan does not run.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import Op
from quantize import equalize as eq
from quantize.observers import PERCENTILE, TensorStats, observe
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


def relabels(graph: Graph, computed: set[str], stats: dict) -> dict[str, list[str]]:
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


def make_table(graph: Graph, stats: dict, observer: str, images: int, factors: dict,
               meta: dict | None = None) -> QuantTable:
    """The QuantTable of ``graph`` (the equalized graph when ``factors``) from ``stats`` ({tensor:
    TensorStats} filled over ``images`` feeds): the ``observer``'s range of each observed tensor
    with finite statistics, and the equalization ``factors`` ({tensor: per-channel floats})."""
    producers = {o: n.name for n in graph.nodes for o in n.outputs}
    table = QuantTable(meta={"observer": observer, "images": images,
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
