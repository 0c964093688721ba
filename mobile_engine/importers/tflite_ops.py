"""TFLite compute operators -> IR nodes, one small function each (registered in
tflite_base.IMPORTERS): convolutions, fully connected, element-wise, pooling, reductions,
softmax, resize. Data movement and constants: tflite_tensor.py.

TFLite activations are NHWC like the IR's spatial ops; weights move to the IR's layouts here.
Fused activations become the producer's epilogue (``activation``/``act_params``) where the IR
op has one, else a separate node.
"""
from __future__ import annotations

import struct

import numpy as np
import tflite

from mobile_engine.importers.tflite_base import TFLContext, importer
from mobile_engine.ir.ops import ACTIVATION_PRODUCERS, Activation, Op

# tflite.ActivationFunctionType -> IR epilogue (NONE, RELU, RELU_N1_TO_1, RELU6).
# NOTE: TANH (4) and SIGN_BIT (5) are refused: TFLite's kernels clamp through
# CalculateActivationRange, which ignores them (LiteRT computes no activation), so such a file
# has no agreed meaning; converters never write them.
_ACTIVATIONS = {0: (Activation.NONE, ()), 1: (Activation.RELU, ()),
                2: (Activation.CLAMP, (-1.0, 1.0)), 3: (Activation.CLAMP, (0.0, 6.0))}


def _act(ctx: TFLContext, code: int) -> dict:
    if code not in _ACTIVATIONS:
        kind = {4: "TANH", 5: "SIGN_BIT"}.get(code, "unknown")
        raise ctx.unsupported(f"fused activation {code} ({kind}) is not supported (TFLite's "
                              f"kernels ignore it)")
    kind, params = _ACTIVATIONS[code]
    return {} if kind is Activation.NONE else {"activation": kind, "act_params": params}


def emit_act(ctx: TFLContext, op: Op, *inputs, code: int = 0, **attrs):
    """``op`` with fused activation ``code``: in its epilogue, or as a separate node."""
    act = _act(ctx, code)
    if op in ACTIVATION_PRODUCERS or not act:
        return ctx.emit(op, *inputs, **attrs, **act)
    y = ctx.emit(op, *inputs, **attrs)
    if act["activation"] is Activation.RELU:
        return ctx.emit(Op.RELU, y, suffix="act")
    lo, hi = act["act_params"]
    return ctx.emit(Op.CLIP, y, suffix="act", min=lo, max=hi)


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _window_pads(ctx: TFLContext, padding: int, hw, kernel, strides, dilations=(1, 1)):
    """IR pads (top, left, bottom, right) for TFLite padding SAME (0) or VALID (1)."""
    if padding == tflite.Padding.VALID:
        return (0, 0, 0, 0)
    if padding != tflite.Padding.SAME:
        raise ctx.unsupported(f"padding {padding} is not supported")
    (t, b), (l, r) = (_same_pads(hw[i], kernel[i], strides[i], dilations[i]) for i in (0, 1))
    return (t, l, b, r)


def _weights(ctx: TFLContext, i: int, what: str) -> np.ndarray:
    w = ctx.const(i, what)
    if w.dtype != np.float32:
        raise ctx.unsupported(f"{what} has dtype {w.dtype}; float32 (or fp16/int8 behind "
                              f"DEQUANTIZE) is supported")
    return w


# --- convolutions ---------------------------------------------------------------------------
@importer("CONV_2D")
def conv_2d(ctx: TFLContext):
    o = ctx.opts(tflite.Conv2DOptions)
    x = ctx.input(0)
    w = _weights(ctx, 1, "filter")                      # [Co, KH, KW, Ci/g]
    c = ctx.shape(x)[3]
    strides, dil = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    pads = _window_pads(ctx, o.Padding(), ctx.shape(x)[1:3], w.shape[1:3], strides, dil)
    return ctx.emit(Op.CONV2D, x, np.ascontiguousarray(w.transpose(0, 3, 1, 2)), ctx.input(2),
                    strides=strides, dilations=dil, pads=pads, group=c // w.shape[3],
                    **_act(ctx, o.FusedActivationFunction()))


