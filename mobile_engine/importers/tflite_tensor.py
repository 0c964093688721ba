"""TFLite data-movement operators and constant folding -> IR nodes (registered in
tflite_base.IMPORTERS): reshapes, concatenation, padding, slicing, splitting, gathering,
depth-to-space, and DEQUANTIZE/QUANTIZE/DENSIFY.
"""
from __future__ import annotations

import numpy as np
import tflite

from mobile_engine.importers.tflite_base import TFLContext, importer
from mobile_engine.importers.tflite_ops import emit_act
from mobile_engine.importers.tflite_sparse import densify
from mobile_engine.ir.ops import Op

_INT_MAX = 2 ** 31 - 1


# --- data movement --------------------------------------------------------------------------
@importer("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def reshape(ctx: TFLContext):
    # NOTE: the output tensor's stored shape is the resolved one (-1 and 0 already worked out)
    return ctx.reshape(ctx.input(0), ctx.out_shape(0), suffix=None)


@importer("CONCATENATION")
def concatenation(ctx: TFLContext):
    o = ctx.opts(tflite.ConcatenationOptions)
    return emit_act(ctx, Op.CONCAT, *ctx.values, code=o.FusedActivationFunction(), axis=o.Axis())


def _paddings(ctx: TFLContext) -> tuple[int, ...]:
    p = np.asarray(ctx.const(1, "paddings")).reshape(-1, 2)
    return tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1])


@importer("PAD", "PADV2")
def pad(ctx: TFLContext):
    value = ctx.const(2, "constant_values") if len(ctx.values) > 2 else None
    return ctx.emit(Op.PAD, ctx.input(0), pads=_paddings(ctx),
                    value=0.0 if value is None else float(np.asarray(value).reshape(-1)[0]))


@importer("MIRROR_PAD")
def mirror_pad(ctx: TFLContext):
    if ctx.opts(tflite.MirrorPadOptions).Mode() != tflite.MirrorPadMode.REFLECT:
        raise ctx.unsupported("mode SYMMETRIC is not supported (REFLECT is)")
    return ctx.emit(Op.PAD, ctx.input(0), pads=_paddings(ctx), mode="reflect")


