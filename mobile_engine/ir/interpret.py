"""Run an IR graph with the numpy references: constant folding and the truth for pass tests.

The numpy math of each op is ``kernels/reference.py`` (the truth the kernels are tested
against), which the IR may not import: the IR is the bottom layer. The package root, which wires
the layers, hands it in once with :func:`use_reference` (``mobile_engine/__init__.py``, a loader
called on first use, so importing the IR loads no kernel module); :func:`reference` returns it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from mobile_engine.errors import EngineError, InputError, UnsupportedOperatorError
from mobile_engine.ir.dtypes import QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import BINARY, QUANT_OPS, QUANTIZABLE, UNARY, Op
from mobile_engine.ir.shapes import slice_index


_LOADER: Callable | None = None
_REFERENCE = None


def use_reference(loader: Callable) -> None:
    """Set the numpy references: ``loader()`` returns a module with kernels/reference.py's
    functions (conv2d, binary, resize_axis_weights, ...); it is called on first use."""
    global _LOADER, _REFERENCE
    _LOADER, _REFERENCE = loader, None


def reference():
    """The numpy references module handed in by :func:`use_reference`."""
    global _REFERENCE
    if _REFERENCE is None:
        if _LOADER is None:
            raise EngineError("no numpy reference for the IR interpreter: import mobile_engine "
                              "(its __init__ hands kernels/reference.py in) or call use_reference")
        _REFERENCE = _LOADER()
    return _REFERENCE


def resize_is_general(attrs: dict) -> bool:
    """Whether a RESIZE node samples by the general K-tap rule (cubic, antialias,
    tf_crop_and_resize, half_pixel_symmetric): then ``resize_axis_weights`` does not apply."""
    return reference().resize_is_general(attrs["mode"], attrs["coordinate_mode"],
                                         attrs.get("antialias", False))


def resize_axis_taps(in_size: int, out_size: int, scale: float, attrs: dict, axis: int):
    """The general rule along axis 0 (H) or 1 (W): (indices [out, K], weights [out, K],
    outside [out]) (kernels/reference.py ``resize_axis_taps``)."""
    roi = tuple(attrs.get("roi") or ()) or (0.0, 0.0, 1.0, 1.0)
    return reference().resize_axis_taps(
        in_size, out_size, scale, attrs["mode"], attrs["coordinate_mode"],
        attrs["nearest_mode"], attrs.get("cubic_coeff_a", -0.75),
        attrs.get("exclude_outside", False), attrs.get("antialias", False),
        (roi[axis], roi[axis + 2]))


def resize_axis_weights(in_size: int, out_size: int, scale: float, mode: str,
                        coordinate_mode: str, nearest_mode: str):
    """RESIZE's sampling rule along one axis, for each output index: (index0, index1, weight of
    index1); nearest gives weight 0 (the reference's rule, which the resize kernel uses too)."""
    return reference().resize_axis_weights(in_size, out_size, scale, mode, coordinate_mode,
                                           nearest_mode)


def _act(a: dict) -> dict:
    return {"activation_kind": a.get("activation", 0), "act_params": a.get("act_params", ())}


def evaluate(node: Node, ins: list[np.ndarray | None]) -> list[np.ndarray]:
    """The outputs of ``node`` for input arrays ``ins`` (None for omitted optional inputs)."""
    op, a, ref = node.op, node.attrs, reference()
    if op is Op.CONV2D:
        ins = list(ins)
        if a.get("in_layout") == "nchw":            # planar x: the reference is NHWC
            ins[0] = ins[0].transpose(0, 2, 3, 1)
        nchw_out = a.get("out_layout") == "nchw"
        if nchw_out and len(ins) > 3 and ins[3] is not None:
            ins[3] = ins[3].transpose(0, 2, 3, 1)
        out = ref.conv2d(*ins, strides=a["strides"], dilations=a["dilations"], pads=a["pads"],
                         group=a["group"], pad_mode=a["pad_mode"], upsample=a["upsample"], **_act(a))
        if nchw_out:
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    elif op is Op.CONV_TRANSPOSE2D:
        out = ref.conv_transpose2d(*ins, strides=a["strides"], dilations=a["dilations"],
                                   pads=a["pads"], group=a["group"],
                                   output_padding=a["output_padding"], **_act(a))
    elif op is Op.BATCH_NORM:
        out = ref.batch_norm(*ins, epsilon=a["epsilon"], **_act(a))
    elif op is Op.INSTANCE_NORM:
        if a.get("layout") == "nchw":
            out = ref.instance_norm(ins[0].transpose(0, 2, 3, 1), *ins[1:], epsilon=a["epsilon"],
                                    **_act(a))
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        else:
            out = ref.instance_norm(*ins, epsilon=a["epsilon"], **_act(a))
    elif op in UNARY:
        out = ref.unary(op.value, ins[0], **a)
    elif op in BINARY:
        out = ref.binary(op.value, ins[0], ins[1], **_act(a))
    elif op is Op.PRELU:
        out = ref.prelu(*ins)
    elif op in (Op.REDUCE_MEAN, Op.REDUCE_SUM):
        out = ref.reduce(op.value, ins[0], a["axes"], a["keepdims"])
    elif op is Op.PAD:
        out = ref.pad(ins[0], a["pads"], a["mode"], a["value"])
    elif op is Op.RESIZE:
        out = ref.resize(ins[0], a["size"], a["mode"], a["coordinate_mode"], a["nearest_mode"],
                         a["scales"], a.get("cubic_coeff_a", -0.75),
                         a.get("exclude_outside", False), a.get("antialias", False),
                         a.get("roi", ()), a.get("extrapolation_value", 0.0))
    elif op is Op.MAX_POOL:
        out = ref.max_pool(ins[0], a["kernel"], a["strides"], a["pads"], a["dilations"])
    elif op is Op.AVG_POOL:
        out = ref.avg_pool(ins[0], a["kernel"], a["strides"], a["pads"], a["count_include_pad"])
    elif op is Op.GLOBAL_AVG_POOL:
        out = ref.global_avg_pool(ins[0])
    elif op is Op.CONCAT:
        out = np.concatenate(ins, axis=a["axis"])
    elif op is Op.RESHAPE:
        out = ins[0].reshape(a["shape"])
    elif op is Op.TRANSPOSE:
        out = ref.transpose(ins[0], a["perm"])
    elif op is Op.SLICE:
        out = np.ascontiguousarray(ins[0][slice_index(node, ins[0].shape)])
    elif op is Op.GATHER:
        out = np.take(ins[0], ins[1], axis=a["axis"])
    elif op is Op.CAST:
        out = ref.cast(ins[0], a["to"])
    elif op is Op.GEMM:
        out = ref.gemm(*ins, alpha=a["alpha"], beta=a["beta"], trans_a=a["trans_a"],
                       trans_b=a["trans_b"], **_act(a))
    elif op is Op.MATMUL:
        out = ref.matmul(*ins, **_act(a))
    elif op is Op.SOFTMAX:
        out = ref.softmax(ins[0], a["axis"])
    else:
        raise UnsupportedOperatorError(f"node {node.name!r}: no reference for {op.name}")
    return [np.asarray(out)]


def _per_axis(values, q: QuantParams, ndim: int, dtype) -> np.ndarray:
    v = np.asarray(values, dtype)
    if q.axis is None:
        return v.reshape(())
    shape = [1] * ndim
    shape[q.axis] = v.size
    return v.reshape(shape)


def quantize(x: np.ndarray, q: QuantParams, dtype) -> np.ndarray:
    """``clamp(rint(x * float32(1 / s)) + z)`` in float32, as the kernels' quantize step."""
    x = np.asarray(x, np.float32)
    inv = _per_axis([1.0 / s for s in q.scale], q, x.ndim, np.float32)
    z = _per_axis(q.zero_point, q, x.ndim, np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x * inv) + z, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, q: QuantParams) -> np.ndarray:
    """``float32(x - z) * float32(s)``."""
    z = _per_axis(q.zero_point, q, x.ndim, np.int32)
    s = _per_axis(q.scale, q, x.ndim, np.float32)
    return (x.astype(np.int32) - z).astype(np.float32) * s


