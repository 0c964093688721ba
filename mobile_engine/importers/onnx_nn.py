"""ONNX importers for the spatial ops: convolutions, normalisations, pools, resize.

Layout contract: inputs and outputs are NCHW values (as in ONNX); each IR op is NHWC and is
wrapped as TRANSPOSE(0,2,3,1) -> op -> TRANSPOSE(0,3,1,2) by :meth:`Context.spatial`. Only 2-D
spatial ops exist in the IR: 1-D and 3-D convolutions and pools run on them (onnx_nd.py).
IR pads are (top, left, bottom, right), which is ONNX's (x1_begin, x2_begin, x1_end, x2_end).
"""
from __future__ import annotations

import math

import numpy as np

from mobile_engine.importers.onnx_base import Context, importer
from mobile_engine.importers.onnx_nd import auto_pads, conv_3d, conv_transpose_3d, one_d, pool_3d
from mobile_engine.ir.interpret import resize_axis_weights
from mobile_engine.ir.ops import Op


def _require_2d(ctx: Context, x, what: str) -> None:
    r = ctx.rank(x)
    if r != 4:
        raise ctx.unsupported(f"only 1-D, 2-D and 3-D {what} (3-D to 5-D NCHW input) is "
                              f"supported; the input has shape {ctx.shape(x)} ({r - 2}-D)")


def _pair(ctx: Context, name: str, default) -> tuple[int, int]:
    v = ctx.attr(name, default)
    if len(v) != 2:
        raise ctx.malformed(f"attribute {name}={list(v)} should have 2 values")
    return int(v[0]), int(v[1])


