"""Quantized convolutions: CONV2D with a uint8 input and int8 weights (kernels/qu8_conv2d.py).

A CONV2D is quantized when one of its tensors carries quant params (``is_quantized``); the float
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
Depthwise convs (group == C, KH * KW <= 256): ``qu8_dwconv2d_{requant|fp32out}``
(kernels/qu8_dwconv2d.py), weights wp [KH, KW, Co], zrow u8[C], bias, mult; params as above
plus chmult (Co / C).
"""
from __future__ import annotations

import numpy as np

import mobile_engine.planning.families.conv  # noqa: F401  (the float lowering, wrapped below)
from kernels import config
from kernels.f32_conv2d import activation_params, conv_tables, readonly
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning import validate as v
from mobile_engine.planning.families.conv import geometry_params, tables_from_params
from mobile_engine.planning.step import LOWERINGS, Step, binds

F32 = np.float32

try:
    from kernels import qu8_conv2d as qconv
    KERNELS_MISSING = None
except ImportError as _exc:     # NOTE: the int8 kernels are optional: float plans never need them
    qconv, KERNELS_MISSING = None, _exc
try:
    from kernels import qu8_dwconv2d as qdw
except ImportError:             # depthwise convs then take the grouped igemm kernel
    qdw = None


def is_quantized(node: Node, graph: Graph) -> bool:
    """True when any tensor of ``node`` carries quant params (it has quantized semantics)."""
    return any(graph.tensors[n].quant is not None for n in node.inputs + node.outputs if n)


def quantized_dispatch(op: Op, lower_quantized) -> None:
    """Route quantized ``op`` nodes to ``lower_quantized``, the rest to the float lowering."""
    lower_float = LOWERINGS[op]

    def lower(node: Node, graph: Graph) -> list[Step]:
        if is_quantized(node, graph):
            return lower_quantized(node, graph)
        return lower_float(node, graph)
    lower.__doc__ = f"{op.name}: quantized -> {lower_quantized.__name__}, else the float lowering"
    LOWERINGS[op] = lower


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
    """True when a quantized conv lowers to the depthwise kernel (else the igemm kernel)."""
    return qdw is not None and group == c and c > 1 and co % c == 0 and kh * kw <= qdw.MAX_TAPS


def lower_qconv2d(node: Node, graph: Graph) -> list[Step]:
    if qconv is None:
        raise _fail(node, f"the int8 conv kernels are unavailable ({KERNELS_MISSING})")
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
    if uses_dwconv(group, c, co, kh, kw):
        weights = dict(wp=qdw.pack_weights(wq), zrow=qdw.zero_row(zx, c),
                       bias=np.ascontiguousarray(bias_q, np.int32),
                       mult=np.ascontiguousarray(mult, F32))
        params["chmult"] = co // c
        return [Step(node.name, qdw.kernel_id(epilogue), [x.name], [out.name], params, weights,
                     2 * macs)]
    mr, nr = qconv.choose_tile(co // group)
    weights = dict(wp=qconv.pack_qu8_weights(wq, nr, group),
                   zrow=qconv.qu8_zero_row(zx, c, kw, group),
                   bias=np.ascontiguousarray(bias_q, np.int32),
                   mult=np.ascontiguousarray(mult, F32))
    if group == 1 and c % 4:
        weights["wrun"] = qconv.pack_qu8_weights_run(wq, nr)
    return [Step(node.name, qconv.plan_kernel_id(mr, nr, epilogue), [x.name], [out.name],
                 params, weights, 2 * macs)]


quantized_dispatch(Op.CONV2D, lower_qconv2d)


# --- binders -------------------------------------------------------------------------------
# Every binder checks, before any kernel runs, what the kernel trusts (planning/validate.py):
# params' types and ranges, the indirection tables built from them against the input and the
# output, the packed weights' exact shapes against the tile and the channel counts. A failed
# check raises ``validate.BindError``; Session._bind names the file, step and kernel.
MAX_ACT = int(max(Activation))


def _weight(weights: dict, key: str, dtype, **kw) -> np.ndarray:
    if key not in weights:
        raise v.fail(f"weight {key!r} is missing")
    return v.array(f"weight {key!r}", weights[key], dtype, **kw)


def _contiguous(what: str, a: np.ndarray) -> np.ndarray:
    v.require(a.flags.c_contiguous, f"{what} {list(a.shape)} is not C-contiguous")
    return a


class ConvOperands:
    """The checked operands every qu8 conv kernel takes (``check_conv``)."""
    __slots__ = ("x", "out", "rowmap", "colmap", "zrow", "bias", "mult", "tail", "parallel")


def check_conv(params: dict, weights: dict, inputs: list, outputs: list,
               epilogue: str) -> ConvOperands:
    """x u8[N, H, W, C], out u8 (requant) or f32 (fp32out) [N, OH, OW, Co], the indirection
    tables the geometry params give for x (their shapes against out), zrow u8[>= 1], bias
    i32[Co], mult f32[Co], and (zy, qmin, qmax, act, p0, p1) in range."""
    ops = ConvOperands()
    ops.x = _contiguous("the input", v.array("the input", v.operand(iter(inputs), "the input"),
                                             np.uint8, ndim=4))
    ops.out = _contiguous("the output", v.array(
        "the output", v.operand(iter(outputs), "the output"),
        np.uint8 if epilogue == "requant" else F32, ndim=4))
    x, out = ops.x, ops.out
    v.require(out.shape[0] == x.shape[0], f"the output {list(out.shape)} and the input "
                                          f"{list(x.shape)} differ in batch")
    ops.rowmap, ops.colmap = tables_from_params(params, x.shape, out.shape[1:3])
    co = out.shape[3]
    ops.zrow = _weight(weights, "zrow", np.uint8, ndim=1)
    v.require(ops.zrow.size >= 1, "weight 'zrow' is empty")
    ops.bias = _weight(weights, "bias", np.int32, shape=(co,))
    ops.mult = _weight(weights, "mult", F32, shape=(co,))
    ap = params.get("act_params")
    v.require(isinstance(ap, list) and len(ap) == 2 and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in ap),
        f"params['act_params']={ap!r}: expected two numbers")
    ops.tail = (v.integer(params, "zy", 0, 255), v.integer(params, "qmin", 0, 255),
                v.integer(params, "qmax", 0, 255), v.integer(params, "act", 0, MAX_ACT),
                F32(ap[0]), F32(ap[1]))
    ops.parallel = v.integer(params, "work") >= config.PARALLEL_MIN_WORK and \
        x.shape[0] * out.shape[1] >= 2
    return ops


