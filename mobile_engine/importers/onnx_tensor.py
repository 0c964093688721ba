"""ONNX importers for constants, shapes and data movement.

Shape, Constant, ConstantOfShape, Identity and Dropout make no IR op: they produce a constant
or pass a value through. Flatten, Squeeze and Unsqueeze become RESHAPE with a static shape.
"""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from mobile_engine.importers.onnx_base import (Context, constant_from_attribute, importer,
                                               onnx_to_numpy_dtype)
from mobile_engine.ir.dtypes import QuantParams
from mobile_engine.ir.ops import Op


def _axes(ctx: Context, axes, rank: int) -> list[int]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise ctx.malformed(f"axis {a} is out of range for rank {rank}")
        out.append(a % rank)
    return out


@importer("Constant")
def constant(ctx: Context):
    (attr,) = ctx.node.attribute
    return constant_from_attribute(ctx.name, attr)


@importer("ConstantOfShape")
def constant_of_shape(ctx: Context):
    shape = [int(d) for d in ctx.const(0, "shape").reshape(-1)]
    value = ctx.attrs.get("value")
    fill = numpy_helper.to_array(value).reshape(-1) if value is not None else \
        np.zeros(1, np.float32)
    return np.full(shape, fill[0], dtype=fill.dtype)


@importer("Shape")
def shape(ctx: Context):
    dims = ctx.shape(ctx.input(0))
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return np.array(dims[slice(start, end)], dtype=np.int64)


@importer("Size")
def size(ctx: Context):
    return np.array(int(np.prod(ctx.shape(ctx.input(0)), dtype=np.int64)), dtype=np.int64)


@importer("Identity")
def identity(ctx: Context):
    return ctx.input(0)


@importer("Dropout")
def dropout(ctx: Context):
    x = ctx.input(0)
    training = ctx.const(2, "training_mode") if len(ctx.values) > 2 else None
    ratio = ctx.const(1, "ratio") if len(ctx.values) > 1 else None
    ratio = float(ratio) if ratio is not None else float(ctx.attr("ratio", 0.5))
    if ctx.attr("is_test", 1) == 0 and ctx.opset < 7 or \
            (training is not None and bool(training) and ratio != 0.0):
        raise ctx.unsupported("training-mode Dropout is not supported (inference only)")
    return [x, np.ones(ctx.shape(x), dtype=np.bool_)]


@importer("Cast")
def cast(ctx: Context):
    to = onnx_to_numpy_dtype(ctx.attr("to"))
    x = ctx.input(0)
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "fc" and np.dtype(to).kind in "iub":
            # NOTE: float -> int casts truncate toward zero in ONNX; numpy's astype does too,
            # but it warns on NaN/inf; those are undefined in ONNX anyway.
            with np.errstate(invalid="ignore"):
                return x.astype(to)
        return x.astype(to)
    if np.dtype(to) == np.float64:
        # NOTE: the IR has no float64; a run-time value cast to float64 (to compute more
        # precisely, then cast back) is computed in float32. A float64 graph output is refused.
        to = np.float32
    return ctx.cast(x, to)


