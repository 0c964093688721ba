"""Quantized element-wise work: QUANTIZE, instance norm with a uint8 output, the residual add.

Kernel ids and step contracts:

- ``qu8_quantize``: QUANTIZE f32 -> u8, ``q = clamp(rint(x * f32(1 / s)) + z, 0, 255)``
  (kernels/qu8_elementwise.py). inputs [x], outputs [q]; params s, z.
- ``qu8_dequantize``: DEQUANTIZE of a run-time uint8 tensor, ``x = f32(q - z) * s``; params s, z.
  ``qs8_dequantize_const``: DEQUANTIZE of an int8 constant (per-axis scales; weight ``q``,
  ``scale``, ``zero`` when not symmetric): computed once at bind time, copied on each run.
- ``qu8_add_requant``: ADD of two uint8 tensors into uint8, ``y = clamp(rint(f32(a - za) * ma
  + f32(b - zb) * mb) + zy, qmin, qmax)``, ``ma = f32(sa / sy)``; params za, zb, ma, mb, zy,
  qmin, qmax (the activation folded).
- ``f32_instance_norm_nhwc_qu8``: INSTANCE_NORM reading float32 (a conv's exact accumulators)
  and writing uint8 (kernels/f32_norm_qu8.py: two passes, statistics then normalise + quantize). inputs [x, runtime scale/bias]; weights
  ``in1``/``in2`` when constant; params epsilon, act, p0, p1 (the norm's activation, in float),
  s, z, qmin, qmax (output), inplace (the float norm may overwrite x: nothing else reads it;
  otherwise the binder allocates a scratch once).
- ``f32_instance_norm_nhwc_add_qu8``: an INSTANCE_NORM whose only reader is a uint8 ADD
  (``quantize_int8.fused_norm_input``) and that ADD, as one step writing the ADD's output:
  ``q = clamp(rint((norm(x) + rs * (r - rz)) / s) + z, qmin, qmax)``, the add's activation in
  the clamp. inputs [x, runtime scale/bias, r]; params as above plus rs, rz. The ADD itself
  lowers to no step.
- ``f32_instance_norm_nhwc_add_qu8_fp32out``: the same with the ADD's float output (a "mixed"
  add: uint8 residual, float readers): ``o = clamp(norm(x) + rs * (r - rz), lo, hi)``.

A node is quantized when one of its tensors carries quant params (``qconv.is_quantized``); the
float lowerings keep every other INSTANCE_NORM and ADD.
"""
from __future__ import annotations

import numpy as np

import mobile_engine.planning.families.elementwise  # noqa: F401  (float lowerings, wrapped)
import mobile_engine.planning.families.norm  # noqa: F401
from kernels import f32_norm_qu8 as knq
from kernels.config import PARALLEL_MIN_WORK
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.quantize_int8 import fused_norm_input
from mobile_engine.planning.families.elementwise import activation, operands, readonly
from mobile_engine.planning.families.qconv import (clamp_range, is_quantized, per_tensor,
                                                   quantized_dispatch)
from mobile_engine.planning.step import LOWERINGS, Step, binds, lowers, runtime_inputs

F32 = np.float32
try:
    from kernels import qu8_elementwise as qew
    QUANTIZE_ID = qew.QUANTIZE_ID
except ImportError:             # NOTE: optional; QUANTIZE then runs kernels/f32_norm_qu8.py's loop
    qew, QUANTIZE_ID = None, "qu8_quantize"
NORM_QU8 = "f32_instance_norm_nhwc_qu8"
NORM_ADD_QU8 = "f32_instance_norm_nhwc_add_qu8"
NORM_ADD_F32 = "f32_instance_norm_nhwc_add_qu8_fp32out"


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def _fused_add(norm: Node, graph: Graph) -> Node | None:
    """The quantized ADD (uint8 output, or float output with a uint8 other input) that
    ``norm`` (float output) is fused into, or None."""
    out = norm.outputs[0]
    add = graph.single_consumer(out)
    if add is None or add.op is not Op.ADD or graph.tensors[out].quant is not None \
            or fused_norm_input(graph, add) != out or not is_quantized(add, graph):
        return None
    return add


def _f32_input(node: Node, graph: Graph) -> str:
    x = graph.tensors[node.inputs[0]]
    if x.dtype is not DType.FLOAT32 or x.quant is not None or len(x.shape) != 4 or x.is_const:
        raise _fail(node, f"input {x.name!r} is {x.dtype.value} {x.shape}; the norm kernel "
                          f"reads a float32 NHWC runtime tensor")
    return x.name


