"""ONNX importers for element-wise math, activations, reductions, matrix products and softmax.

All of them keep ONNX's layout (no transposes): element-wise ops broadcast like numpy.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.importers.onnx_base import Context, importer
from mobile_engine.ir.ops import Op

_UNARY = {"Relu": Op.RELU, "Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "HardSwish": Op.HARD_SWISH,
          "Sqrt": Op.SQRT, "Reciprocal": Op.RECIPROCAL, "Neg": Op.NEG, "Exp": Op.EXP}
_BINARY = {"Add": Op.ADD, "Sub": Op.SUB, "Mul": Op.MUL, "Div": Op.DIV, "Pow": Op.POW}


@importer(*_UNARY)
def unary(ctx: Context):
    return ctx.emit(_UNARY[ctx.node.op_type], ctx.input(0))


@importer(*_BINARY)
def binary(ctx: Context):
    a, b = ctx.input(0), ctx.input(1)
    if ctx.opset < 7 and ctx.attr("broadcast", 0):
        # legacy broadcasting: b's dims line up with a's from ``axis`` on
        ra, rb = ctx.rank(a), ctx.rank(b)
        axis = ctx.attr("axis", ra - rb)
        axis = axis + ra if axis < 0 else axis
        b = ctx.reshape(b, ctx.shape(b) + (1,) * (ra - axis - rb), suffix="align")
    if ctx.node.op_type == "Pow":
        b = ctx.cast(b, ctx.dtype(a))               # ONNX lets the exponent's type differ
    elif ctx.dtype(a) != ctx.dtype(b):
        raise ctx.malformed(f"operand types differ: {ctx.dtype(a)} and {ctx.dtype(b)}")
    return ctx.emit(_BINARY[ctx.node.op_type], a, b)


@importer("LeakyRelu")
def leaky_relu(ctx: Context):
    return ctx.emit(Op.LEAKY_RELU, ctx.input(0), alpha=ctx.attr("alpha", 0.01))


@importer("HardSigmoid")
def hard_sigmoid(ctx: Context):
    return ctx.emit(Op.HARD_SIGMOID, ctx.input(0), alpha=ctx.attr("alpha", 0.2),
                    beta=ctx.attr("beta", 0.5))


@importer("PRelu")
def prelu(ctx: Context):
    x, slope = ctx.input(0), ctx.input(1)
    xs, ss = ctx.shape(x), ctx.shape(slope)
    if len(ss) == 1 and len(xs) >= 2 and ss[0] == xs[1] and ss[0] != xs[-1]:
        # NOTE: a per-channel slope [C] written for NCHW (opset < 7 semantics, still emitted
        # by some exporters) means [C, 1, ..., 1]
        slope = ctx.reshape(slope, (ss[0],) + (1,) * (len(xs) - 2))
    return ctx.emit(Op.PRELU, x, slope)


@importer("Clip")
def clip(ctx: Context):
    x = ctx.input(0)
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -np.inf), ctx.attr("max", np.inf)
    else:
        lo_v = ctx.const(1, "min") if len(ctx.values) > 1 else None
        hi_v = ctx.const(2, "max") if len(ctx.values) > 2 else None
        lo = float(np.asarray(lo_v).reshape(())) if lo_v is not None else -np.inf
        hi = float(np.asarray(hi_v).reshape(())) if hi_v is not None else np.inf
    if lo > hi:
        # NOTE: ONNX (numpy.clip) gives max wherever min > max
        lo = hi
    return ctx.emit(Op.CLIP, x, min=float(lo), max=float(hi))


@importer("Abs")
def abs_(ctx: Context):
    x = ctx.input(0)
    if isinstance(x, np.ndarray):
        return np.abs(x)
    return ctx.emit(Op.ADD, ctx.emit(Op.RELU, x, suffix="pos"),       # |x| = relu(x) + relu(-x)
                    ctx.emit(Op.RELU, ctx.emit(Op.NEG, x, suffix="neg"), suffix="pos_neg"))


@importer("Sum", "Mean")
def sum_mean(ctx: Context):
    xs = [v for v in ctx.values if v is not None]
    y = xs[0]
    for k, v in enumerate(xs[1:]):
        y = ctx.emit(Op.ADD, y, v, suffix=f"add{k}" if k < len(xs) - 2 or
                     ctx.node.op_type == "Mean" else None)
    if ctx.node.op_type == "Mean" and len(xs) > 1:
        y = ctx.emit(Op.DIV, y, np.array(len(xs), ctx.dtype(y)))
    return y


# --- reductions -------------------------------------------------------------------------------
_REDUCE = {"ReduceMean": Op.REDUCE_MEAN, "ReduceSum": Op.REDUCE_SUM,
           "ReduceSumSquare": Op.REDUCE_SUM, "ReduceL2": Op.REDUCE_SUM, "ReduceL1": Op.REDUCE_SUM}


@importer(*_REDUCE)
def reduce(ctx: Context):
    op = _REDUCE[ctx.node.op_type]
    x = ctx.input(0)
    kind = ctx.node.op_type
    if kind in ("ReduceSumSquare", "ReduceL2"):
        x = ctx.emit(Op.MUL, x, x, suffix="square")
    elif kind == "ReduceL1":
        x = abs_(ctx)
    rank = ctx.rank(x)
    keepdims = bool(ctx.attr("keepdims", 1))
    axes = ctx.ints(1, "axes", attr="axes")          # an attribute before opset 13/18
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return x
        axes = list(range(rank))
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.malformed(f"axis {a} out of range for rank {rank}")
    axes = sorted({a % rank for a in axes})
    if rank == 0:
        return x
    y = ctx.emit(op, x, axes=axes, keepdims=keepdims, suffix="sum" if kind == "ReduceL2" else None)
    return ctx.emit(Op.SQRT, y) if kind == "ReduceL2" else y


# --- matrix products ----------------------------------------------------------------------------
@importer("Gemm")
def gemm(ctx: Context):
    a, b, c = ctx.input(0), ctx.input(1), ctx.input(2)
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    if c is not None and beta == 0.0:
        c = None
    return ctx.emit(Op.GEMM, a, b, c, alpha=alpha, beta=beta,
                    trans_a=bool(ctx.attr("transA", 0)), trans_b=bool(ctx.attr("transB", 0)))


@importer("MatMul")
def matmul(ctx: Context):
    return ctx.emit(Op.MATMUL, ctx.input(0), ctx.input(1))


@importer("Softmax")
def softmax(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    rank = len(s)
    if ctx.opset >= 13:
        axis = ctx.attr("axis", -1)
        if not -rank <= axis < rank:
            raise ctx.malformed(f"axis {axis} out of range for rank {rank}")
        return ctx.emit(Op.SOFTMAX, x, axis=axis % rank)
    # opset < 13: softmax over the flattened trailing dims [axis:]
    axis = ctx.attr("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < max(rank, 1):
        raise ctx.malformed(f"axis {ctx.attr('axis')} out of range for rank {rank}")
    if axis == rank - 1:
        return ctx.emit(Op.SOFTMAX, x, axis=axis)
    flat = (int(np.prod(s[:axis], dtype=np.int64)), int(np.prod(s[axis:], dtype=np.int64)))
    y = ctx.emit(Op.SOFTMAX, ctx.reshape(x, flat, suffix="flatten"), axis=1)
    return ctx.reshape(y, s, suffix="unflatten")
