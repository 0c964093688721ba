"""Quantized convolutions: CONV2D with a uint8 input and int8 weights (kernels/qu8_conv2d.py).

A CONV2D is quantized when one of its tensors carries quant params (``step.quantized``); the float
lowering of ``conv.py`` keeps every other CONV2D. Contract of the IR node (ir/interpret.py):
``y = conv(sx * (x - zx), sw[c] * w) + b``, then ``act``; quantized to (sy, zy) when the output is
uint8. The kernel computes the same in integers::

    acc[c]  = sum x * w + bias_q[c]           bias_q = rint(b / (sx * sw)) - zx * sum(w[c])
    uint8:    y = clip(rint(f32(acc) * m[c]) + zy, qmin, qmax),  m = f32(sx * sw[c] / sy)
    float32:  y = act(f32(acc) * m[c]),                           m = f32(sx * sw[c])

The activation of a uint8 output is folded into the clamp: NONE -> [0, 255], RELU ->
[zy, 255], CLAMP(lo, hi) -> [rint(lo / sy) + zy, rint(hi / sy) + zy] clipped to [0, 255] (rint
is monotonic, so clamping before or after quantizing agrees).

Step contract:
    inputs  [x] (u8 NHWC); outputs [y] (u8 or f32 NHWC)
    weights wp (pack_qu8_weights), wrun (pack_qu8_weights_run, group 1 and C % 4 != 0 only),
            zrow (u8 row of zx), bias i32[Co] (bias_q), mult f32[Co]
    params  group, zy, qmin, qmax, act, act_params [p0, p1], work (MACs); kernel [KH, KW],
            strides, dilations, pads, pad_mode, upsample: the binder builds the indirection
            tables from these and the input shape (a few KB each: not worth plan bytes); and for
            reading the plan: sx, zx, sy (0 for float output)
    kernel  ``qu8_conv2d_igemm_{MR}x{NR}c4_{requant|fp32out}``; the binder picks the ISA variant
            (``_instance_norm[_add]``: with the instance norm after it, families/qconv_norm.py)
A QDQ model's conv (``float_ties``, group 1, uint8 output):
``qu8_conv2d_{igemm_{MR}x{NR}c4|kdot16_{MR}x{LANES}}_requant_fp32ties``: the ``fp32out`` conv
(mult ``f32(sx * sw[c])``) into a float32 scratch tensor, then kernels/qu8_requant_fp32ties.py
rounds it as the model's float32 conv would; extra weights wf f32[Co, C, KH, KW], bf f32[Co],
taps i32[Co, 2], delta f32[Co].
Depthwise convs (group == C, KH * KW <= 256): ``qu8_dwconv2d_{requant|fp32out}``
(kernels/qu8_dwconv2d.py), weights wp [KH, KW, Co], zrow u8[C], bias, mult; params as above
plus chmult (Co / C).
"""
from __future__ import annotations

import numpy as np

from kernels.f32_conv2d import activation_params, conv_tables
from kernels import qu8_conv2d as qconv
from kernels import qu8_dwconv2d as qdw
from kernels import qu8_requant_fp32ties as kties
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation
from mobile_engine.planning.families.conv import geometry_params
from mobile_engine.planning.step import Step

F32 = np.float32


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def per_tensor(node: Node, graph: Graph, name: str, dtype: DType = DType.UINT8) -> QuantParams:
    """The per-tensor quant params of ``name``; raises naming the node otherwise."""
    t = graph.tensors[name]
    q = t.quant
    if q is None or t.dtype is not dtype or q.axis is not None or len(q.scale) != 1:
        raise _fail(node, f"tensor {name!r} is {t.dtype.value} with quant {q}; the qu8 kernels "
                          f"need {dtype.value} with one scale and zero point")
    return q


def clamp_range(act: Activation, params, sy: float, zy: int) -> tuple[int, int]:
    """[qmin, qmax] of a uint8 output (scale sy, zero point zy) with ``act`` folded in."""
    if act is Activation.NONE:
        return 0, 255
    if act is Activation.RELU:
        return zy, 255
    if act is Activation.CLAMP:
        lo, hi = (float(p) for p in params)
        qlo = 0 if lo == float("-inf") else int(np.clip(np.rint(lo / sy) + zy, 0, 255))
        qhi = 255 if hi == float("inf") else int(np.clip(np.rint(hi / sy) + zy, 0, 255))
        return qlo, max(qlo, qhi)
    raise ValueError(f"activation {act.name} cannot be folded into a uint8 clamp")