@importer("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(ctx: TFLContext):
    o = ctx.opts(tflite.DepthwiseConv2DOptions)
    x = ctx.input(0)
    w = _weights(ctx, 1, "filter")                      # [1, KH, KW, C*M]
    c = ctx.shape(x)[3]
    strides, dil = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
    pads = _window_pads(ctx, o.Padding(), ctx.shape(x)[1:3], w.shape[1:3], strides, dil)
    return ctx.emit(Op.CONV2D, x, np.ascontiguousarray(w.transpose(3, 0, 1, 2)), ctx.input(2),
                    strides=strides, dilations=dil, pads=pads, group=c,
                    **_act(ctx, o.FusedActivationFunction()))


def _transpose_conv(ctx: TFLContext, x, w, bias, out_hw, padding, strides, code=0):
    """x NHWC, w [Co, KH, KW, Ci] -> CONV_TRANSPOSE2D with pads that give ``out_hw``."""
    h, wd = ctx.shape(x)[1:3]
    pads, extra = [0, 0, 0, 0], [0, 0]
    for a, (size, k, s, out) in enumerate(zip((h, wd), w.shape[1:3], strides, out_hw)):
        full = (size - 1) * s + k
        # NOTE: TFLite places output y at input*stride - pad_before + k; SAME pads like a
        # forward conv from the output's size back to the input's
        before = max(full - out, 0) // 2 if padding == tflite.Padding.SAME else 0
        after = full - out - before
        pads[a], pads[a + 2] = before, max(after, 0)
        extra[a] = max(-after, 0)
    return ctx.emit(Op.CONV_TRANSPOSE2D, x, np.ascontiguousarray(w.transpose(3, 0, 1, 2)),
                    bias, strides=strides, pads=tuple(pads), output_padding=tuple(extra),
                    **_act(ctx, code))


@importer("TRANSPOSE_CONV")
def transpose_conv(ctx: TFLContext):
    o = ctx.opts(tflite.TransposeConvOptions)
    out_shape = [int(v) for v in ctx.const(0, "output_shape")]
    w = _weights(ctx, 1, "filter")
    bias = ctx.input(3) if len(ctx.values) > 3 else None
    return _transpose_conv(ctx, ctx.input(2), w, bias, out_shape[1:3], o.Padding(),
                           (o.StrideH(), o.StrideW()), o.FusedActivationFunction())


@importer("CUSTOM:Convolution2DTransposeBias")
def convolution_2d_transpose_bias(ctx: TFLContext):
    """MediaPipe's op: its options are TfLiteTransposeConvParams (int32 padding, stride_width,
    stride_height; padding 1 = SAME, 2 = VALID)."""
    if len(ctx.custom_options) < 12:
        raise ctx.malformed(f"custom options of {len(ctx.custom_options)} bytes; expected 12")
    padding, sw, sh = struct.unpack_from("<3i", ctx.custom_options)
    if padding not in (1, 2):
        raise ctx.unsupported(f"padding {padding}")
    return _transpose_conv(ctx, ctx.input(0), _weights(ctx, 1, "filter"), ctx.input(2),
                           ctx.out_shape(0)[1:3],
                           tflite.Padding.SAME if padding == 1 else tflite.Padding.VALID, (sh, sw))


@importer("FULLY_CONNECTED")
def fully_connected(ctx: TFLContext):
    o = ctx.opts(tflite.FullyConnectedOptions)
    if o.WeightsFormat() != 0:
        raise ctx.unsupported(f"weights format {o.WeightsFormat()} (shuffled) is not supported")
    x = ctx.input(0)
    w = _weights(ctx, 1, "weights")                     # [N, K]
    k = w.shape[1]
    x2 = ctx.reshape(x, (int(np.prod(ctx.shape(x))) // k, k))
    bias = ctx.input(2) if len(ctx.values) > 2 else None
    y = ctx.emit(Op.GEMM, x2, w, bias, trans_b=True, **_act(ctx, o.FusedActivationFunction()))
    return ctx.reshape(y, ctx.out_shape(0))


# --- element-wise ---------------------------------------------------------------------------
def _binary(op: Op, options):
    def fn(ctx: TFLContext):
        code = ctx.opts(options).FusedActivationFunction()
        return emit_act(ctx, op, ctx.input(0), ctx.input(1), code=code)
    return fn


for _name, _op, _opts in (("ADD", Op.ADD, tflite.AddOptions), ("SUB", Op.SUB, tflite.SubOptions),
                          ("MUL", Op.MUL, tflite.MulOptions), ("DIV", Op.DIV, tflite.DivOptions)):
    importer(_name)(_binary(_op, _opts))


@importer("RELU")
def relu(ctx):
    return ctx.emit(Op.RELU, ctx.input(0))


@importer("RELU6")
def relu6(ctx):
    return ctx.emit(Op.CLIP, ctx.input(0), min=0.0, max=6.0)


@importer("RELU_N1_TO_1")
def relu_n1_to_1(ctx):
    return ctx.emit(Op.CLIP, ctx.input(0), min=-1.0, max=1.0)


@importer("LEAKY_RELU")
def leaky_relu(ctx):
    return ctx.emit(Op.LEAKY_RELU, ctx.input(0), alpha=ctx.opts(tflite.LeakyReluOptions).Alpha())


@importer("PRELU")
def prelu(ctx):
    return ctx.emit(Op.PRELU, ctx.input(0), ctx.input(1))


@importer("LOGISTIC")
def logistic(ctx):
    return ctx.emit(Op.SIGMOID, ctx.input(0))


@importer("TANH")
def tanh(ctx):
    return ctx.emit(Op.TANH, ctx.input(0))


@importer("HARD_SWISH")
def hard_swish(ctx):
    return ctx.emit(Op.HARD_SWISH, ctx.input(0))


# --- pooling, reductions, softmax -----------------------------------------------------------
def _pool(op: Op):
    def fn(ctx: TFLContext):
        o = ctx.opts(tflite.Pool2DOptions)
        x = ctx.input(0)
        kernel, strides = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
        pads = _window_pads(ctx, o.Padding(), ctx.shape(x)[1:3], kernel, strides)
        extra = {"count_include_pad": False} if op is Op.AVG_POOL else {}
        return emit_act(ctx, op, x, code=o.FusedActivationFunction(), kernel=kernel,
                         strides=strides, pads=pads, **extra)
    return fn


importer("MAX_POOL_2D")(_pool(Op.MAX_POOL))
importer("AVERAGE_POOL_2D")(_pool(Op.AVG_POOL))


@importer("MEAN")
def mean(ctx: TFLContext):
    x = ctx.input(0)
    rank = len(ctx.shape(x))
    axes = sorted({int(a) % rank for a in np.asarray(ctx.const(1, "axis")).reshape(-1)})
    keep = bool(ctx.opts(tflite.ReducerOptions).KeepDims())
    if rank == 4 and axes == [1, 2]:              # the common global pool of a CNN head
        y = ctx.emit(Op.GLOBAL_AVG_POOL, x)
        return y if keep else ctx.reshape(y, ctx.out_shape(0))
    return ctx.emit(Op.REDUCE_MEAN, x, axes=axes, keepdims=keep)


@importer("SOFTMAX")
def softmax(ctx: TFLContext):
    x = ctx.input(0)
    beta = ctx.opts(tflite.SoftmaxOptions).Beta()
    if beta != 1.0:
        x = ctx.emit(Op.MUL, x, np.array(beta, np.float32), suffix="beta")
    return ctx.emit(Op.SOFTMAX, x, axis=-1)


# --- resize ---------------------------------------------------------------------------------
def _resize(mode: str, options):
    def fn(ctx: TFLContext):
        o = ctx.opts(options)
        size = tuple(int(v) for v in ctx.const(1, "size"))
        if o.AlignCorners():
            coord, nearest = "align_corners", "round_prefer_ceil"     # TfLiteRound
        elif o.HalfPixelCenters():
            coord = "half_pixel" if mode == "linear" else "tf_half_pixel_for_nn"
            nearest = "floor"
        else:
            coord, nearest = "asymmetric", "floor"
        return ctx.emit(Op.RESIZE, ctx.input(0), size=size, mode=mode, coordinate_mode=coord,
                        nearest_mode=nearest)
    return fn


importer("RESIZE_BILINEAR")(_resize("linear", tflite.ResizeBilinearOptions))
importer("RESIZE_NEAREST_NEIGHBOR")(_resize("nearest", tflite.ResizeNearestNeighborOptions))


# --- more math, composed of existing IR ops ---------------------------------------------------
@importer("SUM")
def reduce_sum(ctx: TFLContext):
    x = ctx.input(0)
    rank = len(ctx.shape(x))
    axes = sorted({int(a) % rank for a in np.asarray(ctx.const(1, "axis")).reshape(-1)})
    return ctx.emit(Op.REDUCE_SUM, x, axes=axes,
                    keepdims=bool(ctx.opts(tflite.ReducerOptions).KeepDims()))


def _unary(op: Op):
    return lambda ctx: ctx.emit(op, ctx.input(0))


for _name, _op in (("EXP", Op.EXP), ("SQRT", Op.SQRT), ("NEG", Op.NEG), ("LOG", Op.LOG),
                   ("FLOOR", Op.FLOOR), ("CEIL", Op.CEIL), ("ROUND", Op.ROUND),
                   ("SIGN", Op.SIGN)):
    importer(_name)(_unary(_op))


@importer("RSQRT")
def rsqrt(ctx: TFLContext):
    return ctx.emit(Op.RECIPROCAL, ctx.emit(Op.SQRT, ctx.input(0), suffix="sqrt"))


@importer("SQUARED_DIFFERENCE")
def squared_difference(ctx: TFLContext):
    d = ctx.emit(Op.SUB, ctx.input(0), ctx.input(1), suffix="diff")
    return ctx.emit(Op.MUL, d, d)
