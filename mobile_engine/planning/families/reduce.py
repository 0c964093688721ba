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
from mobile_engine.planning.families.elementwise import operands, readonly
from mobile_engine.planning.step import Step, binds, lowers, runtime_inputs


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


@binds("f32_reduce_mean_ori", "f32_reduce_sum_ori", "f32_reduce_mean_nd", "f32_reduce_sum_nd")
def bind_f32_reduce(params, weights, inputs, outputs):
    (x,) = operands(weights, inputs, 1)
    out = outputs[0]
    size = params["outer"] * params["inner"] if params["kind"] == "ori" else \
        int(np.prod([d for d, s in zip(params["shape"], params["out_strides"]) if s]))
    if size != out.size:
        raise ValueError(f"reduction plan gives {size} outputs, the output is {out.shape}")
    return kred.reduce_call(params, readonly(x), out, bool(params["mean"]))


def _bind_np_reduce(fn):
    def bind(params, weights, inputs, outputs):
        (x,) = operands(weights, inputs, 1)
        out = outputs[0]
        axes, keepdims = tuple(params["axes"]), bool(params["keepdims"])
        if fn is np.mean and x.dtype.kind in "iub":
            return (lambda: np.mean(x, axis=axes, keepdims=keepdims, dtype=x.dtype,
                                    out=out)), ()
        return (lambda: fn(x, axis=axes, keepdims=keepdims, out=out)), ()
    return bind


binds("np_reduce_mean")(_bind_np_reduce(np.mean))
binds("np_reduce_sum")(_bind_np_reduce(np.sum))


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


@binds("f32_softmax_lastaxis", "f32_softmax_strided")
def bind_softmax(params, weights, inputs, outputs):
    (x,) = operands(weights, inputs, 1)
    out = outputs[0]
    if params["outer"] * params["length"] * params["inner"] != x.size:
        raise ValueError(f"softmax plan {params} does not fit input {x.shape}")
    return kred.softmax_call(params, readonly(x), out)
