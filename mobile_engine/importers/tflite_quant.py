"""Quantized TFLite tensors -> the IR's QDQ form, which ``passes/fold_qdq.py`` folds into int8
kernels (as for pre-quantized ONNX models).

A TFLite operator on 8-bit tensors computes on ``real = scale * (q - zero_point)`` and
requantizes its output. Around each such operator the importer writes:

    DEQUANTIZE(each quantized run-time input) -> the float operator -> QUANTIZE(each quantized output)

Quantized constants (int8 weights per channel, int32 biases with scale = input scale x weight
scale) become float constants; fold_qdq re-quantizes conv weights per output channel, exactly
when they were symmetric int8 with max |q| = 127 per channel (TFLite's int8 spec).

NOTE: int8 activations run as uint8 with the zero point moved by 128 (the qu8 kernels take
uint8; the real values are the same): every run-time quantized tensor here is uint8, int8 graph
inputs and outputs are recoded at the edges (INT8_RECODE), as in the ONNX importer.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op

INT8, UINT8, INT32, INT16 = 9, 3, 2, 7          # tflite.TensorType


def params(t) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(scales, zero points, axis) of a tflite.Tensor, or None when it is not quantized."""
    q = t.Quantization() if t is not None else None
    if q is None or not q.ScaleLength():
        return None
    scale = q.ScaleAsNumpy().astype(np.float64)
    zero = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else \
        np.zeros(scale.size, np.int64)
    return scale, zero, int(q.QuantizedDimension())


def is_quantized(t) -> bool:
    return t is not None and t.Type() in (INT8, UINT8) and params(t) is not None


def runtime_params(t, where: str) -> QuantParams:
    """The IR's per-tensor params of a run-time 8-bit tensor, in uint8 form."""
    scale, zero, _ = params(t)
    if scale.size != 1:
        raise UnsupportedOperatorError(f"{where}: per-channel quantized activations are not "
                                       f"supported (per-tensor only)")
    z = int(zero[0]) + (128 if t.Type() == INT8 else 0)
    return QuantParams((float(scale[0]),), (z,))


def dequantize_const(arr: np.ndarray, t) -> np.ndarray:
    """A quantized constant's real values, float32."""
    scale, zero, axis = params(t)
    if scale.size > 1:
        shape = [1] * arr.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((arr.astype(np.float64) - zero) * scale).astype(np.float32)


def float_inputs(ctx) -> None:
    """Replace ``ctx.values`` of quantized tensors by their real values: DEQUANTIZE nodes for
    run-time tensors, float arrays for constants."""
    for k, (v, t) in enumerate(zip(ctx.values, ctx.tensors)):
        if v is None or t is None or params(t) is None or t.Type() not in (INT8, UINT8, INT32,
                                                                              INT16):
            continue
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "iu":         # not yet folded to float by an earlier operator
                ctx.values[k] = dequantize_const(v, t)
        elif ctx.graph.tensors[v].quant is not None:
            ctx.values[k] = ctx.emit(Op.DEQUANTIZE, v, suffix=f"dequantize{k}")


def quantize_output(ctx, v, t):
    """The float result ``v`` of an operator whose output tensor ``t`` is quantized: QUANTIZE
    with ``t``'s params (uint8 form)."""
    if isinstance(v, np.ndarray):
        return v                          # folded: stays a float constant
    q = runtime_params(t, ctx.where())
    y = ctx.emit(Op.QUANTIZE, v, suffix="quantize", to="uint8")
    ctx.graph.tensors[y].quant = q
    return y


def graph_input(graph: Graph, name: str, t) -> str:
    """Declare a quantized graph input; returns the uint8 tensor the graph computes on."""
    q = runtime_params(t, f"input {name!r}")
    if t.Type() == UINT8:
        graph.add_tensor(name, _shape(t), DType.UINT8, quant=q)
        graph.inputs.append(name)
        return name
    graph.add_tensor(name, _shape(t), DType.INT8,
                     quant=QuantParams(q.scale, (q.zero_point[0] - 128,)))
    graph.inputs.append(name)
    u8 = graph.fresh_name(f"{name}/uint8")
    graph.add_tensor(u8, _shape(t), DType.UINT8, quant=q)
    graph.nodes.append(Node(f"{name}/to_uint8", Op.INT8_RECODE, [name], [u8], {}))
    return u8


def graph_output(graph: Graph, ir_name: str, out: str, t) -> str | None:
    """An int8 graph output computed as uint8: recoded under the output's name (None when the
    output needs no recode)."""
    if t.Type() != INT8 or graph.tensors[ir_name].dtype is not DType.UINT8:
        return None
    src = graph.tensors[ir_name]
    graph.add_tensor(out, src.shape, DType.INT8,
                     quant=QuantParams(src.quant.scale, (src.quant.zero_point[0] - 128,)))
    graph.nodes.append(Node(f"{out}/to_int8", Op.INT8_RECODE, [ir_name], [out], {}))
    return out


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
