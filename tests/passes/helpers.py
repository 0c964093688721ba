"""Helpers for pass tests: run one pass, verify, compare outputs with the reference interpreter."""
from __future__ import annotations

from collections import Counter

import numpy as np

from mobile_engine.ir import GraphBuilder, Op, verify
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.interpret import run_graph

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        out[name] = rng.standard_normal(t.shape).astype(t.dtype.np)
    return out


def counts(graph: Graph) -> Counter:
    return Counter(n.op for n in graph.nodes)


def apply(run, graph: Graph, atol: float = 1e-5, seed: int = 0) -> tuple[Graph, int]:
    """Run pass ``run`` on a copy of ``graph``; verify; outputs (names, shapes, values) agree.

    Returns the rewritten graph and the pass's rewrite count.
    """
    verify(graph)
    after = graph.copy()
    n = run(after)
    verify(after)
    assert after.inputs == graph.inputs and after.outputs == graph.outputs
    for name in graph.inputs + graph.outputs:
        assert after.tensors[name].shape == graph.tensors[name].shape, name
    feeds = feeds_for(graph, seed)
    want, got = run_graph(graph, feeds), run_graph(after, feeds)
    for name in graph.outputs:
        err = float(np.abs(got[name].astype(np.float64) - want[name]).max())
        assert err <= atol * max(1.0, float(np.abs(want[name]).max())), \
            f"output {name!r} differs by {err:.3g} after the pass"
    return after, n


def rand(shape, seed=1, scale=1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def nchw_wrapped(b: GraphBuilder, op: Op, x: str, *ins: str, **attrs) -> str:
    """The importer's form of an NHWC spatial op on an NCHW tensor: T -> op -> T."""
    t = b.node(Op.TRANSPOSE, x, perm=NCHW_TO_NHWC)
    y = b.node(op, t, *ins, **attrs)
    return b.node(Op.TRANSPOSE, y, perm=NHWC_TO_NCHW)


def conv_nchw(b: GraphBuilder, x: str, ci: int, co: int, k: int = 3, seed: int = 1,
              **attrs) -> str:
    """An importer-style conv (NCHW in, NCHW out) with random weights and bias."""
    w = b.const(rand((co, ci, k, k), seed, scale=1.0 / np.sqrt(ci * k * k)))
    bias = b.const(rand((co,), seed + 100, scale=0.1))
    return nchw_wrapped(b, Op.CONV2D, x, w, bias, **attrs)