def _explicit_pads(ctx: Context) -> list[int]:
    pads = [int(p) for p in ctx.attr("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise ctx.malformed(f"pads {pads} should have 4 values for a 2-D op")
    return pads


# --- convolutions ---------------------------------------------------------------------------
@importer("Conv")
def conv(ctx: Context):
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.rank(x) == 3:
        return one_d(ctx, conv, weights=(1,))
    if ctx.rank(x) == 5:
        return conv_3d(ctx, conv)
    _require_2d(ctx, x, "convolution")
    kernel = ctx.shape(w)[2:]
    if "kernel_shape" in ctx.attrs and tuple(ctx.attr("kernel_shape")) != kernel:
        raise ctx.malformed(f"kernel_shape {ctx.attr('kernel_shape')} differs from the weight "
                            f"shape {ctx.shape(w)}")
    strides, dilations = _pair(ctx, "strides", (1, 1)), _pair(ctx, "dilations", (1, 1))
    pads = auto_pads(ctx, ctx.shape(x)[2:], kernel, strides, dilations) or _explicit_pads(ctx)
    return ctx.spatial(Op.CONV2D, x, w, b, strides=strides, dilations=dilations, pads=pads,
                       group=ctx.attr("group", 1))


@importer("LRN")
def lrn(ctx: Context):
    """Local response normalisation over channels, ``y = x / (bias + alpha/size * sum x^2)^beta``
    with the window [c - floor((size-1)/2), c + ceil((size-1)/2)], as existing ops:
    ``x * pow(conv1x1(x*x, band) + bias, -beta)``; the 1x1 conv's banded CxC weight holds
    alpha/size (C^2 multiply-adds a pixel, run by the conv kernels, layout kept NHWC)."""
    x = ctx.input(0)
    _require_2d(ctx, x, "LRN")
    size = int(ctx.attr("size"))
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    if size < 1:
        raise ctx.bad_attr("size", size)
    c = ctx.shape(x)[1]
    lo = (size - 1) // 2
    i = np.arange(c)
    band = (i[None, :] >= i[:, None] - lo) & (i[None, :] <= i[:, None] + (size - 1 - lo))
    w = (band * np.float32(alpha / size)).astype(np.float32).reshape(c, c, 1, 1)
    square = ctx.emit(Op.MUL, x, x, suffix="square")
    total = ctx.spatial(Op.CONV2D, square, w, np.full(c, bias, np.float32))
    if beta == 0.75:        # every Caffe export: s^0.75 = sqrt(s) * sqrt(sqrt(s)), vectorised
        root = ctx.emit(Op.SQRT, total, suffix="sqrt")          # (pow is a scalar libm call)
        denom = ctx.emit(Op.MUL, root, ctx.emit(Op.SQRT, root, suffix="sqrt4"), suffix="pow")
        return ctx.emit(Op.DIV, x, denom, suffix="scale")
    scale = ctx.emit(Op.POW, total, np.array(-beta, np.float32), suffix="pow")
    return ctx.emit(Op.MUL, x, scale, suffix="scale")


@importer("ConvTranspose")
def conv_transpose(ctx: Context):
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.rank(x) == 3:
        return one_d(ctx, conv_transpose, weights=(1,))
    if ctx.rank(x) == 5:
        return conv_transpose_3d(ctx, conv_transpose)
    _require_2d(ctx, x, "transposed convolution")
    sizes, kernel = ctx.shape(x)[2:], ctx.shape(w)[2:]
    strides, dilations = _pair(ctx, "strides", (1, 1)), _pair(ctx, "dilations", (1, 1))
    out_pad = list(_pair(ctx, "output_padding", (0, 0)))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ctx.bad_attr("auto_pad", auto_pad)
    out_shape = ctx.attr("output_shape")
    if out_shape is not None:
        out_shape = list(out_shape)[-2:]
    natural = [s * (n - 1) + op + (k - 1) * d + 1
               for n, k, s, d, op in zip(sizes, kernel, strides, dilations, out_pad)]
    if "pads" in ctx.attrs or (out_shape is None and auto_pad not in ("SAME_UPPER",
                                                                       "SAME_LOWER")):
        pads = _explicit_pads(ctx) if auto_pad != "VALID" else [0, 0, 0, 0]
        if out_shape is not None:                     # both given: pads fixed, size adjusted
            for i in range(2):
                diff = out_shape[i] - (natural[i] - pads[i] - pads[i + 2])
                if diff >= 0:
                    out_pad[i] += diff
                else:
                    pads[i + 2] -= diff
    else:
        if out_shape is None:
            out_shape = [n * s for n, s in zip(sizes, strides)]
        pads = [0, 0, 0, 0]
        for i in range(2):
            total = natural[i] - out_shape[i]
            if total < 0:                             # a larger output: zeros (+bias) past the end
                out_pad[i] -= total
                continue
            # NOTE: the ONNX spec (and its reference) puts the odd pixel at the end for
            # SAME_UPPER and at the start otherwise
            pads[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[i + 2] = total - pads[i]
    return ctx.spatial(Op.CONV_TRANSPOSE2D, x, w, b, strides=strides, dilations=dilations,
                       pads=pads, group=ctx.attr("group", 1), output_padding=out_pad)


# --- normalisations -------------------------------------------------------------------------
def _norm(ctx: Context, op: Op, x, params, **attrs):
    """A 4-D spatial norm; other ranks are viewed as [N, C, prod(spatial), 1] (same stats)."""
    s = ctx.shape(x)
    if len(s) < 2:
        raise ctx.malformed(f"input shape {s} has no channel axis")
    if len(s) == 4:
        return ctx.spatial(op, x, *params, **attrs)
    flat = (s[0], s[1], int(np.prod(s[2:], dtype=np.int64)), 1)
    y = ctx.spatial(op, ctx.reshape(x, flat, suffix="as_4d"), *params, **attrs)
    return ctx.reshape(y, s, suffix="from_4d")


@importer("BatchNormalization")
def batch_norm(ctx: Context):
    if ctx.attr("training_mode", 0):
        raise ctx.bad_attr("training_mode", 1)
    if ctx.opset < 9 and ctx.attr("spatial", 1) == 0:
        raise ctx.bad_attr("spatial", 0)
    x = ctx.input(0)
    params = [ctx.input(i) for i in range(1, 5)]
    c = ctx.shape(x)[1]
    for p in params:
        if ctx.shape(p) != (c,):
            raise ctx.unsupported(f"parameter shape {ctx.shape(p)} (expected ({c},))")
    return _norm(ctx, Op.BATCH_NORM, x, params, epsilon=ctx.attr("epsilon", 1e-5))


@importer("InstanceNormalization")
def instance_norm(ctx: Context):
    x = ctx.input(0)
    return _norm(ctx, Op.INSTANCE_NORM, x, [ctx.input(1), ctx.input(2)],
                 epsilon=ctx.attr("epsilon", 1e-5))


# --- pools --------------------------------------------------------------------------------------
def _pool_geometry(ctx: Context, x, dilations) -> tuple[tuple[int, int], tuple[int, int],
                                                         list[int], list[int]]:
    """kernel, strides, pads and the extra bottom/right pads that emulate ceil_mode."""
    kernel = _pair(ctx, "kernel_shape", None) if "kernel_shape" in ctx.attrs else None
    if kernel is None:
        raise ctx.malformed("kernel_shape is required")
    strides = _pair(ctx, "strides", (1, 1))
    sizes = ctx.shape(x)[2:]
    auto = auto_pads(ctx, sizes, kernel, strides, dilations)
    pads = auto if auto is not None else _explicit_pads(ctx)
    extra = [0, 0]
    if ctx.attr("ceil_mode", 0) and auto is None:
        for i in range(2):
            span = sizes[i] + pads[i] + pads[i + 2] - dilations[i] * (kernel[i] - 1) - 1
            out = -(-span // strides[i]) + 1
            if (out - 1) * strides[i] >= sizes[i] + pads[i]:
                out -= 1                              # the last window must start inside
            extra[i] = max((out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1
                           - (sizes[i] + pads[i] + pads[i + 2]), 0)
    return kernel, strides, pads, extra


@importer("MaxPool")
def max_pool(ctx: Context):
    x = ctx.input(0)
    if ctx.rank(x) in (3, 5):
        return (one_d if ctx.rank(x) == 3 else pool_3d)(ctx, max_pool)
    _require_2d(ctx, x, "pooling")
    if ctx.attr("storage_order", 0) not in (0, 1):
        raise ctx.bad_attr("storage_order", ctx.attr("storage_order"))
    # NOTE: storage_order only changes the Indices output, which is not supported (the
    # driver rejects a requested second output), so it does not matter for Y.
    dilations = _pair(ctx, "dilations", (1, 1))
    kernel, strides, pads, extra = _pool_geometry(ctx, x, dilations)
    pads = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]
    if ctx.dtype(x).kind in "iu" and any(pads):
        # MAX_POOL pads with -inf; an integer tensor is padded with its dtype's minimum instead
        x = ctx.emit(Op.PAD, x, suffix="pad", pads=[0, 0, pads[0], pads[1], 0, 0, pads[2],
                                                     pads[3]],
                     value=float(np.iinfo(ctx.dtype(x)).min))
        pads = [0, 0, 0, 0]
    dtype = ctx.dtype(x)
    if dtype.itemsize == 1 and dtype.kind in "iu":
        # the pooling kernels are fp32: 8-bit integers are exact in float32, and so is their max
        y = ctx.spatial(Op.MAX_POOL, ctx.cast(x, np.dtype(np.float32)), kernel=kernel,
                        strides=strides, pads=pads, dilations=dilations)
        return [ctx.cast(y, dtype)]
    return [ctx.spatial(Op.MAX_POOL, x, kernel=kernel, strides=strides, pads=pads,
                        dilations=dilations)]


@importer("AveragePool")
def avg_pool(ctx: Context):
    x = ctx.input(0)
    if ctx.rank(x) in (3, 5):
        return (one_d if ctx.rank(x) == 3 else pool_3d)(ctx, avg_pool)
    _require_2d(ctx, x, "pooling")
    dilations = _pair(ctx, "dilations", (1, 1))
    kernel, strides, pads, extra = _pool_geometry(ctx, x, dilations)
    if dilations != (1, 1):
        return _dilated_avg_pool(ctx, x, kernel, strides, pads, extra, dilations)
    if ctx.attr("count_include_pad", 0) and any(pads):
        # the model's pads count, the ceil_mode extra does not: pad with zeros explicitly,
        # then average over what is inside the zero-padded input
        x = ctx.emit(Op.PAD, x, suffix="pad", pads=[0, 0, pads[0], pads[1], 0, 0, pads[2],
                                                     pads[3]])
        pads = [0, 0, 0, 0]
    pads = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]
    return ctx.spatial(Op.AVG_POOL, x, kernel=kernel, strides=strides, pads=pads,
                       count_include_pad=False)


def _dilated_avg_pool(ctx: Context, x, kernel, strides, pads, extra, dilations):
    """AVG_POOL has no dilations: a depthwise CONV2D with weights 1 sums each window, then a
    MUL by 1/count, where count (a constant) is the same sum over a tensor of ones that covers
    the input (and, with count_include_pad, the model's pads but not the ceil_mode extra)."""
    n, c, h, w = ctx.shape(x)
    if ctx.dtype(x) != np.float32:
        raise ctx.unsupported(f"dilated AveragePool on {ctx.dtype(x)} (float32 only)")
    all_pads = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]
    geometry = dict(strides=strides, dilations=dilations, pads=all_pads)
    ones = np.ones((1, 1, h, w), np.float32)
    if ctx.attr("count_include_pad", 0):
        ones = np.pad(ones, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])),
                      constant_values=1.0)
        geometry["pads"] = [0, 0, extra[0], extra[1]]
    count = ctx.spatial(Op.CONV2D, ones, np.ones((1, 1) + tuple(kernel), np.float32),
                        **geometry)
    total = ctx.spatial(Op.CONV2D, x, np.ones((c, 1) + tuple(kernel), np.float32), group=c,
                        strides=strides, dilations=dilations, pads=all_pads)
    return ctx.emit(Op.MUL, total, (1.0 / count).astype(np.float32), suffix="mean")


