"""Plain numpy references for every IR op: the truth every Numba kernel is tested against.

Layout contract: spatial ops take and return NHWC arrays; weights are in the IR's layouts
(conv ``[Co, Ci/g, KH, KW]``, conv-transpose ``[Ci, Co/g, KH, KW]``). Written for clarity, not
speed; float32 in, float32 out, accumulating in float64 where a reduction is long.
"""
from __future__ import annotations

import numpy as np

from kernels.activation import Activation
from kernels.activation import reference as activation

F32 = np.float32

def pad_nhwc(x: np.ndarray, pads, mode: str = "constant", value: float = 0.0) -> np.ndarray:
    """Pad H and W of an NHWC array; pads = (top, left, bottom, right)."""
    t, l, b, r = pads
    width = ((0, 0), (t, b), (l, r), (0, 0))
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge"}[mode])

def conv2d(x, w, bias=None, residual=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
           group=1, pad_mode="constant", upsample=1, activation_kind=Activation.NONE, act_params=()):
    if upsample > 1:
        x = x.repeat(upsample, axis=1).repeat(upsample, axis=2)
    x = pad_nhwc(x, pads, pad_mode).astype(np.float64)
    n, h, wd, c = x.shape
    co, cig, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    cog = co // group
    out = np.zeros((n, oh, ow, co), np.float64)
    w64 = w.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for g in range(group):
                xs = patch[..., g * cig:(g + 1) * cig]
                ws = w64[g * cog:(g + 1) * cog, :, i, j]            # [cog, cig]
                out[..., g * cog:(g + 1) * cog] += xs @ ws.T
    if bias is not None:
        out += bias
    if residual is not None:
        out += residual
    return activation(out.astype(F32), activation_kind, act_params)

def conv_transpose2d(x, w, bias=None, *, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                     group=1, output_padding=(0, 0), activation_kind=Activation.NONE, act_params=()):
    n, h, wd, c = x.shape
    ci, cog, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    full_h = sh * (h - 1) + dh * (kh - 1) + 1 + output_padding[0]
    full_w = sw * (wd - 1) + dw * (kw - 1) + 1 + output_padding[1]
    co = cog * group
    cig = ci // group
    full = np.zeros((n, full_h, full_w, co), np.float64)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            for g in range(group):
                contrib = x64[..., g * cig:(g + 1) * cig] @ w64[g * cig:(g + 1) * cig, :, i, j]
                full[:, i * dh: i * dh + sh * (h - 1) + 1: sh, j * dw: j * dw + sw * (wd - 1) + 1: sw,
                     g * cog:(g + 1) * cog] += contrib
    t, l, b, r = pads
    out = full[:, t: full_h - b, l: full_w - r]
    if bias is not None:
        out = out + bias
    return activation(out.astype(F32), activation_kind, act_params)

def batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, activation_kind=Activation.NONE,
               act_params=()):
    y = (x - mean) / np.sqrt(var.astype(np.float64) + epsilon) * scale + bias
    return activation(y.astype(F32), activation_kind, act_params)

