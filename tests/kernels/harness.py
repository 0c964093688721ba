"""Run IR nodes through their lowering and binder with plain arrays, as a plan would."""
from __future__ import annotations

import json

import numpy as np

from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS


def fused(graph):
    """A copy of ``graph`` with the kernel-fusion marks a compile would give it (lowering reads
    them: passes/fusions)."""
    from mobile_engine.passes.pipeline import fuse
    from mobile_engine.planning.target import TARGET
    graph = graph.copy()
    fuse(graph, TARGET)
    return graph


def lower_and_run(graph, feeds):
    """Mark the fusions, lower every node, bind each step with plain arrays (params through
    JSON), run."""
    graph = fused(graph)
    values = {**{n: t.data for n, t in graph.tensors.items() if t.is_const}, **feeds}
    for node in graph.nodes:
        for step in lower_node(node, graph):
            params = json.loads(json.dumps(step.params))
            weights = {}
            for k, w in step.weights.items():
                assert w.flags.c_contiguous, f"weight {k} of {step.kernel} is not C-contiguous"
                w = w.copy()
                w.flags.writeable = False
                weights[k] = w
            outs = [np.full(graph.tensors[o].shape, 7, graph.tensors[o].dtype.np)
                    for o in step.outputs]
            scratch = [np.full(shape, 7, dtype) for shape, dtype in step.scratch.values()]
            fn, args = BINDERS[step.kernel](params, weights, [values[i] for i in step.inputs],
                                            outs + scratch)
            fn(*args)
            fn(*args)                                  # a second run must give the same result
            values.update(zip(step.outputs, outs))
    return {o: values[o] for o in graph.outputs}
