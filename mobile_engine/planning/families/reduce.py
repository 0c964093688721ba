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
from mobile_engine.planning import validate as v
from mobile_engine.planning.families.elementwise import noop, operands, readonly
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
    v.array("the input", x, np.float32)
    v.array("the output", out, np.float32)
    kind = v.choice(params, "kind", ("ori", "nd"))
    plan = {"kind": kind, "count": v.integer(params, "count")}
    if kind == "ori":
        outer, red, inner = (v.integer(params, key) for key in ("outer", "red", "inner"))
        plan.update(outer=outer, red=red, inner=inner)
        v.require(outer * inner == out.size, f"reduction plan [{outer}, {red}, {inner}] gives "
                                             f"{outer * inner} outputs, the output is "
                                             f"{list(out.shape)}")
        v.require(outer * red * inner == x.size, f"reduction plan [{outer}, {red}, {inner}] "
                                                 f"reads {outer * red * inner} values, the "
                                                 f"input is {list(x.shape)}")
    else:
        shape = v.integers(params, "shape", kred.MAX_RANK)
        out_strides = v.integers(params, "out_strides", kred.MAX_RANK)
        plan.update(shape=shape, out_strides=out_strides)
        v.require(v.prod(shape) == x.size, f"reduction plan {shape} does not cover the input "
                                           f"{list(x.shape)}")
        v.walk_inside(f"the output (out_strides {out_strides} over {shape})", 0, shape,
                      out_strides, out.size)
        if x.size == 0:
            # NOTE: nothing to add up (out = 0): the kernel would still walk the axes before
            # the empty one, 2^40 steps for a tampered [2^40, 0, ...]
            plan.update(shape=[1] * (kred.MAX_RANK - 1) + [0], out_strides=[0] * kred.MAX_RANK)
    return kred.reduce_call(plan, readonly(x), out, v.flag(params, "mean"))


def _np_reduce_shape(shape: tuple, axes: tuple, keepdims: bool) -> tuple:
    rank = len(shape)
    norm = sorted(a % rank for a in axes) if rank else []
    if any(not -rank <= a < rank for a in axes) or len(set(norm)) != len(norm):
        raise v.fail(f"params['axes']={list(axes)}: not distinct axes of rank {rank}")
    red = set(norm)                 # NOTE: axes are explicit here; () reduces nothing
    return tuple(1 if i in red else d for i, d in enumerate(shape) if keepdims or i not in red)


def _np_reduce(fn, x, out, axes, keepdims):
    if fn is np.mean and x.dtype.kind in "iub":
        return lambda: np.mean(x, axis=axes, keepdims=keepdims, dtype=x.dtype, out=out)
    return lambda: fn(x, axis=axes, keepdims=keepdims, out=out)


def _bind_np_reduce(fn):
    def bind(params, weights, inputs, outputs):
        (x,) = operands(weights, inputs, 1)
        out = outputs[0]
        v.array("the input", x)
        v.array("the output", out)
        axes = tuple(v.integers(params, "axes", lo=-v.MAX_INT))
        keepdims = v.flag(params, "keepdims")
        shape = _np_reduce_shape(x.shape, axes, keepdims)
        v.require(shape == out.shape, f"reducing {list(x.shape)} over axes {list(axes)} gives "
                                      f"{list(shape)}, the output is {list(out.shape)}")
        v.probe(lambda x, out: _np_reduce(fn, x, out, axes, keepdims), x, out)
        return _np_reduce(fn, x, out, axes, keepdims), ()
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
    v.array("the input", x, np.float32)
    v.array("the output", out, np.float32, size=x.size)
    plan = {key: v.integer(params, key) for key in ("outer", "length", "inner")}
    if v.prod(plan.values()) != x.size:
        raise v.fail(f"softmax plan {plan} does not fit the input {list(x.shape)}")
    if x.size == 0:
        return noop, ()
    return kred.softmax_call(plan, readonly(x), out)
