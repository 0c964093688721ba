"""Reduction family: REDUCE_MEAN / REDUCE_SUM over any axes, SOFTMAX over any axis.

Kernel ids:

- ``f32_reduce_{mean,sum}_ori``: one run of reduced axes, ``[outer, red, inner]``
- ``f32_reduce_{mean,sum}_nd``: any other axis set (serial general walk)
- ``f32_softmax_lastaxis`` / ``f32_softmax_strided``: the axis innermost or not
- ``np_reduce_{mean,sum}``: other dtypes, ``numpy.sum/mean(..., out=)`` into the output view

The plan (merged axes, counts) is computed at lowering and stored in the params.
"""
from __future__ import annotations

import numpy as np

from kernels import f32_reduce as kred
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.ir.shapes import normalize_axes
from mobile_engine.planning.step import Step, lowers, runtime_inputs


@lowers(Op.REDUCE_MEAN, Op.REDUCE_SUM)
def lower_reduce(node: Node, graph: Graph) -> list[Step]:
    names, consts = runtime_inputs(node, graph)
    x = graph.tensors[node.inputs[0]]
    axes = list(normalize_axes(node, node.attrs["axes"] or range(len(x.shape)), len(x.shape)))
    flops = int(np.prod(x.shape, dtype=np.int64))
    if x.dtype.np != np.float32:
        return [Step(node.name, f"np_{node.op.value}", names, list(node.outputs),
                     {"axes": axes, "keepdims": bool(node.attrs["keepdims"])}, consts, flops)]
    try:
        plan = kred.reduce_plan(x.shape, axes)
    except ValueError as exc:
        raise UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {exc}") from None
    plan["mean"] = node.op is Op.REDUCE_MEAN
    return [Step(node.name, f"f32_{node.op.value}_{plan['kind']}", names, list(node.outputs),
                 plan, consts, flops)]


@lowers(Op.SOFTMAX)
def lower_softmax(node: Node, graph: Graph) -> list[Step]:
    names, consts = runtime_inputs(node, graph)
    x = graph.tensors[node.inputs[0]]
    if x.dtype.np != np.float32:
        raise UnsupportedOperatorError(f"node {node.name!r} (SOFTMAX): input is "
                                       f"{x.dtype.value}; only float32 has a kernel")
    plan = kred.softmax_plan(x.shape, node.attrs["axis"])
    kernel = "f32_softmax_lastaxis" if plan["inner"] == 1 else "f32_softmax_strided"
    return [Step(node.name, kernel, names, list(node.outputs), plan, consts,
                 flops=4 * int(np.prod(x.shape, dtype=np.int64)))]