def _norm_params(node: Node, graph: Graph, x: str) -> tuple[list[str], dict, dict]:
    names, consts = runtime_inputs(node, graph)
    for name in names[1:]:
        if graph.tensors[name].dtype is not DType.FLOAT32:
            raise _fail(node, f"scale/bias {name!r} must be float32")
    act, p0, p1 = activation(node)
    inplace = graph.single_consumer(x) is node and x not in graph.inputs
    params = {"epsilon": float(node.attrs["epsilon"]), "act": act, "p0": p0, "p1": p1,
              "inplace": bool(inplace)}
    return names, {k: np.ascontiguousarray(v, F32) for k, v in consts.items()}, params


def lower_qinstance_norm(node: Node, graph: Graph) -> list[Step]:
    if node.attrs.get("layout", "nhwc") != "nhwc":
        raise _fail(node, "the uint8-output norm kernels are NHWC only")
    x = _f32_input(node, graph)
    out = graph.tensors[node.outputs[0]]
    names, weights, params = _norm_params(node, graph, x)
    flops = 8 * int(np.prod(out.shape, dtype=np.int64))
    if out.quant is None:
        add = _fused_add(node, graph)
        if add is None:
            raise _fail(node, f"float output {out.name!r} with a quantized input: no kernel")
        y = graph.tensors[add.outputs[0]]
        r = [i for i in add.inputs if i != out.name][0]
        rq = per_tensor(add, graph, r)
        if graph.tensors[r].shape != out.shape or y.shape != out.shape:
            raise _fail(add, f"residual {graph.tensors[r].shape} / output {y.shape} must match "
                             f"the norm's {out.shape}")
        if y.quant is None:
            act = Activation(add.attrs["activation"])
            if act not in (Activation.NONE, Activation.RELU, Activation.CLAMP):
                raise _fail(add, f"activation {act.name} after a fused norm + add")
            lo, hi = (0.0, float("inf")) if act is Activation.RELU else (
                tuple(float(v) for v in add.attrs["act_params"]) if act is Activation.CLAMP
                else (float("-inf"), float("inf")))
            params.update(rs=float(rq.scale[0]), rz=int(rq.zero_point[0]), lo=lo, hi=hi)
            return [Step(node.name, NORM_ADD_F32, names + [r], [y.name], params, weights,
                         flops + 3 * int(np.prod(out.shape, dtype=np.int64)))]
        yq = per_tensor(add, graph, y.name)
        try:
            qmin, qmax = clamp_range(Activation(add.attrs["activation"]),
                                     add.attrs["act_params"], yq.scale[0], yq.zero_point[0])
        except ValueError as exc:
            raise _fail(add, str(exc)) from None
        params.update(s=float(yq.scale[0]), z=int(yq.zero_point[0]), qmin=qmin, qmax=qmax,
                      rs=float(rq.scale[0]), rz=int(rq.zero_point[0]))
        return [Step(node.name, NORM_ADD_QU8, names + [r], [y.name], params, weights,
                     flops + 3 * int(np.prod(out.shape, dtype=np.int64)))]
    yq = per_tensor(node, graph, out.name)
    params.update(s=float(yq.scale[0]), z=int(yq.zero_point[0]), qmin=0, qmax=255)
    return [Step(node.name, NORM_QU8, names, [out.name], params, weights, flops)]


def _is_fused_norm(node: Node, graph: Graph) -> bool:
    return node.op is Op.INSTANCE_NORM and _fused_add(node, graph) is not None