@importer("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    if len(s) < 3:
        raise ctx.malformed(f"input shape {s} has no spatial axes")
    flat = s if len(s) == 4 else (s[0], s[1], int(np.prod(s[2:], dtype=np.int64)), 1)
    x4 = ctx.reshape(x, flat, suffix="as_4d") if len(s) != 4 else x
    if ctx.node.op_type == "GlobalAveragePool":
        y = ctx.spatial(Op.GLOBAL_AVG_POOL, x4)
    else:                                              # a max pool whose window is the image
        y = ctx.spatial(Op.MAX_POOL, x4, kernel=flat[2:])
    return y if len(s) == 4 else ctx.reshape(y, s[:2] + (1,) * (len(s) - 2), suffix="from_4d")


# --- resize ------------------------------------------------------------------------------------
_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                     "tf_half_pixel_for_nn")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _resize(ctx: Context, x, mode: str, coordinate_mode: str, nearest_mode: str,
            scales, sizes, coord_scales: tuple[float, float] = (), **extra):
    """RESIZE of NCHW ``x`` by full-rank ``scales`` (floats) or ``sizes`` (ints); the
    coordinate transform uses the given scales, else ``coord_scales``, else size ratios.
    ``extra``: cubic_coeff_a, exclude_outside, antialias, roi, extrapolation_value (the IR's
    RESIZE attributes)."""
    s = ctx.shape(x)
    if mode in ("linear", "bilinear"):
        mode = "linear"
    elif mode not in ("nearest", "cubic"):
        raise ctx.bad_attr("mode", mode)
    if coordinate_mode not in _COORDINATE_MODES + ("half_pixel_symmetric",
                                                   "tf_crop_and_resize"):
        raise ctx.bad_attr("coordinate_transformation_mode", coordinate_mode)
    if nearest_mode not in _NEAREST_MODES:
        raise ctx.bad_attr("nearest_mode", nearest_mode)
    if len(s) != 4:
        raise ctx.unsupported(f"only H and W of a 4-D NCHW tensor can be resized (input {s})")
    if sizes is not None:
        out = [int(v) for v in sizes]
    else:
        out = [int(math.floor(n * f)) for n, f in zip(s, scales)]
        coord_scales = (float(scales[2]), float(scales[3]))
    if len(out) != len(s):
        raise ctx.malformed(f"scales/sizes {out} do not match the input rank {len(s)}")
    if out[:2] != list(s[:2]) or \
            (scales is not None and (scales[0] != 1 or scales[1] != 1)):
        raise ctx.unsupported(f"only H and W of a 4-D NCHW tensor can be resized (input {s}, "
                              f"output {out})")
    if out[2:] == list(s[2:]) and (not coord_scales or coord_scales == (1.0, 1.0)) \
            and coordinate_mode != "tf_crop_and_resize":
        return x
    if coord_scales and any(o != n * f for o, n, f in zip(out[2:], s[2:], coord_scales)):
        # the scaled length n*f is fractional: ONNX's align_corners divides by n*f - 1, not by
        # out - 1, i.e. it is asymmetric with scale (n*f - 1) / (n - 1) (two taps: the
        # general K-tap rule, kernels/reference.py resize_axis_taps, takes it as it is)
        if coordinate_mode == "align_corners" and mode != "cubic" and not extra.get("antialias"):
            coordinate_mode = "asymmetric"
            coord_scales = tuple((n * f - 1) / (n - 1) if n > 1 and n * f != 1 else 1.0
                                 for n, f in zip(s[2:], coord_scales))
    elif coordinate_mode == "half_pixel_symmetric":
        coordinate_mode = "half_pixel"                # identical when n*f is whole
    if coordinate_mode == "tf_half_pixel_for_nn" and \
            (mode == "linear" or nearest_mode in ("ceil", "round_prefer_ceil")):
        # ONNX (and onnxruntime) leave an axis of scale 1 untouched, but this mapping would
        # shift it by one pixel: resize the other axis alone, by a GATHER of the sampled rows
        unit = [i for i in (2, 3) if out[i] == s[i] and
                (not coord_scales or coord_scales[i - 2] == 1.0)]
        if unit:
            if mode == "linear":
                raise ctx.unsupported("linear tf_half_pixel_for_nn with a unit-scale axis")
            (axis,) = {2, 3} - set(unit)
            scale = coord_scales[axis - 2] if coord_scales else out[axis] / s[axis]
            index = resize_axis_weights(s[axis], out[axis], scale, mode, coordinate_mode,
                                            nearest_mode)[0]
            return ctx.emit(Op.GATHER, x, index.astype(np.int64), axis=axis)
    if min(out) <= 0:
        raise ctx.malformed(f"resize of {s} gives an empty output {out}")
    return ctx.spatial(Op.RESIZE, x, size=out[2:], mode=mode, coordinate_mode=coordinate_mode,
                       nearest_mode=nearest_mode, scales=coord_scales, **extra)


