"""Static shape and dtype inference, one small function per op.

Every function takes the node and the input tensors and returns ``[(shape, dtype), ...]`` for
the node's outputs, raising ``ShapeError`` naming the node when the inputs do not fit.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mobile_engine.errors import ShapeError, UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node, Tensor
from mobile_engine.ir.ops import BINARY, LAYOUTS, QUANTIZABLE, UNARY, Op

Shape = tuple[int, ...]
_RULES: dict[Op, Callable[[Node, list[Tensor]], list[tuple[Shape, DType]]]] = {}


def _rule(*ops: Op):
    def register(fn):
        for op in ops:
            _RULES[op] = fn
        return fn
    return register


def _fail(node: Node, why: str) -> ShapeError:
    return ShapeError(f"node {node.name!r} ({node.op.name}): {why}")


def broadcast(node: Node, *shapes: Shape) -> Shape:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise _fail(node, f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def conv_output_size(size: int, k: int, stride: int, dilation: int, pad0: int, pad1: int) -> int:
    return (size + pad0 + pad1 - dilation * (k - 1) - 1) // stride + 1


def _window_attrs(node: Node, kernel) -> None:
    """Strides, dilations and kernel sizes >= 1, pads >= 0, group >= 1: else a ShapeError."""
    a = node.attrs
    for name in ("strides", "dilations"):
        if min(a.get(name, (1,)), default=1) < 1:
            raise _fail(node, f"{name} {a[name]} must be >= 1")
    if min(kernel, default=1) < 1:
        raise _fail(node, f"kernel {tuple(kernel)} must be >= 1")
    if min(a.get("pads", (0,)), default=0) < 0:
        raise _fail(node, f"pads {a['pads']} must be >= 0")
    if a.get("group", 1) < 1 or a.get("upsample", 1) < 1:
        raise _fail(node, f"group {a.get('group')} / upsample {a.get('upsample')} must be >= 1")


def _layouts(node: Node, *names: str) -> None:
    for name in names:
        if node.attrs.get(name, "nhwc") not in LAYOUTS:
            raise _fail(node, f"{name} {node.attrs[name]!r}; expected one of {LAYOUTS}")


def _rank(node: Node, t: Tensor, rank: int) -> None:
    if len(t.shape) != rank:
        raise _fail(node, f"input {t.name!r} has shape {t.shape}, expected rank {rank}")


@_rule(*UNARY)
def _unary(node, ins):
    return [(ins[0].shape, ins[0].dtype)]


@_rule(*BINARY, Op.PRELU)
def _binary(node, ins):
    return [(broadcast(node, ins[0].shape, ins[1].shape), ins[0].dtype)]


@_rule(Op.CONV2D)
def _conv(node, ins):
    x, w = ins[0], ins[1]
    _rank(node, x, 4)
    _rank(node, w, 4)
    a = node.attrs
    _layouts(node, "in_layout", "out_layout")
    if a.get("in_layout", "nhwc") == "nchw":
        n, c, h, wd = x.shape
    else:
        n, h, wd, c = x.shape
    co, cig, kh, kw = w.shape
    _window_attrs(node, (kh, kw))
    h, wd = h * a["upsample"], wd * a["upsample"]
    if cig * a["group"] != c or co % a["group"]:
        raise _fail(node, f"weight {w.shape} with group {a['group']} does not fit input "
                          f"channels {c} (input {x.shape}, NHWC)")
    t, l, b, r = a["pads"]
    oh = conv_output_size(h, kh, a["strides"][0], a["dilations"][0], t, b)
    ow = conv_output_size(wd, kw, a["strides"][1], a["dilations"][1], l, r)
    if oh <= 0 or ow <= 0:
        raise _fail(node, f"kernel {kh}x{kw} does not fit input {h}x{wd} with pads {a['pads']}")
    out = (n, co, oh, ow) if a.get("out_layout", "nhwc") == "nchw" else (n, oh, ow, co)
    if len(ins) > 2 and ins[2] is not None and ins[2].shape != (co,):
        raise _fail(node, f"bias {ins[2].shape} should be ({co},)")
    if len(ins) > 3 and ins[3] is not None and ins[3].shape != out:
        raise _fail(node, f"residual {ins[3].shape} should be {out}")
    return [(out, x.dtype)]


@_rule(Op.CONV_TRANSPOSE2D)
def _conv_transpose(node, ins):
    x, w = ins[0], ins[1]
    _rank(node, x, 4)
    a = node.attrs
    n, h, wd, c = x.shape
    ci, cog, kh, kw = w.shape
    _window_attrs(node, (kh, kw))
    if min(a["output_padding"]) < 0:
        raise _fail(node, f"output_padding {a['output_padding']} must be >= 0")
    if ci != c or c % a["group"]:
        raise _fail(node, f"weight {w.shape} does not fit input channels {c}")
    t, l, b, r = a["pads"]
    (sh, sw), (dh, dw), (oph, opw) = a["strides"], a["dilations"], a["output_padding"]
    oh = sh * (h - 1) + oph + dh * (kh - 1) + 1 - t - b
    ow = sw * (wd - 1) + opw + dw * (kw - 1) + 1 - l - r
    return [((n, oh, ow, cog * a["group"]), x.dtype)]


@_rule(Op.BATCH_NORM, Op.INSTANCE_NORM)
def _norm(node, ins):
    x = ins[0]
    _rank(node, x, 4)
    _layouts(node, "layout")
    c = x.shape[1] if node.attrs.get("layout", "nhwc") == "nchw" else x.shape[3]
    for t in ins[1:]:
        if t.shape[-1:] != (c,) or len(t.shape) > 2:
            raise _fail(node, f"parameter {t.name!r} has shape {t.shape}, expected ({c},)")
    return [(x.shape, x.dtype)]


@_rule(Op.REDUCE_MEAN, Op.REDUCE_SUM)
def _reduce(node, ins):
    x = ins[0]
    axes = normalize_axes(node, node.attrs["axes"] or range(len(x.shape)), len(x.shape))
    if node.attrs["keepdims"]:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [(shape, x.dtype)]


def normalize_axes(node: Node, axes, rank: int) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise _fail(node, f"axis {a} out of range for rank {rank}")
        out.append(a % rank)
    return tuple(out)


@_rule(Op.PAD)
def _pad(node, ins):
    x = ins[0]
    pads = node.attrs["pads"]
    r = len(x.shape)
    if len(pads) != 2 * r:
        raise _fail(node, f"pads {pads} need {2 * r} values for rank {r}")
    shape = tuple(d + pads[i] + pads[i + r] for i, d in enumerate(x.shape))
    if min(shape) < 0:
        raise _fail(node, f"pads {pads} make a negative size from {x.shape}")
    if node.attrs["mode"] == "reflect" and any(
            max(pads[i], pads[i + r]) >= d and max(pads[i], pads[i + r]) > 0
            for i, d in enumerate(x.shape)):
        raise _fail(node, f"reflect pads {pads} must be smaller than the input {x.shape}")
    return [(shape, x.dtype)]


@_rule(Op.RESIZE)
def _resize(node, ins):
    x = ins[0]
    _rank(node, x, 4)
    oh, ow = node.attrs["size"]
    return [((x.shape[0], oh, ow, x.shape[3]), x.dtype)]


@_rule(Op.MAX_POOL, Op.AVG_POOL)
def _pool(node, ins):
    x = ins[0]
    _rank(node, x, 4)
    a = node.attrs
    _window_attrs(node, a["kernel"])
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["strides"], a["pads"]
    dh, dw = a.get("dilations", (1, 1))
    oh = conv_output_size(x.shape[1], kh, sh, dh, t, b)
    ow = conv_output_size(x.shape[2], kw, sw, dw, l, r)
    if oh <= 0 or ow <= 0:
        raise _fail(node, f"pool window {kh}x{kw} does not fit input {x.shape}")
    return [((x.shape[0], oh, ow, x.shape[3]), x.dtype)]


@_rule(Op.GLOBAL_AVG_POOL)
def _global_pool(node, ins):
    x = ins[0]
    _rank(node, x, 4)
    return [((x.shape[0], 1, 1, x.shape[3]), x.dtype)]


@_rule(Op.CONCAT)
def _concat(node, ins):
    r = len(ins[0].shape)
    (axis,) = normalize_axes(node, [node.attrs["axis"]], r)
    for t in ins[1:]:
        if len(t.shape) != r or any(a != b for i, (a, b) in enumerate(zip(t.shape, ins[0].shape))
                                    if i != axis):
            raise _fail(node, f"cannot concatenate {ins[0].shape} and {t.shape} on axis {axis}")
    shape = list(ins[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ins)
    return [(tuple(shape), ins[0].dtype)]


@_rule(Op.RESHAPE)
def _reshape(node, ins):
    shape = tuple(node.attrs["shape"])
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(ins[0].shape, dtype=np.int64)) \
            or min(shape, default=0) < 0:
        raise _fail(node, f"cannot reshape {ins[0].shape} to {shape}")
    return [(shape, ins[0].dtype)]


@_rule(Op.TRANSPOSE)
def _transpose(node, ins):
    perm = tuple(node.attrs["perm"])
    if sorted(perm) != list(range(len(ins[0].shape))):
        raise _fail(node, f"perm {perm} is not a permutation of rank {len(ins[0].shape)}")
    return [(tuple(ins[0].shape[p] for p in perm), ins[0].dtype)]


@_rule(Op.SLICE)
def _slice(node, ins):
    x = ins[0]
    index = slice_index(node, x.shape)
    return [(np.empty(x.shape, dtype=np.bool_)[index].shape, x.dtype)]


def slice_index(node: Node, shape: Shape) -> tuple[slice, ...]:
    """The numpy index of a SLICE node (ONNX clamping rules) on an input of ``shape``."""
    a = node.attrs
    index = [slice(None)] * len(shape)
    for start, end, axis, step in zip(a["starts"], a["ends"], normalize_axes(
            node, a["axes"], len(shape)), a["steps"]):
        if step == 0:
            raise _fail(node, "slice step 0")
        d = shape[axis]
        if step > 0:
            start = min(max(start + d if start < 0 else start, 0), d)
            end = min(max(end + d if end < 0 else end, 0), d)
        else:
            start = min(max(start + d if start < 0 else start, 0), d - 1)
            end = min(max(end + d if end < 0 else end, -1), d - 1)
        index[axis] = slice(start, None if end == -1 and step < 0 else end, step)
    return tuple(index)


@_rule(Op.GATHER)
def _gather(node, ins):
    x, idx = ins
    (axis,) = normalize_axes(node, [node.attrs["axis"]], len(x.shape))
    return [(x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype)]


@_rule(Op.CAST)
def _cast(node, ins):
    return [(ins[0].shape, DType(node.attrs["to"]))]


@_rule(Op.GEMM)
def _gemm(node, ins):
    a, b = ins[0], ins[1]
    _rank(node, a, 2)
    _rank(node, b, 2)
    m, k = a.shape[::-1] if node.attrs["trans_a"] else a.shape
    k2, n = b.shape[::-1] if node.attrs["trans_b"] else b.shape
    if k != k2:
        raise _fail(node, f"inner dimensions differ: A {a.shape}, B {b.shape}")
    if len(ins) > 2 and ins[2] is not None:
        broadcast(node, ins[2].shape, (m, n))
    return [((m, n), a.dtype)]


@_rule(Op.MATMUL)
def _matmul(node, ins):
    a, b = ins
    sa, sb = list(a.shape), list(b.shape)
    if len(sa) == 1:
        sa = [1] + sa
    if len(sb) == 1:
        sb = sb + [1]
    if sa[-1] != sb[-2]:
        raise _fail(node, f"inner dimensions differ: {a.shape} @ {b.shape}")
    batch = broadcast(node, tuple(sa[:-2]), tuple(sb[:-2]))
    shape = batch + (sa[-2], sb[-1])
    if len(a.shape) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b.shape) == 1:
        shape = shape[:-1]
    return [(tuple(shape), a.dtype)]


@_rule(Op.SOFTMAX)
def _softmax(node, ins):
    normalize_axes(node, [node.attrs["axis"]], len(ins[0].shape))
    return [(ins[0].shape, ins[0].dtype)]


INTEGER_DTYPES = frozenset({DType.UINT8, DType.INT8})


def check_quant(node: Node, t: Tensor) -> None:
    """``t.quant`` fits ``t``: an 8-bit integer dtype, positive finite scales, zero points in
    range, one scale per ``axis`` entry (or one per tensor)."""
    q = t.quant
    if t.dtype not in INTEGER_DTYPES:
        raise _fail(node, f"tensor {t.name!r} has quant params but dtype {t.dtype.value}; "
                          f"quantized tensors are uint8 or int8")
    n = 1 if q.axis is None else (t.shape[q.axis] if -len(t.shape) <= q.axis < len(t.shape)
                                  else -1)
    info = np.iinfo(t.dtype.np)
    if len(q.scale) != n or len(q.zero_point) != n:
        raise _fail(node, f"tensor {t.name!r} {t.shape}: {len(q.scale)} scales and "
                          f"{len(q.zero_point)} zero points for axis {q.axis}")
    if not all(np.isfinite(s) and s > 0 for s in q.scale) \
            or not all(info.min <= z <= info.max for z in q.zero_point):
        raise _fail(node, f"tensor {t.name!r}: scales must be finite and > 0, zero points in "
                          f"[{info.min}, {info.max}] (got {q})")


@_rule(Op.QUANTIZE)
def _quantize(node, ins):
    to = node.attrs["to"]
    if ins[0].dtype is not DType.FLOAT32 or to not in ("uint8", "int8"):
        raise _fail(node, f"quantizes {ins[0].dtype.value} to {to}; expected float32 to "
                          f"uint8 or int8")
    return [(ins[0].shape, DType(to))]


@_rule(Op.DEQUANTIZE)
def _dequantize(node, ins):
    if ins[0].quant is None:
        raise _fail(node, f"input {ins[0].name!r} has no quant params")
    check_quant(node, ins[0])
    return [(ins[0].shape, DType.FLOAT32)]


@_rule(Op.INT8_RECODE)
def _int8_recode(node, ins):
    if ins[0].quant is None or ins[0].dtype not in (DType.INT8, DType.UINT8):
        raise _fail(node, f"input {ins[0].name!r} is {ins[0].dtype.value}"
                          f"{'' if ins[0].quant else ' without quant params'}; expected "
                          f"quantized int8 or uint8")
    check_quant(node, ins[0])
    return [(ins[0].shape, DType.UINT8 if ins[0].dtype is DType.INT8 else DType.INT8)]


def _quantized_outputs(node: Node, graph: Graph, ins: list[Tensor | None],
                       outs: list[tuple[Shape, DType]]) -> list[tuple[Shape, DType]]:
    """Quantized semantics (ops in ``QUANTIZABLE``): an output whose tensor carries quant params
    keeps its integer dtype; otherwise any quantized input makes the output float32."""
    quantized_in = any(t is not None and t.quant is not None for t in ins)
    result = []
    for i, (shape, dtype) in enumerate(outs):
        # NOTE: passes infer a node's outputs before naming them (node.outputs may be empty)
        t = graph.tensors.get(node.outputs[i]) if i < len(node.outputs) else None
        if t is not None and t.quant is not None:
            check_quant(node, t)
            dtype = t.dtype
        elif quantized_in:
            dtype = DType.FLOAT32
        result.append((shape, dtype))
    return result


def infer(node: Node, graph: Graph) -> list[tuple[Shape, DType]]:
    """Output shapes and dtypes of ``node`` from its inputs' tensors in ``graph``."""
    rule = _RULES.get(node.op)
    if rule is None:
        raise UnsupportedOperatorError(f"node {node.name!r}: no shape rule for {node.op.name}")
    ins = [graph.tensors[i] if i else None for i in node.inputs]
    outs = rule(node, ins)
    if node.op in QUANTIZABLE:
        outs = _quantized_outputs(node, graph, ins, outs)
    elif node.op in (Op.QUANTIZE, Op.INT8_RECODE) and node.outputs[0] in graph.tensors \
            and graph.tensors[node.outputs[0]].quant is not None:
        check_quant(node, graph.tensors[node.outputs[0]])
    return outs