def lower_qadd(node: Node, graph: Graph) -> list[Step]:
    fused = fused_norm_input(graph, node)
    if fused is not None and _is_fused_norm(graph.producer(fused), graph):
        return []                               # computed by the norm's step
    if qew is None:
        raise _fail(node, "the qu8 element-wise kernels are unavailable")
    (a, b), y = node.inputs, graph.tensors[node.outputs[0]]
    aq, bq, yq = (per_tensor(node, graph, n) for n in (a, b, y.name))
    if not graph.tensors[a].shape == graph.tensors[b].shape == y.shape:
        raise _fail(node, f"shapes {graph.tensors[a].shape} + {graph.tensors[b].shape} -> "
                          f"{y.shape}: the uint8 add takes same-shape operands")
    try:
        qmin, qmax = clamp_range(Activation(node.attrs["activation"]), node.attrs["act_params"],
                                 yq.scale[0], yq.zero_point[0])
    except ValueError as exc:
        raise _fail(node, str(exc)) from None
    ma, mb = qew.add_multipliers(aq.scale[0], bq.scale[0], yq.scale[0])
    params = {"za": int(aq.zero_point[0]), "zb": int(bq.zero_point[0]), "ma": float(ma),
              "mb": float(mb), "zy": int(yq.zero_point[0]), "qmin": qmin, "qmax": qmax}
    return [Step(node.name, qew.ADD_ID, [a, b], [y.name], params,
                 flops=3 * int(np.prod(y.shape, dtype=np.int64)))]


_float_norm = LOWERINGS[Op.INSTANCE_NORM]


def _lower_norm_dispatch(node: Node, graph: Graph) -> list[Step]:
    if is_quantized(node, graph) or _is_fused_norm(node, graph):
        return lower_qinstance_norm(node, graph)
    return _float_norm(node, graph)


LOWERINGS[Op.INSTANCE_NORM] = _lower_norm_dispatch
quantized_dispatch(Op.ADD, lower_qadd)


@lowers(Op.QUANTIZE)
def lower_quantize(node: Node, graph: Graph) -> list[Step]:
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if x.is_const:
        raise _fail(node, f"input {x.name!r} is a constant; fold the node first")
    if x.dtype is not DType.FLOAT32:
        raise _fail(node, f"input {x.name!r} is {x.dtype.value}; expected float32")
    q = per_tensor(node, graph, y.name)
    return [Step(node.name, QUANTIZE_ID, [x.name], [y.name],
                 {"s": float(q.scale[0]), "z": int(q.zero_point[0])},
                 flops=2 * int(np.prod(x.shape, dtype=np.int64)))]


@lowers(Op.DEQUANTIZE)
def lower_dequantize(node: Node, graph: Graph) -> list[Step]:
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if not x.is_const:
        if qew is None:
            raise _fail(node, "the qu8 element-wise kernels are unavailable")
        q = per_tensor(node, graph, x.name)
        return [Step(node.name, qew.DEQUANTIZE_ID, [x.name], [y.name],
                     {"s": float(q.scale[0]), "z": int(q.zero_point[0])},
                     flops=2 * int(np.prod(x.shape, dtype=np.int64)))]
    if x.dtype is not DType.INT8:
        raise _fail(node, f"constant input {x.name!r} is {x.dtype.value}; expected int8")
    q = x.quant
    shape = [1] * len(x.shape)
    if q.axis is not None:
        shape[q.axis] = -1
    scale = np.asarray(q.scale, F32).reshape(shape)
    weights = {"q": np.ascontiguousarray(x.data), "scale": scale}
    if any(q.zero_point):                          # symmetric weights (the rule) store none
        weights["zero"] = np.asarray(q.zero_point, np.int32).reshape(shape)
    return [Step(node.name, "qs8_dequantize_const", [], [y.name], {}, weights,
                 flops=2 * x.data.size)]


# --- binders -------------------------------------------------------------------------------
@binds("qs8_dequantize_const")
def bind_dequantize_const(params, weights, inputs, outputs):
    """The float values are computed once here; each run copies them into the arena."""
    (y,) = outputs
    q, scale = weights["q"], weights["scale"]
    zero = weights.get("zero", np.zeros((1,) * q.ndim, np.int32))
    if q.dtype != np.int8 or q.shape != y.shape or y.dtype != F32:
        raise ValueError(f"dequantize {q.dtype} {q.shape} -> {y.dtype} {y.shape}")
    values = (q.astype(np.int32) - zero).astype(F32) * scale
    return np.copyto, (y, values)



@binds(QUANTIZE_ID)
def bind_quantize(params, weights, inputs, outputs):
    (x,), (y,) = inputs, outputs
    if x.dtype != F32 or y.dtype != np.uint8 or x.size != y.size:
        raise ValueError(f"quantize {x.dtype} {x.shape} -> {y.dtype} {y.shape}")
    if qew is None:                      # NOTE: the same contract, from the norm's module
        fn = knq.quantize_kernel(x.size >= PARALLEL_MIN_WORK, False)
        flat = y.reshape(-1)
        return fn, (readonly(x).reshape(-1), flat, flat, F32(1.0 / params["s"]),
                    F32(params["z"]), F32(1), np.int32(0), F32(0), F32(255))
    return qew.kernel(QUANTIZE_ID, x.size >= PARALLEL_MIN_WORK), (
        readonly(x).reshape(-1), y.reshape(-1), F32(1.0 / params["s"]), int(params["z"]))


