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


# --- ops real exports contain, as existing IR ops ---------------------------------------------
def _all_const(ctx: Context) -> bool:
    return all(v is None or isinstance(v, np.ndarray) for v in ctx.values)


# ONNX op -> numpy, for ops that only fold: shape arithmetic of dynamic exports (YOLO anchors,
# padding sizes), whose values are known once the input shapes are fixed
_FOLD_ONLY = {"Floor": np.floor, "Ceil": np.ceil, "Round": np.round,   # round: half to even
              "Sign": np.sign, "Equal": np.equal, "Less": np.less, "Greater": np.greater,
              "Not": np.logical_not, "And": np.logical_and, "Or": np.logical_or,
              "Softplus": lambda x: np.logaddexp(0, x).astype(x.dtype),
              "Log": np.log}


# ... of which these also run on float tensors computed at run time
_RUN_TIME = {"Floor": Op.FLOOR, "Ceil": Op.CEIL, "Round": Op.ROUND, "Sign": Op.SIGN,
             "Softplus": Op.SOFTPLUS, "Log": Op.LOG}


@importer(*(set(_FOLD_ONLY) - set(_RUN_TIME)), fold_only=True)
def fold_only(ctx: Context):
    if not _all_const(ctx):
        raise ctx.unsupported("only on values known when compiling (shape arithmetic); this "
                              "one is computed at run time, and the engine has no kernel for it")
    return np.asarray(_FOLD_ONLY[ctx.node.op_type](*ctx.values))


@importer(*_RUN_TIME)
def math_unary(ctx: Context):
    """Folded on constants (any dtype, as numpy); on run-time values float32 only."""
    if _all_const(ctx):
        return np.asarray(_FOLD_ONLY[ctx.node.op_type](*ctx.values))
    x = ctx.input(0)
    if ctx.dtype(x) != np.float32:
        raise ctx.unsupported(f"on {ctx.dtype(x)} values computed at run time: only float32")
    return ctx.emit(_RUN_TIME[ctx.node.op_type], x)


@importer("Max", "Min")
def max_min(ctx: Context):
    """Element-wise max/min of any number of inputs: a single constant value against a tensor is a
    CLIP; two tensors ``max(a, b) = a + relu(b - a)``, ``min(a, b) = a - relu(a - b)``."""
    is_max = ctx.node.op_type == "Max"
    xs = [v for v in ctx.values if v is not None]
    if _all_const(ctx):
        return np.asarray((np.maximum if is_max else np.minimum).reduce(np.broadcast_arrays(*xs)))
    if ctx.dtype(xs[0]).kind == "u":           # b - a would wrap around
        raise ctx.unsupported(f"{ctx.dtype(xs[0])} values computed at run time: only float "
                              f"or signed ones are supported")
    y = xs[0]
    for k, v in enumerate(xs[1:]):
        a, b = (y, v) if isinstance(v, np.ndarray) or not isinstance(y, np.ndarray) else (v, y)
        if isinstance(b, np.ndarray) and b.size == 1 and \
                np.broadcast_shapes(ctx.shape(a), b.shape) == ctx.shape(a):
            bound = float(b.reshape(()))
            y = ctx.emit(Op.CLIP, a, suffix=f"clip{k}",
                         **({"min": bound} if is_max else {"max": bound}))
            continue
        if is_max:      # a + relu(b - a)
            d = ctx.emit(Op.RELU, ctx.emit(Op.SUB, b, a, suffix=f"d{k}"), suffix=f"r{k}")
            y = ctx.emit(Op.ADD, a, d, suffix=f"max{k}")
        else:           # a - relu(a - b)
            d = ctx.emit(Op.RELU, ctx.emit(Op.SUB, a, b, suffix=f"d{k}"), suffix=f"r{k}")
            y = ctx.emit(Op.SUB, a, d, suffix=f"min{k}")
    return y