def uses_dwconv(group: int, c: int, co: int, kh: int, kw: int) -> bool:
    """True when a quantized conv lowers to the depthwise kernel."""
    return group == c and c > 1 and co % c == 0 and kh * kw <= qdw.MAX_TAPS


def int8_kernel_family(group: int, c: int, co: int, kh: int, kw: int) -> str:
    """Which int8 kernel a quantized conv runs: "dw", "kdot" (few output channels: 16-byte
    dot products over a kernel row) or "igemm"."""
    if uses_dwconv(group, c, co, kh, kw):
        return "dw"
    return "kdot" if qconv.use_kdot(co, group) else "igemm"


def lower_qconv2d(node: Node, graph: Graph) -> list[Step]:
    a = node.attrs
    if len(node.inputs) > 3 and node.inputs[3]:
        raise _fail(node, "a quantized conv takes no residual input")
    if a.get("in_layout", "nhwc") != "nhwc" or a.get("out_layout", "nhwc") != "nhwc":
        raise _fail(node, "the int8 conv kernels read and write NHWC only")
    x, out = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if x.is_const:
        raise _fail(node, f"input {x.name!r} is a constant; fold the node first")
    xq = per_tensor(node, graph, x.name)
    w = graph.tensors[node.inputs[1]]
    if not w.is_const or w.dtype is not DType.INT8 or w.quant is None or w.quant.axis != 0 \
            or any(z != 0 for z in w.quant.zero_point):
        raise _fail(node, f"weight {w.name!r} must be a constant int8 tensor quantized "
                          f"symmetrically per output channel (axis 0), got {w.dtype.value} "
                          f"{w.quant}")
    bias = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if len(node.inputs) > 2 and node.inputs[2] and bias is None:
        raise _fail(node, f"bias {node.inputs[2]!r} is computed at run time")
    if a["pad_mode"] not in ("constant", "reflect", "edge"):
        raise _fail(node, f"pad_mode {a['pad_mode']!r}; supported: constant, reflect, edge")
    wq = np.ascontiguousarray(w.data, np.int8)
    co, cig, kh, kw = wq.shape
    group, c = a["group"], x.shape[3]
    sx, zx = xq.scale[0], xq.zero_point[0]
    sw = np.asarray(w.quant.scale, np.float64)
    act = Activation(a["activation"])
    rowmap, colmap = conv_tables(x.shape, (kh, kw), a["strides"], a["dilations"], a["pads"],
                                 a["pad_mode"], a["upsample"])
    if (rowmap.shape[0], colmap.shape[0]) != tuple(out.shape[1:3]):
        raise _fail(node, f"indirection tables {rowmap.shape[0]}x{colmap.shape[0]} do not match "
                          f"output {out.shape} (NHWC)")
    try:
        bias_q = qconv.qu8_conv_bias(bias, wq, sx, sw, zx)
    except OverflowError as exc:
        raise _fail(node, f"{exc} (input scale {sx:.3g}, weight scales down to {sw.min():.3g})")
    macs = int(np.prod(out.shape)) * cig * kh * kw
    if kh * kw * cig * 255 * 128 + int(np.abs(bias_q).max(initial=0)) >= 2 ** 31:
        raise _fail(node, f"int32 accumulators could overflow ({kh}x{kw}x{cig} taps)")
    if out.quant is not None:
        yq = per_tensor(node, graph, out.name)
        sy, zy = yq.scale[0], yq.zero_point[0]
        try:
            qmin, qmax = clamp_range(act, a["act_params"], sy, zy)
        except ValueError as exc:
            raise _fail(node, str(exc)) from None
        mult = qconv.qu8_conv_multiplier(sx, sw, sy)
        epilogue, act_code, act_params = "requant", 0, [0.0, 0.0]
    elif out.dtype is DType.FLOAT32:
        sy, zy, qmin, qmax = 0.0, 0, 0, 255
        mult = qconv.qu8_conv_multiplier(sx, sw)
        epilogue, act_code = "fp32out", int(act)
        try:
            act_params = list(activation_params(act, a["act_params"]))
        except ValueError as exc:
            raise _fail(node, str(exc)) from None
    else:
        raise _fail(node, f"output {out.name!r} is {out.dtype.value} without quant params")
    params = dict(group=group, zy=int(zy), qmin=int(qmin), qmax=int(qmax), act=act_code,
                  act_params=[float(p) for p in act_params], work=macs,
                  **geometry_params(node, kh, kw), sx=float(sx), zx=int(zx), sy=float(sy))
    ties = {}
    if a["float_ties"] and epilogue == "requant" and group == 1:
        # the conv writes f32(acc) * f32(sx sw) to a scratch tensor; the requantization rounds
        # it, taking the model's float32 conv where the sum is near a rounding tie
        epilogue, mult = "requant_fp32ties", qconv.qu8_conv_multiplier(sx, sw)
        ties = fp32ties_weights(node, graph, wq, sx, zx, sy, bias, bias_q)
    if uses_dwconv(group, c, co, kh, kw):
        weights = dict(wp=qdw.pack_weights(wq), zrow=qdw.zero_row(zx, c),
                       bias=np.ascontiguousarray(bias_q, np.int32),
                       mult=np.ascontiguousarray(mult, F32))
        params["chmult"] = co // c
        return [Step(node.name, qdw.kernel_id(epilogue), [x.name], [out.name], params, weights,
                     2 * macs)]
    if qconv.use_kdot(co, group):
        mr, cg = qconv.kdot_tile(co)
        wrun, wtap = qconv.pack_qu8_weights_kdot(wq, cg)
        weights = dict(wrun=wrun, wtap=wtap, zrow=qconv.qu8_zero_row(zx, c, kw, group),
                       bias=np.ascontiguousarray(bias_q, np.int32),
                       mult=np.ascontiguousarray(mult, F32), **ties)
        return [Step(node.name, qconv.kdot_plan_kernel_id(mr, cg, epilogue), [x.name],
                     [out.name], params, weights, 2 * macs, _scratch(node, out, ties))]
    mr, nr = qconv.choose_tile(co // group)
    weights = dict(wp=qconv.pack_qu8_weights(wq, nr, group),
                   zrow=qconv.qu8_zero_row(zx, c, kw, group),
                   bias=np.ascontiguousarray(bias_q, np.int32),
                   mult=np.ascontiguousarray(mult, F32), **ties)
    if group == 1 and c % 4:
        weights["wrun"] = qconv.pack_qu8_weights_run(wq, nr)
    return [Step(node.name, qconv.plan_kernel_id(mr, nr, epilogue), [x.name], [out.name],
                 params, weights, 2 * macs, _scratch(node, out, ties))]


def _scratch(node: Node, out, ties: dict) -> dict:
    """The float32 conv output a ``requant_fp32ties`` step rounds (none otherwise)."""
    return {f"{node.name}:fp32": (tuple(out.shape), "float32")} if ties else {}


def fp32ties_weights(node: Node, graph: Graph, wq: np.ndarray, sx: float, zx: int, sy: float,
                     bias, bias_q: np.ndarray) -> dict:
    """Weights of the tie rounding (kernels/qu8_requant_fp32ties.py): the model's float32
    weights ``wf`` and bias ``bf``, each channel's kernel-column window ``taps`` (a conv
    computing ``pixel_phases`` pixels per position reads a window of its wider kernel) and the
    margin ``delta`` around rounding ties."""
    co, _, _, kw = wq.shape
    w = graph.tensors[node.inputs[1]]
    wf = kties.dequantize_float32(wq, w.quant.scale)
    bf = np.zeros(co, F32) if bias is None else np.asarray(bias, F32).reshape(co)
    f = node.attrs["pixel_phases"]
    taps = np.stack([np.arange(co) // (co // f), np.full(co, kw - f + 1)], axis=1)
    sw = np.asarray(w.quant.scale, np.float64)
    zsum = np.asarray(wq, np.int64).reshape(co, -1).sum(axis=1) * int(zx)
    bias_error = np.abs((bias_q.astype(np.float64) + zsum) * float(sx) * sw
                        - bf.astype(np.float64))
    delta = kties.tie_margin(wf, taps, bf, bias_error, sx, zx, sy)
    return dict(wf=wf, bf=bf, taps=np.ascontiguousarray(taps, np.int32), delta=delta)


