"""1-D and 3-D spatial ONNX ops on the IR's 2-D ones (the importers in onnx_nn.py call these).

- 1-D Conv, ConvTranspose, MaxPool, AveragePool on [N, C, L]: the 2-D importer on [N, C, 1, L]
  (``one_d``: every spatial attribute gains a leading unit axis).
- 3-D MaxPool / AveragePool: the 2-D importer over (H, W) of [N, C*D, H, W], then over (D, 1)
  of [N, C, D, H'*W'] (``pool_3d``; exact: the max of the maxes; a window is a box, so its
  count of inside or padded cells is the product of per-axis counts).
- 3-D Conv / ConvTranspose: one 2-D op per kernel depth on every depth slice, then SLICE/PAD
  along D and ADD (``conv_3d``, ``conv_transpose_3d``; exact up to float summation order).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mobile_engine.importers.onnx_base import Context
from mobile_engine.ir.ops import Op


def auto_pads(ctx: Context, sizes, kernel, strides, dilations) -> list[int] | None:
    """IR pads (top, left, bottom, right) from auto_pad, or None when auto_pad is NOTSET."""
    mode = ctx.attr("auto_pad", "NOTSET")
    if mode in ("NOTSET", ""):
        return None
    if mode == "VALID":
        return [0, 0, 0, 0]
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.bad_attr("auto_pad", mode)
    begin, end = [], []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        begin.append(small if mode == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin + end


def _first(y):
    return y[0] if isinstance(y, list) else y


def _same_kind(y, like):
    return [y] if isinstance(like, list) else y


def one_d(ctx: Context, fn, weights: tuple[int, ...] = ()):
    """The 1-D op of ``ctx`` on [N, C, L] as ``fn`` (its 2-D importer) on [N, C, 1, L]: every
    spatial attribute gains a leading unit axis (kernel, stride and dilation 1, no pads) and
    the weights at inputs ``weights`` [.., k] become [.., 1, k]."""
    a = dict(ctx.attrs)
    for name, unit in (("kernel_shape", 1), ("strides", 1), ("dilations", 1),
                       ("output_padding", 0)):
        if name in a:
            a[name] = [unit] + [int(v) for v in a[name]]
    if "pads" in a:
        p = [int(v) for v in a["pads"]]
        if len(p) != 2:
            raise ctx.malformed(f"pads {p} should have 2 values for a 1-D op")
        a["pads"] = [0, p[0], 0, p[1]]
    if "output_shape" in a:
        a["output_shape"] = [1] + [int(v) for v in a["output_shape"]][-1:]
    values = list(ctx.values)
    n, c, length = ctx.shape(values[0])
    values[0] = ctx.reshape(values[0], (n, c, 1, length), suffix="as_2d")
    for i in weights:
        if i < len(values) and values[i] is not None:
            ws = ctx.shape(values[i])
            values[i] = ctx.reshape(values[i], ws[:2] + (1,) + ws[2:], suffix="w_as_2d")
    y = fn(dataclasses.replace(ctx, attrs=a, values=values))
    s = ctx.shape(_first(y))
    return _same_kind(ctx.reshape(_first(y), (s[0], s[1], s[3]), suffix="from_2d"), y)


def pool_3d(ctx: Context, fn):
    """A 3-D pool of [N, C, D, H, W] as ``fn`` (the 2-D importer) twice: over (H, W) of
    [N, C*D, H, W], then over (D, 1) of [N, C, D, H'*W']. Exact for MaxPool (the max of the
    maxes) and AveragePool (a window is a box, so its count of inside or padded cells is the
    product of per-axis counts; ceil_mode and auto_pad act per axis)."""
    a = ctx.attrs
    k = [int(v) for v in a.get("kernel_shape", ())]
    if len(k) != 3:
        raise ctx.malformed(f"kernel_shape {k} should have 3 values for a 3-D pool")
    st = [int(v) for v in a.get("strides", (1, 1, 1))]
    dil = [int(v) for v in a.get("dilations", (1, 1, 1))]
    p = [int(v) for v in a.get("pads", (0,) * 6)]
    if len(st) != 3 or len(dil) != 3 or len(p) != 6:
        raise ctx.malformed(f"strides {st}, dilations {dil}, pads {p}: 3, 3 and 6 values for a "
                            f"3-D pool")
    x = ctx.values[0]
    n, c, d, h, w = ctx.shape(x)
    plane = dict(a, kernel_shape=k[1:], strides=st[1:], dilations=dil[1:],
                 pads=[p[1], p[2], p[4], p[5]])
    y = fn(dataclasses.replace(ctx, attrs=plane, values=[
        ctx.reshape(x, (n, c * d, h, w), suffix="as_2d")] + list(ctx.values[1:])))
    _, _, h2, w2 = ctx.shape(_first(y))
    depth = dict(a, kernel_shape=[k[0], 1], strides=[st[0], 1], dilations=[dil[0], 1],
                 pads=[p[0], 0, p[3], 0])
    z = fn(dataclasses.replace(ctx, attrs=depth, values=[
        ctx.reshape(_first(y), (n, c, d, h2 * w2), suffix="depth_as_2d")]))
    d2 = ctx.shape(_first(z))[2]
    return _same_kind(ctx.reshape(_first(z), (n, c, d2, h2, w2), suffix="from_2d"), z)


def _depth_tap(ctx: Context, w, j: int):
    """``w[:, :, j]`` of a 3-D kernel [A, B, KD, KH, KW]: a 2-D kernel (a SLICE when run-time)."""
    if isinstance(w, np.ndarray):
        return np.ascontiguousarray(w[:, :, j])
    s = ctx.shape(w)
    tap = ctx.emit(Op.SLICE, w, suffix="tap", starts=[j], ends=[j + 1], axes=[2], steps=[1])
    return ctx.reshape(tap, s[:2] + s[3:], suffix="tap_2d")


def conv_3d(ctx: Context, conv):
    """A Conv of [N, C, D, H, W] as 2-D convs, one per kernel depth kd::

        y[:, :, o] = sum_kd conv2d(xp[:, :, o * sd + kd * dd], w[:, :, kd]) + b

    (xp: x zero-padded along D). Each 2-D conv runs on every depth slice ([N * Dp, C, H, W]);
    a SLICE keeps the depths it contributes to and ADDs sum them: exact up to the float
    summation order."""
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    n, c, d, h, wd = ctx.shape(x)
    k = tuple(int(v) for v in ctx.shape(w)[2:])
    st = [int(v) for v in ctx.attr("strides", (1, 1, 1))]
    dil = [int(v) for v in ctx.attr("dilations", (1, 1, 1))]
    auto = auto_pads(ctx, (d, h, wd), k, st, dil)
    p = auto if auto is not None else [int(v) for v in ctx.attr("pads", (0,) * 6)]
    if len(st) != 3 or len(dil) != 3 or len(p) != 6:
        raise ctx.malformed(f"strides {st}, dilations {dil}, pads {p}: 3, 3 and 6 values for a "
                            f"3-D convolution")
    if p[0] or p[3]:
        x = ctx.emit(Op.PAD, x, suffix="pad_depth", pads=[0, 0, p[0], 0, 0, 0, 0, p[3], 0, 0])
    dp = d + p[0] + p[3]
    do = (dp - dil[0] * (k[0] - 1) - 1) // st[0] + 1
    if do <= 0:
        raise ctx.malformed(f"the kernel {k} does not fit the padded depth {dp}")
    slices = ctx.reshape(ctx.emit(Op.TRANSPOSE, x, suffix="depth_major", perm=(0, 2, 1, 3, 4)),
                         (n * dp, c, h, wd), suffix="slices")
    plane = {"kernel_shape": list(k[1:]), "strides": st[1:], "dilations": dil[1:],
             "pads": [p[1], p[2], p[4], p[5]], "group": ctx.attr("group", 1)}
    total = None
    for j in range(k[0]):
        y = conv(dataclasses.replace(ctx, attrs=plane, values=[slices, _depth_tap(ctx, w, j),
                                                               None]))
        _, co, ho, wo = ctx.shape(y)
        y = ctx.reshape(y, (n, dp, co, ho, wo), suffix="depths")
        start = j * dil[0]
        y = ctx.emit(Op.SLICE, y, suffix="taps", starts=[start],
                     ends=[start + (do - 1) * st[0] + 1], axes=[1], steps=[st[0]])
        total = y if total is None else ctx.emit(Op.ADD, total, y, suffix="sum")
    if b is not None:
        b = b.reshape(1, 1, -1, 1, 1) if isinstance(b, np.ndarray) else \
            ctx.reshape(b, (1, 1, ctx.shape(b)[0], 1, 1), suffix="bias")
        total = ctx.emit(Op.ADD, total, b, suffix="bias")
    return ctx.emit(Op.TRANSPOSE, total, suffix="channel_major", perm=(0, 2, 1, 3, 4))


def conv_transpose_3d(ctx: Context, conv_transpose):
    """A ConvTranspose of [N, C, D, H, W] as 2-D ones, one per kernel depth kd: input depth i
    adds ``convT2d(x[:, :, i], w[:, :, kd])`` at output depth ``i * sd + kd * dd``; the depth
    pads then crop, output_padding extends. Each 2-D ConvTranspose runs on every depth slice;
    zeros interleaved along D place its slices ``sd`` apart and a PAD shifts them by
    ``kd * dd``. Explicit pads only (auto_pad and output_shape: refused)."""
    x, w, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if ctx.attr("auto_pad", "NOTSET") not in ("NOTSET", "") or "output_shape" in ctx.attrs:
        raise ctx.unsupported("3-D ConvTranspose with auto_pad or output_shape (explicit pads "
                              "only)")
    n, c, d, h, wd = ctx.shape(x)
    k = tuple(int(v) for v in ctx.shape(w)[2:])
    st = [int(v) for v in ctx.attr("strides", (1, 1, 1))]
    dil = [int(v) for v in ctx.attr("dilations", (1, 1, 1))]
    p = [int(v) for v in ctx.attr("pads", (0,) * 6)]
    op = [int(v) for v in ctx.attr("output_padding", (0, 0, 0))]
    if len(st) != 3 or len(dil) != 3 or len(p) != 6 or len(op) != 3:
        raise ctx.malformed(f"strides {st}, dilations {dil}, pads {p}, output_padding {op}: 3, "
                            f"3, 6 and 3 values for a 3-D transposed convolution")
    full = (d - 1) * st[0] + (k[0] - 1) * dil[0] + 1 + op[0]
    slices = ctx.reshape(ctx.emit(Op.TRANSPOSE, x, suffix="depth_major", perm=(0, 2, 1, 3, 4)),
                         (n * d, c, h, wd), suffix="slices")
    plane = {"strides": st[1:], "dilations": dil[1:], "pads": [p[1], p[2], p[4], p[5]],
             "output_padding": op[1:], "group": ctx.attr("group", 1)}
    total = None
    for j in range(k[0]):
        y = conv_transpose(dataclasses.replace(ctx, attrs=plane,
                                               values=[slices, _depth_tap(ctx, w, j), None]))
        _, co, ho, wo = ctx.shape(y)
        y = ctx.reshape(y, (n, d, 1, co, ho, wo), suffix="depths")
        if st[0] > 1:                                  # zeros between the input depths
            y = ctx.emit(Op.PAD, y, suffix="stride", pads=[0, 0, 0, 0, 0, 0,
                                                           0, 0, st[0] - 1, 0, 0, 0])
        y = ctx.reshape(y, (n, d * st[0], co, ho, wo), suffix="strided")
        start = j * dil[0]
        keep = min(d * st[0], full - start)
        y = ctx.emit(Op.SLICE, y, suffix="keep", starts=[0], ends=[keep], axes=[1], steps=[1])
        y = ctx.emit(Op.PAD, y, suffix="place", pads=[0, start, 0, 0, 0,
                                                      0, full - start - keep, 0, 0, 0])
        total = y if total is None else ctx.emit(Op.ADD, total, y, suffix="sum")
    total = ctx.emit(Op.SLICE, total, suffix="crop", starts=[p[0]], ends=[full - p[3]],
                     axes=[1], steps=[1])
    if b is not None:
        b = b.reshape(1, 1, -1, 1, 1) if isinstance(b, np.ndarray) else \
            ctx.reshape(b, (1, 1, ctx.shape(b)[0], 1, 1), suffix="bias")
        total = ctx.emit(Op.ADD, total, b, suffix="bias")
    return ctx.emit(Op.TRANSPOSE, total, suffix="channel_major", perm=(0, 2, 1, 3, 4))