def evaluate_quantized(node: Node, graph: Graph, ins: list[np.ndarray | None]
                       ) -> list[np.ndarray]:
    """Quantized semantics: dequantize inputs with quant params, run the float op (QUANTIZE and
    DEQUANTIZE: none), quantize outputs whose tensors have quant params."""
    real = []
    for name, value in zip(node.inputs, ins):
        t = graph.tensors[name] if name else None
        real.append(dequantize(value, t.quant) if t is not None and t.quant is not None
                    else value)
    outs = [real[0]] if node.op in QUANT_OPS else evaluate(node, real)
    result = []
    for name, value in zip(node.outputs, outs):
        t = graph.tensors[name]
        result.append(quantize(value, t.quant, t.dtype.np) if t.quant is not None else value)
    return result


def run_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output, computed node by node with the numpy references."""
    values: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    for name in graph.inputs:
        if name not in feeds:
            raise InputError(f"input {name!r} is missing from the feeds")
        values[name] = np.asarray(feeds[name])
    for node in graph.nodes:
        ins = [values[i] if i else None for i in node.inputs]
        quantized = node.op in QUANT_OPS or (node.op in QUANTIZABLE and any(
            graph.tensors[n].quant is not None for n in node.inputs + node.outputs if n))
        outs = evaluate_quantized(node, graph, ins) if quantized else evaluate(node, ins)
        for name, value in zip(node.outputs, outs):
            t = graph.tensors[name]
            values[name] = value.astype(t.dtype.np, copy=False).reshape(t.shape)
    return {o: values[o] for o in graph.outputs}