def instance_norm(x, scale, bias, *, epsilon=1e-5, activation_kind=Activation.NONE, act_params=()):
    """x NHWC; scale, bias [C] or [N, C]."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(1, 2), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    n, c = x.shape[0], x.shape[3]
    s = np.broadcast_to(scale, (n, c))[:, None, None, :]
    b = np.broadcast_to(bias, (n, c))[:, None, None, :]
    y = (x64 - mean) / np.sqrt(var + epsilon) * s + b
    return activation(y.astype(F32), activation_kind, act_params)

def binary(op: str, a, b, activation_kind=Activation.NONE, act_params=()):
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "pow": np.power}[op]
    with np.errstate(all="ignore"):
        out = fn(a, b)
    if np.issubdtype(np.asarray(a).dtype, np.integer) and op == "div":
        # integer division truncates toward zero (ONNX semantics), numpy's true divide does not
        out = np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
    out = np.asarray(out).astype(np.result_type(a, b))
    return activation(out, activation_kind, act_params) if activation_kind else out

def unary(op: str, x, **attrs):
    with np.errstate(all="ignore"):
        if op == "sqrt":
            return np.sqrt(x)
        if op == "reciprocal":
            return (F32(1) / x).astype(x.dtype)
        if op == "neg":
            return -x
        if op == "exp":
            return np.exp(x)
        if op in ("log", "floor", "ceil", "sign"):
            return getattr(np, op)(x)
        if op == "round":
            return np.rint(x)
        if op == "softplus":
            return np.logaddexp(x.dtype.type(0), x).astype(x.dtype)
        if op == "relu":
            return activation(x, Activation.RELU)
        if op == "clip":
            return np.clip(x, attrs["min"], attrs["max"]).astype(x.dtype)
        if op == "leaky_relu":
            return activation(x, Activation.LEAKY_RELU, (attrs["alpha"],))
        if op == "sigmoid":
            return activation(x, Activation.SIGMOID)
        if op == "tanh":
            return np.tanh(x)
        if op == "hard_sigmoid":
            return activation(x, Activation.HARD_SIGMOID, (attrs["alpha"], attrs["beta"]))
        if op == "hard_swish":
            return activation(x, Activation.HARD_SWISH)
        if op == "silu":
            return activation(x, Activation.SILU)
    raise ValueError(op)

def prelu(x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype)

def reduce(op: str, x, axes=(), keepdims=True):
    axes = tuple(axes) if axes else tuple(range(x.ndim))
    fn = np.mean if op == "reduce_mean" else np.sum
    acc = np.float64 if x.dtype.kind == "f" else x.dtype
    return fn(x, axis=axes, keepdims=keepdims, dtype=acc).astype(x.dtype)

def pad(x, pads, mode="constant", value=0.0):
    r = x.ndim
    width = [(pads[i], pads[i + r]) for i in range(r)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge"}[mode])

def source_coordinate(out_index, scale, in_size, out_size, coordinate_mode):
    """The input coordinate sampled by output index ``out_index`` (ONNX Resize rules)."""
    o = np.asarray(out_index, dtype=np.float64)
    if coordinate_mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if coordinate_mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(o)
    if coordinate_mode == "align_corners":
        return o * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(o)
    if coordinate_mode == "asymmetric":
        return o / scale
    if coordinate_mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise ValueError(f"coordinate mode {coordinate_mode}")

def nearest_index(coord, in_size, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        idx = np.where(coord - np.floor(coord) == 0.5, np.floor(coord), np.round(coord))
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(coord - np.floor(coord) == 0.5, np.ceil(coord), np.round(coord))
    elif nearest_mode == "floor":
        idx = np.floor(coord)
    elif nearest_mode == "ceil":
        idx = np.ceil(coord)
    else:
        raise ValueError(nearest_mode)
    return np.clip(idx, 0, in_size - 1).astype(np.int64)

def resize_axis_weights(in_size, out_size, scale, mode, coordinate_mode, nearest_mode):
    """For each output index: (index0, index1, weight of index1); nearest gives weight 0."""
    coord = source_coordinate(np.arange(out_size), scale, in_size, out_size, coordinate_mode)
    if mode == "nearest":
        i0 = nearest_index(coord, in_size, nearest_mode)
        return i0, i0, np.zeros(out_size)
    coord = np.clip(coord, 0, in_size - 1)
    i0 = np.floor(coord).astype(np.int64)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, coord - i0

def _cubic(t, a):
    """The cubic convolution kernel (Keys) with coefficient ``a``, at distances ``t``."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def resize_axis_taps(in_size, out_size, scale, mode, coordinate_mode,
                     nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75,
                     exclude_outside=False, antialias=False, roi=(0.0, 1.0)):
    """ONNX Resize along one axis, every mode: (int64[out, K] source indices, float64[out, K]
    weights, bool[out] outside) with ``out[i] = sum_k weight[i, k] * x[index[i, k]]``, or the
    extrapolation value where ``outside`` (tf_crop_and_resize sampling beyond the input).

    The rules of ONNX's reference: the source coordinate ``c`` of output ``i`` (below, with
    ``L = scale * in_size``, possibly fractional); ``ratio = c - floor(c)`` (1 when ``c`` is
    whole); K taps around ``c``, edge-clamped; weights by mode: nearest [ratio rule],
    linear [1 - ratio, ratio], cubic Keys(a) at distances ``ratio + 1, ratio, 1 - ratio,
    2 - ratio``; antialias (downsampling) widens linear/cubic by ``1 / scale`` and normalises;
    ``exclude_outside`` zeroes taps beyond the input and renormalises."""
    o = np.arange(out_size, dtype=np.float64)
    length = scale * in_size
    outside = np.zeros(out_size, bool)
    if coordinate_mode == "align_corners":
        c = np.zeros(out_size) if length == 1 else o * (in_size - 1) / (length - 1)
    elif coordinate_mode == "asymmetric":
        c = o / scale
    elif coordinate_mode == "tf_crop_and_resize":
        start, end = roi
        c = (np.full(out_size, (end - start) * (in_size - 1) / 2) if length == 1
             else o * (end - start) * (in_size - 1) / (length - 1))
        c = c + start * (in_size - 1)
        outside = (c < 0) | (c > in_size - 1)
    elif coordinate_mode == "pytorch_half_pixel":
        c = np.full(out_size, -0.5) if length == 1 else (o + 0.5) / scale - 0.5
    elif coordinate_mode == "half_pixel":
        c = (o + 0.5) / scale - 0.5
    elif coordinate_mode == "half_pixel_symmetric":
        c = in_size / 2 * (1 - out_size / length) + (o + 0.5) / scale - 0.5
    elif coordinate_mode == "tf_half_pixel_for_nn":
        c = (o + 0.5) / scale
    else:
        raise ValueError(f"coordinate mode {coordinate_mode}")
    whole = np.floor(c)
    ratio = np.where(c == whole, 1.0, c - whole)[:, None]
    s = min(scale, 1.0) if antialias else 1.0
    if mode == "nearest":
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5,
              "floor": np.zeros_like(ratio, bool), "ceil": np.ones_like(ratio, bool)}
        if nearest_mode not in up:
            raise ValueError(nearest_mode)
        hi = np.where(ratio == 1.0, True, up[nearest_mode])
        weight = np.concatenate([~hi, hi], axis=1).astype(np.float64)
    elif mode == "linear" and not antialias:
        weight = np.concatenate([1 - ratio, ratio], axis=1)
    elif mode == "cubic" and not antialias:
        weight = _cubic(np.concatenate([ratio + 1, ratio, 1 - ratio, 2 - ratio], axis=1),
                        cubic_coeff_a)
    elif mode in ("linear", "cubic"):
        reach = 1 if mode == "linear" else 2
        first = int(np.floor(-reach / s) + 1)
        taps = np.arange(first, 2 - first)
        t = s * (taps[None, :] - ratio)
        weight = np.clip(1 - np.abs(t), 0, 1) if mode == "linear" else _cubic(t, cubic_coeff_a)
        weight = weight / weight.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"mode {mode}")
    k = weight.shape[1]
    pad = int(np.ceil(k / 2))
    cp = c + pad
    p = np.floor(cp)
    frac = cp - p
    if k % 2 == 0:
        first = np.where(frac == 0, -(k // 2), -(k // 2) + 1)
    else:
        first = np.where(frac <= 0.5, -((k - 1) // 2), -((k - 1) // 2) + 1)
    index = (p.astype(np.int64) + first)[:, None] + np.arange(k)[None, :] - pad
    if exclude_outside:
        weight = np.where((index < 0) | (index >= in_size), 0.0, weight)
        total = weight.sum(axis=1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, in_size - 1), weight, outside


def resize_is_general(mode, coordinate_mode, antialias=False) -> bool:
    """Whether RESIZE needs ``resize_axis_taps`` (K taps per axis) rather than the two-tap
    nearest/linear rule of ``resize_axis_weights``."""
    return mode == "cubic" or bool(antialias) or coordinate_mode in (
        "tf_crop_and_resize", "half_pixel_symmetric")


def resize(x, size, mode="nearest", coordinate_mode="half_pixel",
           nearest_mode="round_prefer_floor", scales=(), cubic_coeff_a=-0.75,
           exclude_outside=False, antialias=False, roi=(), extrapolation_value=0.0):
    """x NHWC -> [N, size[0], size[1], C]; ``roi`` (H start, W start, H end, W end) for
    tf_crop_and_resize."""
    n, h, w, c = x.shape
    oh, ow = size
    sh, sw = scales if scales else (oh / h, ow / w)
    if resize_is_general(mode, coordinate_mode, antialias):
        roi = tuple(roi) or (0.0, 0.0, 1.0, 1.0)
        common = (mode, coordinate_mode, nearest_mode, cubic_coeff_a, exclude_outside, antialias)
        yi, yw, yo = resize_axis_taps(h, oh, sh, *common, roi=(roi[0], roi[2]))
        xi, xw, xo = resize_axis_taps(w, ow, sw, *common, roi=(roi[1], roi[3]))
        x64 = x.astype(np.float64)
        rows = np.einsum("nykwc,yk->nywc", x64[:, yi], yw)
        out = np.einsum("nyxkc,xk->nyxc", rows[:, :, xi], xw)
        out[:, yo] = extrapolation_value
        out[:, :, xo] = extrapolation_value
        return out.astype(x.dtype)
    y0, y1, fy = resize_axis_weights(h, oh, sh, mode, coordinate_mode, nearest_mode)
    x0, x1, fx = resize_axis_weights(w, ow, sw, mode, coordinate_mode, nearest_mode)
    x64 = x.astype(np.float64)
    rows = x64[:, y0] * (1 - fy)[None, :, None, None] + x64[:, y1] * fy[None, :, None, None]
    out = rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]
    return out.astype(x.dtype)

def max_pool(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)):
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = pad_nhwc(x, pads, "constant", lowest)
    return _pool_windows(xp, kernel, strides, dilations).max(axis=3).astype(x.dtype)

def avg_pool(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), count_include_pad=False):
    xp = pad_nhwc(x.astype(np.float64), pads)
    total = _pool_windows(xp, kernel, strides, (1, 1)).sum(axis=3)
    if count_include_pad:
        count = kernel[0] * kernel[1]
    else:
        ones = pad_nhwc(np.ones((1,) + x.shape[1:3] + (1,)), pads)
        count = _pool_windows(ones, kernel, strides, (1, 1)).sum(axis=3)
    return (total / count).astype(x.dtype)

def _pool_windows(xp, kernel, strides, dilations):
    """[N, OH, OW, KH*KW, C] windows of a padded NHWC array."""
    n, h, w, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (w - dw * (kw - 1) - 1) // sw + 1
    taps = [xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]
    return np.stack(taps, axis=3)

def global_avg_pool(x):
    return x.astype(np.float64).mean(axis=(1, 2), keepdims=True).astype(x.dtype)

def gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=False, trans_b=False,
         activation_kind=Activation.NONE, act_params=()):
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    y = alpha * (a.astype(np.float64) @ b.astype(np.float64))
    if c is not None:
        y = y + beta * c
    return activation(y.astype(F32), activation_kind, act_params)

def matmul(a, b, activation_kind=Activation.NONE, act_params=()):
    y = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    return activation(y, activation_kind, act_params)

def softmax(x, axis=-1):
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)

def transpose(x, perm):
    return np.ascontiguousarray(np.transpose(x, perm))

def cast(x, to: str):
    return x.astype(np.dtype(to))