@importer("DEPTH_TO_SPACE")
def depth_to_space(ctx: TFLContext):
    b = ctx.opts(tflite.DepthToSpaceOptions).BlockSize()
    x = ctx.input(0)
    n, h, w, c = ctx.shape(x)
    y = ctx.reshape(x, (n, h, w, b, b, c // (b * b)))        # channels are (by, bx, c') (DCR)
    y = ctx.emit(Op.TRANSPOSE, y, perm=(0, 1, 3, 2, 4, 5))
    return ctx.reshape(y, (n, h * b, w * b, c // (b * b)))


@importer("STRIDED_SLICE")
def strided_slice(ctx: TFLContext):
    o = ctx.opts(tflite.StridedSliceOptions)
    if o.EllipsisMask() or o.NewAxisMask():
        raise ctx.unsupported("ellipsis_mask and new_axis_mask are not supported")
    x = ctx.input(0)
    begin, end, steps = (np.asarray(ctx.const(i, w)).reshape(-1).astype(np.int64)
                         for i, w in ((1, "begin"), (2, "end"), (3, "strides")))
    starts, ends = [], []
    for axis, (b0, e0, s) in enumerate(zip(begin, end, steps)):
        bit = 1 << axis
        if o.ShrinkAxisMask() & bit:
            starts.append(int(b0))
            ends.append(int(b0) + 1 if b0 != -1 else _INT_MAX)
            continue
        e = int(b0 + e0) if o.Offset() else int(e0)
        starts.append((0 if s > 0 else _INT_MAX) if o.BeginMask() & bit else int(b0))
        ends.append((_INT_MAX if s > 0 else -_INT_MAX) if o.EndMask() & bit else e)
    steps = [1 if o.ShrinkAxisMask() & (1 << a) else int(s) for a, s in enumerate(steps)]
    y = ctx.emit(Op.SLICE, x, starts=starts, ends=ends, axes=list(range(len(starts))),
                 steps=steps)
    return ctx.reshape(y, ctx.out_shape(0), suffix="shrink") \
        if tuple(ctx.shape(y)) != ctx.out_shape(0) else y


@importer("TRANSPOSE")
def transpose(ctx: TFLContext):
    perm = [int(v) for v in np.asarray(ctx.const(1, "perm")).reshape(-1)]
    return ctx.emit(Op.TRANSPOSE, ctx.input(0), perm=perm)


@importer("SLICE")
def slice_(ctx: TFLContext):
    x = ctx.input(0)
    shape = ctx.shape(x)
    begin = [int(v) for v in np.asarray(ctx.const(1, "begin")).reshape(-1)]
    size = [int(v) for v in np.asarray(ctx.const(2, "size")).reshape(-1)]
    ends = [d if n == -1 else b + n for b, n, d in zip(begin, size, shape)]
    return ctx.emit(Op.SLICE, x, starts=begin, ends=ends, axes=list(range(len(shape))),
                    steps=[1] * len(shape))


def _split(ctx: TFLContext, x, axis: int, sizes: list[int]):
    rank = len(ctx.shape(x))
    axis %= rank
    outs, start = [], 0
    for k, n in enumerate(sizes):
        outs.append(ctx.emit(Op.SLICE, x, suffix=f"part{k}", starts=[start], ends=[start + n],
                             axes=[axis], steps=[1]))
        start += n
    return outs


@importer("SPLIT")
def split(ctx: TFLContext):
    x = ctx.input(1)
    axis = int(np.asarray(ctx.const(0, "axis")).reshape(()))
    n = ctx.opts(tflite.SplitOptions).NumSplits() or len(ctx.output_shapes)
    size = ctx.shape(x)[axis % len(ctx.shape(x))]
    if n < 1 or size % n:
        raise ctx.malformed(f"cannot split axis {axis} of size {size} into {n} equal parts")
    return _split(ctx, x, axis, [size // n] * n)


@importer("SPLIT_V")
def split_v(ctx: TFLContext):
    x = ctx.input(0)
    axis = int(np.asarray(ctx.const(2, "axis")).reshape(()))
    sizes = [int(v) for v in np.asarray(ctx.const(1, "size_splits")).reshape(-1)]
    total = ctx.shape(x)[axis % len(ctx.shape(x))]
    if sizes.count(-1) == 1:                      # one size inferred from the rest
        sizes[sizes.index(-1)] = total - (sum(sizes) + 1)
    return _split(ctx, x, axis, sizes)


@importer("GATHER")
def gather(ctx: TFLContext):
    o = ctx.opts(tflite.GatherOptions)
    if o.BatchDims():
        raise ctx.unsupported(f"batch_dims {o.BatchDims()} is not supported")
    return ctx.emit(Op.GATHER, ctx.input(0), ctx.input(1), axis=o.Axis())


@importer("PACK")
def pack(ctx: TFLContext):
    axis = ctx.opts(tflite.PackOptions).Axis()
    out = ctx.out_shape(0)
    axis %= len(out)
    parts = [ctx.reshape(v, out[:axis] + (1,) + out[axis + 1:], suffix=f"expand{k}")
             for k, v in enumerate(ctx.values)]
    return ctx.emit(Op.CONCAT, *parts, axis=axis)


# --- constants: fp16 and sparse weights -----------------------------------------------------
@importer("DEQUANTIZE", "QUANTIZE")
def dequantize(ctx: TFLContext):
    """The real values pass through: quantized inputs were dequantized already and a quantized
    output is quantized after (tflite_quant.py); fp16 constants become float32."""
    v = ctx.input(0)
    if isinstance(v, np.ndarray) and v.dtype == np.float16:
        return v.astype(np.float32)
    if ctx.dtype(v) != np.float32:
        raise ctx.unsupported(f"{ctx.op_name} of a {ctx.dtype(v)} tensor without quant params")
    return v


@importer("DENSIFY")
def densify_op(ctx: TFLContext):
    v = ctx.input(0)
    sparsity = ctx.tensors[0].Sparsity()
    if not isinstance(v, np.ndarray) or sparsity is None:
        raise ctx.unsupported("DENSIFY of a tensor without sparsity parameters")
    return densify(v, ctx.out_shape(0), sparsity)