def _reshape_target(ctx: Context, in_shape, shape, allowzero: bool) -> tuple[int, ...]:
    shape = [int(d) for d in shape]
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.malformed(f"shape {shape}: 0 at axis {i} has no input dim to copy")
            out.append(in_shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise ctx.malformed(f"shape {shape} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        total = int(np.prod(in_shape, dtype=np.int64))
        if known == 0 or total % known:
            raise ctx.malformed(f"cannot reshape {tuple(in_shape)} to {shape}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(in_shape, dtype=np.int64)):
        raise ctx.malformed(f"cannot reshape {tuple(in_shape)} to {shape}")
    return tuple(out)


@importer("Reshape")
def reshape(ctx: Context):
    x = ctx.input(0)
    shape = ctx.attrs["shape"] if "shape" in ctx.attrs else ctx.const(1, "shape").reshape(-1)
    target = _reshape_target(ctx, ctx.shape(x), shape, bool(ctx.attr("allowzero", 0)))
    return ctx.reshape(x, target, suffix=None)


@importer("Flatten")
def flatten(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    axis = ctx.attr("axis", 1)
    axis = axis + len(s) if axis < 0 else axis
    if not 0 <= axis <= len(s):
        raise ctx.malformed(f"axis {ctx.attr('axis')} out of range for rank {len(s)}")
    target = (int(np.prod(s[:axis], dtype=np.int64)), int(np.prod(s[axis:], dtype=np.int64)))
    return ctx.reshape(x, target, suffix=None)


@importer("Squeeze")
def squeeze(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    axes = ctx.ints(1, "axes", attr="axes")
    if axes is None:
        axes = [i for i, d in enumerate(s) if d == 1]
    axes = _axes(ctx, axes, len(s))
    for a in axes:
        if s[a] != 1:
            raise ctx.malformed(f"cannot squeeze axis {a} of size {s[a]} (shape {s})")
    target = tuple(d for i, d in enumerate(s) if i not in axes)
    return ctx.reshape(x, target, suffix=None)


@importer("Unsqueeze")
def unsqueeze(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    axes = ctx.ints(1, "axes", attr="axes")
    if axes is None:
        raise ctx.malformed("Unsqueeze needs axes")
    rank = len(s) + len(axes)
    axes = sorted(_axes(ctx, axes, rank))
    dims = iter(s)
    target = tuple(1 if i in axes else next(dims) for i in range(rank))
    return ctx.reshape(x, target, suffix=None)


@importer("Transpose")
def transpose(ctx: Context):
    x = ctx.input(0)
    perm = ctx.attr("perm") or list(range(ctx.rank(x)))[::-1]
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    return ctx.emit(Op.TRANSPOSE, x, perm=perm)


@importer("Concat")
def concat(ctx: Context):
    xs = [v for v in ctx.values if v is not None]
    rank = ctx.rank(xs[0])
    axis = ctx.attr("axis", 1 if ctx.opset < 4 else None)
    if axis is None:
        raise ctx.malformed("Concat needs an axis")
    (axis,) = _axes(ctx, [axis], rank)
    # ONNX allows empty inputs along the axis; they add nothing
    xs = [v for v in xs if ctx.shape(v)[axis] > 0] or xs[:1]
    if len(xs) == 1:
        return xs[0]
    return ctx.emit(Op.CONCAT, *xs, axis=axis)


@importer("Slice")
def slice_(ctx: Context):
    x = ctx.input(0)
    rank = ctx.rank(x)
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes, steps = ctx.attr("axes"), None
    else:
        starts, ends = ctx.ints(1, "starts"), ctx.ints(2, "ends")
        axes, steps = ctx.ints(3, "axes"), ctx.ints(4, "steps")
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else list(steps)
    axes = _axes(ctx, axes, rank)
    return ctx.emit(Op.SLICE, x, starts=starts, ends=ends, axes=axes, steps=steps)


@importer("Gather")
def gather(ctx: Context):
    x, idx = ctx.input(0), ctx.input(1)
    (axis,) = _axes(ctx, [ctx.attr("axis", 0)], ctx.rank(x))
    if isinstance(idx, np.ndarray):
        d = ctx.shape(x)[axis]
        if np.any((idx < -d) | (idx >= d)):
            raise ctx.malformed(f"indices {idx.reshape(-1)[:8].tolist()} out of range for "
                                f"axis {axis} of size {d}")
        idx = np.where(idx < 0, idx + d, idx).astype(np.int64)
    return ctx.emit(Op.GATHER, x, idx, axis=axis)


@importer("Pad")
def pad(ctx: Context):
    x = ctx.input(0)
    rank = ctx.rank(x)
    mode = ctx.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.bad_attr("mode", mode)
    if ctx.opset < 11:
        pads = [int(p) for p in ctx.attr("pads" if ctx.opset >= 2 else "paddings")]
        value = float(ctx.attr("value", 0.0))
    else:
        pads = [int(p) for p in ctx.const(1, "pads").reshape(-1)]
        cv = ctx.const(2, "constant_value") if len(ctx.values) > 2 else None
        value = float(np.asarray(cv).reshape(-1)[0]) if cv is not None and cv.size else 0.0
        axes = ctx.const(3, "axes") if len(ctx.values) > 3 else None
        if axes is not None:
            axes = _axes(ctx, [int(a) for a in axes.reshape(-1)], rank)
            full = [0] * (2 * rank)
            for k, a in enumerate(axes):
                full[a], full[a + rank] = pads[k], pads[k + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        raise ctx.malformed(f"pads {pads} need {2 * rank} values for rank {rank}")
    if min(pads) < 0:                                  # negative pads crop: a SLICE first
        s = ctx.shape(x)
        starts = [max(-pads[i], 0) for i in range(rank)]
        ends = [s[i] - max(-pads[i + rank], 0) for i in range(rank)]
        x = ctx.emit(Op.SLICE, x, suffix="crop", starts=starts, ends=ends,
                     axes=list(range(rank)), steps=[1] * rank)
        pads = [max(p, 0) for p in pads]
    if not any(pads):
        return x
    if mode == "wrap":
        return _wrap_pad(ctx, x, pads)
    if mode == "reflect":
        s = ctx.shape(x)
        for i in range(rank):
            if max(pads[i], pads[i + rank]) >= s[i]:
                raise ctx.unsupported(f"reflect pads {pads} reach beyond the input {s}")
    if mode == "edge" and any(d == 0 for d in ctx.shape(x)):
        raise ctx.unsupported("edge padding of an empty tensor")
    return ctx.emit(Op.PAD, x, pads=pads, mode=mode, value=value)


def _wrap_pad(ctx: Context, x, pads):
    """PAD has no wrap mode: per axis, CONCAT(x[-before:], x, x[:after])."""
    rank = ctx.rank(x)
    for axis in range(rank):
        before, after = pads[axis], pads[axis + rank]
        d = ctx.shape(x)[axis]
        if not before and not after:
            continue
        if max(before, after) > d:
            raise ctx.unsupported(f"wrap pads {pads} reach beyond the input {ctx.shape(x)}")
        parts = []
        if before:
            parts.append(ctx.emit(Op.SLICE, x, suffix="wrap", starts=[d - before], ends=[d],
                                  axes=[axis], steps=[1]))
        parts.append(x)
        if after:
            parts.append(ctx.emit(Op.SLICE, x, suffix="wrap", starts=[0], ends=[after],
                                  axes=[axis], steps=[1]))
        x = ctx.emit(Op.CONCAT, *parts, suffix="wrap", axis=axis)
    return x


# --- quantization: folded on constants; QUANTIZE/DEQUANTIZE ops on run-time tensors ---------
def _qparam_broadcast(ctx: Context, p: np.ndarray, x_shape, axis: int) -> np.ndarray:
    if p.size == 1 or len(x_shape) == 0:
        return p.reshape(())
    if ctx.attr("block_size", 0):
        raise ctx.bad_attr("block_size", ctx.attr("block_size"))
    shape = [1] * len(x_shape)
    shape[axis % len(x_shape)] = p.size
    return p.reshape(shape)


def _runtime_qparams(ctx: Context, dtype: np.dtype) -> QuantParams:
    """Per-tensor (scale, zero point) of a run-time QuantizeLinear/DequantizeLinear: the IR's
    QUANTIZE/DEQUANTIZE carry them on the integer tensor (``Tensor.quant``)."""
    scale = ctx.const(1, "y_scale")
    zp = ctx.const(2, "zero_point") if ctx.input(2) is not None else None
    if scale.size != 1 or (zp is not None and zp.size != 1):
        raise ctx.unsupported("per-axis QuantizeLinear/DequantizeLinear on run-time tensors "
                              "(only per-tensor activations are supported)")
    if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ctx.unsupported(f"run-time quantization to {dtype}: only uint8/int8")
    z = 0 if zp is None else int(np.asarray(zp).reshape(()))
    s = float(np.asarray(scale).reshape(()))
    if not (np.isfinite(s) and s > 0):
        raise ctx.unsupported(f"scale {s}: must be finite and positive")
    return QuantParams((s,), (z,))


@importer("QuantizeLinear")
def quantize_linear(ctx: Context):
    x, scale = ctx.values[0], ctx.values[1]
    zp = ctx.input(2)
    axis = ctx.attr("axis", 1)
    out_dtype = ctx.dtype(zp) if zp is not None else np.dtype(np.uint8)
    if ctx.attr("output_dtype", 0):
        out_dtype = onnx_to_numpy_dtype(ctx.attr("output_dtype"))
    if out_dtype.kind not in "iu":
        raise ctx.unsupported(f"QuantizeLinear to {out_dtype} is not supported")
    if not isinstance(x, np.ndarray):
        params = _runtime_qparams(ctx, out_dtype)
        if np.dtype(out_dtype) == np.int8:
            # NOTE: int8 activations run as uint8 with the zero point moved by 128: the same
            # real values (q + 128 - (z + 128) = q - z), and the qu8 kernels take uint8
            params = _uint8_form(params)
        x = ctx.cast(x, np.dtype(np.float32))
        y = ctx.emit(Op.QUANTIZE, x, to="uint8")
        ctx.graph.tensors[y].quant = params
        return y
    if not isinstance(scale, np.ndarray) or not (zp is None or isinstance(zp, np.ndarray)):
        raise ctx.unsupported("run-time scale or zero point")
    s = _qparam_broadcast(ctx, scale, x.shape, axis).astype(np.float64)
    z = _qparam_broadcast(ctx, zp if zp is not None else np.zeros(1, out_dtype), x.shape, axis)
    q = np.rint(x.astype(np.float64) / s) + z.astype(np.float64)   # rint: round half to even
    info = np.iinfo(out_dtype)
    return np.clip(q, info.min, info.max).astype(out_dtype)


def _uint8_form(params: QuantParams) -> QuantParams:
    """The params of the uint8 form of an int8 tensor: the zero point moved by 128."""
    return QuantParams(params.scale, (params.zero_point[0] + 128,))


def _label(ctx: Context, x: str, params: QuantParams) -> None:
    """Give run-time integer tensor ``x`` its quant params (an input, or a relabel of one)."""
    t = ctx.graph.tensors[x]
    if t.quant is None:
        t.quant = params
    elif t.quant != params:
        raise ctx.unsupported(f"input {x!r} was quantized with {t.quant}, dequantized with "
                              f"{params}")


@importer("DequantizeLinear")
def dequantize_linear(ctx: Context):
    x, scale = ctx.values[0], ctx.values[1]
    zp = ctx.input(2)
    axis = ctx.attr("axis", 1)
    if not isinstance(x, np.ndarray) and (np.size(ctx.const(1, "x_scale")) != 1
                                          or ctx.attr("block_size", 0)):
        return _dequantize_per_axis(ctx, x, axis)
    if not isinstance(x, np.ndarray):
        declared = ctx.dtype(zp) if zp is not None else ctx.dtype(x)
        params = _runtime_qparams(ctx, declared)
        if np.dtype(declared) == np.int8 and ctx.dtype(x) == np.uint8:   # see quantize_linear
            params = _uint8_form(params)
        _label(ctx, x, params)
        if ctx.dtype(x) == np.int8:            # an int8 graph input: recoded as uint8 here
            x = ctx.emit(Op.INT8_RECODE, x, suffix="to_uint8")
            _label(ctx, x, _uint8_form(params))
        return ctx.emit(Op.DEQUANTIZE, x)
    if not isinstance(scale, np.ndarray) or not (zp is None or isinstance(zp, np.ndarray)):
        raise ctx.unsupported("run-time scale or zero point")
    s = _qparam_broadcast(ctx, scale, x.shape, axis)
    z = _qparam_broadcast(ctx, zp, x.shape, axis).astype(np.float64) if zp is not None else 0.0
    return ((x.astype(np.float64) - z) * s.astype(np.float64)).astype(scale.dtype)


def _dequantize_per_axis(ctx: Context, x, axis: int):
    """A per-axis (or blocked) DequantizeLinear of a run-time tensor, in float: (CAST(x) - zp)
    * scale with the constants broadcast along ``axis`` (blocks repeated ``block_size`` times);
    exact, as ONNX computes it in float32. (Per-tensor ones become DEQUANTIZE: int8 kernels.)"""
    shape = ctx.shape(x)
    axis %= len(shape)
    block = int(ctx.attr("block_size", 0))

    def full(p):
        p = np.asarray(p)
        if block:
            if p.ndim != len(shape):
                raise ctx.malformed(f"blocked scale/zero point of shape {p.shape} for input "
                                    f"{shape}")
            p = np.repeat(p, block, axis=axis).take(np.arange(shape[axis]), axis=axis)
            return p.astype(np.float32)
        return _qparam_broadcast(ctx, p, shape, axis).astype(np.float32)
    scale = ctx.const(1, "x_scale")
    y = ctx.cast(x, np.dtype(np.float32))
    if ctx.input(2) is not None:
        y = ctx.emit(Op.SUB, y, full(ctx.const(2, "x_zero_point")), suffix="zero_point")
    return ctx.emit(Op.MUL, y, full(scale), suffix="scale")


# --- more data movement, decomposed into the ops above ----------------------------------------
@importer("CastLike")
def cast_like(ctx: Context):
    x, like = ctx.input(0), ctx.input(1)
    to = ctx.dtype(like)
    if isinstance(x, np.ndarray):
        return x.astype(to)
    return ctx.cast(x, np.float32 if to == np.float64 else to)     # no float64: see Cast


@importer("Split")
def split(ctx: Context):
    x = ctx.input(0)
    s = ctx.shape(x)
    (axis,) = _axes(ctx, [ctx.attr("axis", 0)], len(s))
    n_out = len(ctx.node.output)
    sizes = ctx.ints(1, "split", attr="split")
    if not sizes:
        n = ctx.attr("num_outputs", n_out)
        chunk = -(-s[axis] // n)                       # the last part may be smaller
        sizes = [min(chunk, s[axis] - k * chunk) for k in range(n)]
    if sum(sizes) != s[axis] or len(sizes) != n_out or min(sizes) < 0:
        raise ctx.malformed(f"split sizes {sizes} do not cut axis {axis} of {s} into "
                            f"{n_out} parts")
    outs, start = [], 0
    for k, size in enumerate(sizes):
        outs.append(ctx.emit(Op.SLICE, x, suffix=f"part{k}", starts=[start],
                             ends=[start + size], axes=[axis], steps=[1]))
        start += size
    return outs


@importer("Expand")
def expand(ctx: Context):
    x = ctx.input(0)
    target = [int(d) for d in ctx.const(1, "shape").reshape(-1)]
    s = ctx.shape(x)
    try:
        out = np.broadcast_shapes(s, tuple(target))
    except ValueError:
        raise ctx.malformed(f"cannot expand {s} to {target}") from None
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(np.broadcast_to(x, out))
    if tuple(out) == s:
        return x
    # x * 1 broadcast to the target: ones only along the axes that grow
    aligned = (1,) * (len(out) - len(s)) + s
    ones = np.ones([o if a == 1 else 1 for o, a in zip(out, aligned)], ctx.dtype(x))
    return ctx.emit(Op.MUL, x, ones, suffix="expand")


@importer("Range", fold_only=True)
def range_(ctx: Context):
    """Range on compile-time values (shape arithmetic such as YOLOv8's anchor grid)."""
    start, limit, delta = (ctx.const(i, what) for i, what in
                           enumerate(("start", "limit", "delta")))
    if float(delta) == 0:
        raise ctx.malformed("delta is 0")
    return np.arange(start.reshape(()), limit.reshape(()), delta.reshape(()),
                     dtype=np.result_type(start, limit, delta))


@importer("Where", fold_only=True)
def where(ctx: Context):
    """Where folds when every input is known; with a known condition it is ``a * c + b * (1 - c)``
    (a mask that broadcasts like the condition; exact unless the unselected value is inf/NaN)."""
    cond, a, b = ctx.input(0), ctx.input(1), ctx.input(2)
    if all(isinstance(v, np.ndarray) for v in (cond, a, b)):
        return np.where(cond, a, b)
    if not isinstance(cond, np.ndarray):
        raise ctx.unsupported("a condition computed at run time is not supported")
    if ctx.dtype(a) != ctx.dtype(b) or ctx.dtype(a).kind != "f":
        raise ctx.unsupported(f"values of types {ctx.dtype(a)}, {ctx.dtype(b)}: only float "
                              f"values are supported when one is computed at run time")
    mask = cond.astype(ctx.dtype(a))
    if cond.all() or not cond.any():
        out = np.broadcast_shapes(cond.shape, ctx.shape(a), ctx.shape(b))
        kept = a if cond.all() else b
        return kept if ctx.shape(kept) == out else \
            ctx.emit(Op.MUL, kept, np.ones(out, mask.dtype), suffix="expand")
    y = ctx.emit(Op.MUL, a, mask, suffix="take_a")
    return ctx.emit(Op.ADD, y, ctx.emit(Op.MUL, b, 1 - mask, suffix="take_b"))


@importer("Tile")
def tile(ctx: Context):
    x = ctx.input(0)
    repeats = [int(r) for r in ctx.const(1, "repeats").reshape(-1)]
    if len(repeats) != ctx.rank(x) or min(repeats, default=1) < 0:
        raise ctx.malformed(f"repeats {repeats} do not fit rank {ctx.rank(x)}")
    for axis, r in enumerate(repeats):
        if r != 1:
            x = ctx.emit(Op.CONCAT, *([x] * r), suffix="tile", axis=axis) if r else \
                ctx.emit(Op.SLICE, x, suffix="tile", starts=[0], ends=[0], axes=[axis],
                         steps=[1])
    return x


@importer("DepthToSpace")
def depth_to_space(ctx: Context):
    x = ctx.input(0)
    n, c, h, w = ctx.shape(x)
    b = ctx.attr("blocksize")
    if ctx.attr("mode", "DCR") == "DCR":
        y = ctx.reshape(x, (n, b, b, c // (b * b), h, w), suffix="split")
        y = ctx.emit(Op.TRANSPOSE, y, suffix="shuffle", perm=(0, 3, 4, 1, 5, 2))
    elif ctx.attr("mode") == "CRD":
        y = ctx.reshape(x, (n, c // (b * b), b, b, h, w), suffix="split")
        y = ctx.emit(Op.TRANSPOSE, y, suffix="shuffle", perm=(0, 1, 4, 2, 5, 3))
    else:
        raise ctx.bad_attr("mode", ctx.attr("mode"))
    return ctx.reshape(y, (n, c // (b * b), h * b, w * b), suffix=None)


@importer("SpaceToDepth")
def space_to_depth(ctx: Context):
    x = ctx.input(0)
    n, c, h, w = ctx.shape(x)
    b = ctx.attr("blocksize")
    y = ctx.reshape(x, (n, c, h // b, b, w // b, b), suffix="split")
    y = ctx.emit(Op.TRANSPOSE, y, suffix="shuffle", perm=(0, 3, 5, 1, 2, 4))
    return ctx.reshape(y, (n, c * b * b, h // b, w // b), suffix=None)