def _bind_qconv(kernel: str):
    mr, nr = (int(v_) for v_ in kernel.split("_igemm_")[1].split("c4_")[0].split("x"))
    epilogue = kernel.rsplit("_", 1)[1]

    def bind(params, weights, inputs, outputs, *_):
        return bind_igemm(mr, nr, epilogue, params, weights, inputs, outputs)

    return bind


def bind_igemm(mr: int, nr: int, epilogue: str, params: dict, weights: dict, inputs: list,
               outputs: list):
    """(dispatcher, args) of a checked ``qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}`` step."""
    ops = check_conv(params, weights, inputs, outputs, epilogue)
    c, co = ops.x.shape[3], ops.out.shape[3]
    kh, kw = ops.rowmap.shape[1], ops.colmap.shape[1]
    group = v.integer(params, "group", 1, c)
    v.require(c % group == 0 and co % group == 0,
              f"params['group']={group} does not divide {c} input / {co} output channels")
    gnb, qt, qr = group * -(-(co // group) // nr), -(-(c // group) // 4), -(-(kw * c) // 4)
    wp = _weight(weights, "wp", np.int8, shape=(gnb, kh, kw, qt, nr, 4))
    if "wrun" in weights:
        wrun = _weight(weights, "wrun", np.int8, shape=(gnb, kh, qr, nr, 4))
        v.require(group == 1, "weight 'wrun' is for group 1 only")
    elif group == 1:
        # NOTE: for C % 4 == 0 the per-row layout holds wp's bytes: [NB, KH, KW * QT, NR, 4]
        # (a view; the kernel reads QR from this array's shape, so pass the 5-d form)
        v.require(c % 4 == 0, f"weight 'wrun' is missing ({c} input channels)")
        wrun = wp.reshape(gnb, kh, kw * qt, nr, 4)
    else:
        wrun = wp
    v.require(ops.zrow.size >= 4 * max(qt, qr if group == 1 else 0),
              f"weight 'zrow' has {ops.zrow.size} bytes; a kernel row reads {4 * max(qt, qr)}")
    _, fn = qconv.select_qu8_conv(mr, nr, epilogue, ops.parallel)
    ro = readonly
    return fn, (ro(ops.x), ro(ops.zrow), ro(ops.rowmap), ro(ops.colmap), ro(wp), ro(wrun),
                ro(ops.bias), ro(ops.mult), ops.out, group, *ops.tail)


def _bind_qdw(kernel: str):
    epilogue = kernel.rsplit("_", 1)[1]

    def bind(params, weights, inputs, outputs, *_):
        ops = check_conv(params, weights, inputs, outputs, epilogue)
        c, co = ops.x.shape[3], ops.out.shape[3]
        chmult = v.integer(params, "chmult", 1, co)
        v.require(co == chmult * c, f"{co} output channels are not params['chmult']={chmult} "
                                    f"x {c} input channels")
        wp = _weight(weights, "wp", np.int8, shape=(ops.rowmap.shape[1], ops.colmap.shape[1],
                                                    co))
        v.require(ops.zrow.size >= c, f"weight 'zrow' has {ops.zrow.size} bytes, not {c}")
        ro = readonly
        return qdw.dwconv_kernel(epilogue, ops.parallel), (
            ro(ops.x), ro(ops.zrow), ro(ops.rowmap), ro(ops.colmap), ro(wp), ro(ops.bias),
            ro(ops.mult), ops.out, chmult, *ops.tail)

    return bind


if qdw is not None:
    for _epilogue in qdw.EPILOGUES:
        binds(qdw.kernel_id(_epilogue))(_bind_qdw(qdw.kernel_id(_epilogue)))

if qconv is not None:
    for _nr, _mr in qconv.TILES.items():
        for _epilogue in qconv.EPILOGUES:
            _kernel = qconv.plan_kernel_id(_mr, _nr, _epilogue)
            binds(_kernel)(_bind_qconv(_kernel))