def _elu(ctx: Context, x, alpha: float, gamma: float = 1.0):
    """gamma * (relu(x) + alpha * (exp(min(x, 0)) - 1))"""
    dt = ctx.dtype(x)
    neg = ctx.emit(Op.EXP, ctx.emit(Op.CLIP, x, suffix="neg", max=0.0), suffix="exp")
    neg = ctx.emit(Op.MUL, ctx.emit(Op.SUB, neg, np.array(1, dt), suffix="expm1"),
                   np.array(alpha * gamma, dt), suffix="alpha")
    pos = ctx.emit(Op.RELU, x, suffix="pos")
    if gamma != 1.0:
        pos = ctx.emit(Op.MUL, pos, np.array(gamma, dt), suffix="gamma")
    return ctx.emit(Op.ADD, pos, neg)


@importer("Elu")
def elu(ctx: Context):
    return _elu(ctx, ctx.input(0), ctx.attr("alpha", 1.0))


@importer("Selu")
def selu(ctx: Context):
    return _elu(ctx, ctx.input(0), ctx.attr("alpha", 1.67326319217681884765625),
                ctx.attr("gamma", 1.05070102214813232421875))


@importer("LogSoftmax", fold_only=True)
def log_softmax(ctx: Context):
    if _all_const(ctx):
        x = ctx.values[0]
        axis = ctx.attr("axis", -1 if ctx.opset >= 13 else 1)
        m = x.max(axis=axis, keepdims=True)
        return (x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).astype(x.dtype)
    raise ctx.unsupported("on run-time values: the engine has no log kernel (use Softmax, or "
                          "take the log after the engine's output)")


@importer("Einsum")
def einsum(ctx: Context):
    """A two-operand Einsum that is a (batched) matrix product, as TRANSPOSE/RESHAPE -> MATMUL ->
    RESHAPE/TRANSPOSE: indices in both operands and the output are the batch, in both but not
    the output are summed, in one operand and the output are its free dims."""
    eq = ctx.attr("equation").replace(" ", "")
    xs = [v for v in ctx.values if v is not None]
    if _all_const(ctx):
        return np.asarray(np.einsum(eq, *xs))
    if "->" not in eq or "." in eq or len(xs) != 2:
        raise ctx.bad_attr("equation", eq)
    lhs, out = eq.split("->")
    ta, tb = lhs.split(",")
    sa, sb = ctx.shape(xs[0]), ctx.shape(xs[1])
    if len(set(ta)) != len(ta) or len(set(tb)) != len(tb) or len(ta) != len(sa) or \
            len(tb) != len(sb):
        raise ctx.bad_attr("equation", eq)
    batch = [c for c in out if c in ta and c in tb]
    summed = [c for c in ta if c in tb and c not in out]
    free_a = [c for c in ta if c not in tb]
    free_b = [c for c in tb if c not in ta]
    if sorted(out) != sorted(batch + free_a + free_b) or any(c not in out for c in free_a +
                                                             free_b):
        raise ctx.unsupported(f"equation {eq!r} is not a matrix product")
    size = {**dict(zip(ta, sa)), **dict(zip(tb, sb))}
    if any(dict(zip(ta, sa))[c] != dict(zip(tb, sb))[c] for c in batch + summed):
        raise ctx.malformed(f"equation {eq!r}: shared dims differ in size ({sa} and {sb})")
    n = lambda cs: int(np.prod([size[c] for c in cs], dtype=np.int64))     # noqa: E731

    def arrange(x, term, order, shape, tag):
        perm = tuple(term.index(c) for c in order)
        if perm != tuple(range(len(perm))):
            x = ctx.emit(Op.TRANSPOSE, x, suffix=f"{tag}_perm", perm=perm)
        return ctx.reshape(x, shape, suffix=f"{tag}_flat")
    a = arrange(xs[0], ta, batch + free_a + summed, (n(batch), n(free_a), n(summed)), "a")
    b = arrange(xs[1], tb, batch + summed + free_b, (n(batch), n(summed), n(free_b)), "b")
    y = ctx.emit(Op.MATMUL, a, b, suffix="matmul")
    order = batch + free_a + free_b
    y = ctx.reshape(y, tuple(size[c] for c in order), suffix="unflat")
    perm = tuple(order.index(c) for c in out)
    return y if perm == tuple(range(len(perm))) else ctx.emit(Op.TRANSPOSE, y, perm=perm)