def _simple_nearest(ctx: Context, scales) -> str:
    """ONNX Resize-10 / Upsample: onnxruntime rounds down when enlarging, up when shrinking."""
    hw = [float(f) for f in scales[2:]]
    if all(f >= 1 for f in hw):
        return "floor"
    if all(f <= 1 for f in hw):
        return "ceil"
    raise ctx.unsupported(f"nearest resize that enlarges one axis and shrinks the other "
                          f"(scales {hw}) at opset {ctx.opset}")


@importer("Upsample")
def upsample(ctx: Context):
    x = ctx.input(0)
    if "scales" in ctx.attrs:
        scales = [float(v) for v in ctx.attr("scales")]
    elif "height_scale" in ctx.attrs:
        scales = [1.0, 1.0, ctx.attr("height_scale"), ctx.attr("width_scale")]
    else:
        scales = [float(v) for v in ctx.const(1, "scales").reshape(-1)]
    mode = ctx.attr("mode", "nearest")
    nearest = _simple_nearest(ctx, scales) if mode == "nearest" else "floor"
    return _resize(ctx, x, mode, "asymmetric", nearest, scales, None)


@importer("Resize")
def resize(ctx: Context):
    x = ctx.input(0)
    rank = ctx.rank(x)
    mode = ctx.attr("mode", "nearest")
    if ctx.opset < 11:
        scales = [float(v) for v in ctx.const(1, "scales").reshape(-1)]
        nearest = _simple_nearest(ctx, scales) if mode == "nearest" else "floor"
        return _resize(ctx, x, mode, "asymmetric", nearest, scales, None)
    coordinate_mode = ctx.attr("coordinate_transformation_mode", "half_pixel")
    scales = ctx.const(2, "scales") if len(ctx.values) > 2 else None
    sizes = ctx.const(3, "sizes") if len(ctx.values) > 3 else None
    scales = None if scales is None or scales.size == 0 else [float(v) for v in scales]
    sizes = None if sizes is None or sizes.size == 0 else [int(v) for v in sizes]
    if (scales is None) == (sizes is None):
        raise ctx.malformed("exactly one of scales and sizes must be given")
    axes = ctx.attr("axes")
    if axes is not None:
        axes = [a % rank for a in axes]
        full = [1.0] * rank if scales is not None else list(ctx.shape(x))
        for k, a in enumerate(axes):
            full[a] = (scales or sizes)[k]
        if scales is not None:
            scales = full
        else:
            sizes = full
    else:
        axes = list(range(rank))
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        ratios = [sizes[a] / ctx.shape(x)[a] for a in axes]
        if policy == "not_larger":
            f = min(ratios)
        elif policy == "not_smaller":
            f = max(ratios)
        else:
            raise ctx.bad_attr("keep_aspect_ratio_policy", policy)
        out = [int(n * f + 0.5) if i in axes else n for i, n in enumerate(ctx.shape(x))]
        return _resize(ctx, x, mode, coordinate_mode, ctx.attr("nearest_mode",
                       "round_prefer_floor"), None, out, coord_scales=(float(f), float(f)))
    extra = {"cubic_coeff_a": float(ctx.attr("cubic_coeff_a", -0.75)),
             "exclude_outside": bool(ctx.attr("exclude_outside", 0)),
             "antialias": bool(ctx.attr("antialias", 0)) and mode != "nearest" and any(
                 v < 1 for v in (scales or [n / d for n, d in zip(sizes, ctx.shape(x))]))}
    if coordinate_mode == "tf_crop_and_resize":
        extra.update(roi=_crop_roi(ctx, rank, axes),
                     extrapolation_value=float(ctx.attr("extrapolation_value", 0.0)))
    return _resize(ctx, x, mode, coordinate_mode, ctx.attr("nearest_mode", "round_prefer_floor"),
                   scales, sizes, **extra)


def _crop_roi(ctx: Context, rank: int, axes: list[int]) -> tuple[float, ...]:
    """tf_crop_and_resize's roi (input 1, for ``axes``) as the IR's (H0, W0, H1, W1)."""
    roi = ctx.const(1, "roi")
    if roi is None or roi.size != 2 * len(axes):
        raise ctx.malformed(f"tf_crop_and_resize needs a constant roi of {2 * len(axes)} values "
                            f"(starts and ends of axes {axes})")
    roi = [float(v) for v in roi.reshape(-1)]
    full = [0.0] * rank + [1.0] * rank
    for k, a in enumerate(axes):
        full[a], full[rank + a] = roi[k], roi[len(axes) + k]
    if rank != 4 or full[:2] != [0.0, 0.0] or full[4:6] != [1.0, 1.0]:
        raise ctx.unsupported(f"tf_crop_and_resize crops H and W of a 4-D tensor only (roi "
                              f"{roi} for axes {axes})")
    return (full[2], full[3], full[6], full[7])