def bind_dequantize(params, weights, inputs, outputs):
    (q,), (y,) = inputs, outputs
    if q.dtype != np.uint8 or y.dtype != F32 or q.size != y.size:
        raise ValueError(f"dequantize {q.dtype} {q.shape} -> {y.dtype} {y.shape}")
    return qew.kernel(qew.DEQUANTIZE_ID, y.size >= PARALLEL_MIN_WORK), (
        readonly(q).reshape(-1), y.reshape(-1), F32(params["s"]), int(params["z"]))


def bind_add(params, weights, inputs, outputs):
    (a, b), (y,) = inputs, outputs
    if not (a.dtype == b.dtype == y.dtype == np.uint8 and a.size == b.size == y.size):
        raise ValueError(f"uint8 add {a.dtype} {a.shape} + {b.dtype} {b.shape} -> {y.dtype} "
                         f"{y.shape}")
    return qew.kernel(qew.ADD_ID, y.size >= PARALLEL_MIN_WORK), (
        readonly(a).reshape(-1), readonly(b).reshape(-1), y.reshape(-1), int(params["za"]),
        int(params["zb"]), F32(params["ma"]), F32(params["mb"]), int(params["zy"]),
        int(params["qmin"]), int(params["qmax"]))


if qew is not None:
    binds(qew.DEQUANTIZE_ID)(bind_dequantize)
    binds(qew.ADD_ID)(bind_add)


def _bind_norm(fused: bool):
    def bind(params, weights, inputs, outputs):
        x, scale, bias = operands(weights, inputs, 3)
        out = outputs[0]
        r = inputs[-1] if fused else None
        if x.dtype != F32 or out.dtype != np.uint8 or out.shape != x.shape \
                or (r is not None and (r.dtype != np.uint8 or r.shape != x.shape)):
            raise ValueError(f"instance norm {x.dtype} {x.shape} -> {out.dtype} {out.shape}"
                             + (f" with residual {r.dtype} {r.shape}" if r is not None else ""))
        c = x.shape[3]
        for what, t in (("scale", scale), ("bias", bias)):
            if t.size not in (c, x.shape[0] * c):
                raise ValueError(f"instance norm {what} {t.shape} does not fit input {x.shape}")
        act, act_params = int(params["act"]), (params["p0"], params["p1"])
        # the two-pass kernel reads x only; the fallback (other activations) overwrites it
        keep_x = params["inplace"] or knq.fusable(act, act_params)
        work = x if keep_x else np.empty(x.shape, F32)          # NOTE: once, at bind time
        fn, args = knq.instance_norm_qu8_call(
            work, readonly(scale), readonly(bias), out, params["epsilon"], act, act_params,
            params["s"], params["z"], params["qmin"], params["qmax"], r,
            params.get("rs", 1.0), params.get("rz", 0))
        if keep_x:
            return fn, args

        def run():
            np.copyto(work, x)
            fn(*args)
        return run, ()
    return bind


binds(NORM_QU8)(_bind_norm(False))
binds(NORM_ADD_QU8)(_bind_norm(True))


@binds(NORM_ADD_F32)
def bind_norm_add_f32(params, weights, inputs, outputs):
    x, scale, bias = operands(weights, inputs, 3)
    r, out = inputs[-1], outputs[0]
    if x.dtype != F32 or out.dtype != F32 or r.dtype != np.uint8 \
            or not x.shape == r.shape == out.shape:
        raise ValueError(f"norm + add {x.dtype} {x.shape} + {r.dtype} {r.shape} -> "
                         f"{out.dtype} {out.shape}")
    work = x if params["inplace"] else np.empty(x.shape, F32)      # NOTE: once, at bind time
    fn, args = knq.instance_norm_add_f32_call(
        work, readonly(scale), readonly(bias), out, params["epsilon"], int(params["act"]),
        (params["p0"], params["p1"]), r, params["rs"], params["rz"], params["lo"], params["hi"])
    if params["inplace"]:
        return fn, args

    def run():
        np.copyto(work, x)
        fn(*args)
    return run, ()
