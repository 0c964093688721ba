"""Reduction binders (mean/sum over any axes, softmax along one axis).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_reduce as kred
from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.elementwise import noop, operands, readonly
from mobile_engine.runtime.binders.registry import binds


@binds(*table.ids("f32_reduce_{op}_{kind}"))
def bind_f32_reduce(params, weights, inputs, outputs, threads=None):
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
    return kred.reduce_call(plan, readonly(x), out, v.flag(params, "mean"), threads=threads)


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
    def bind(params, weights, inputs, outputs, threads=None):
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


@binds(*table.ids("f32_softmax_{kind}"))
def bind_softmax(params, weights, inputs, outputs, threads=None):
    (x,) = operands(weights, inputs, 1)
    out = outputs[0]
    v.array("the input", x, np.float32)
    v.array("the output", out, np.float32, size=x.size)
    plan = {key: v.integer(params, key) for key in ("outer", "length", "inner")}
    if v.prod(plan.values()) != x.size:
        raise v.fail(f"softmax plan {plan} does not fit the input {list(x.shape)}")
    if x.size == 0:
        return noop, ()
    return kred.softmax_call(plan, readonly(x), out, threads=threads)
