"""Quantized element-wise work: QUANTIZE, instance norm with a uint8 output, the residual add.

Kernel ids and step contracts:

- ``qu8_quantize``: QUANTIZE f32 -> u8, ``q = clamp(rint(x * f32(1 / s)) + z, 0, 255)``
  (kernels/qu8_elementwise.py). inputs [x], outputs [q]; params s, z.
- ``qu8_dequantize``: DEQUANTIZE of a run-time uint8 tensor, ``x = f32(q - z) * s``; params s, z.
  ``qs8_dequantize_const``: DEQUANTIZE of an int8 constant (per-axis scales; weight ``q``,
  ``scale``, ``zero`` when not symmetric): computed once at bind time, copied on each run.
- ``int8_recode``: INT8_RECODE, int8 <-> uint8 at the graph's edges (int8 inputs and outputs):
  ``out = x ^ 0x80`` on the bytes, which is ``q + 128`` or ``q - 128``; inputs [x], outputs
  [out], no params. The two tensors' scales are equal and zero points 128 apart.
- ``qu8_add_requant``: ADD of two uint8 tensors into uint8, ``y = clamp(rint(f32(a - za) * ma
  + f32(b - zb) * mb) + zy, qmin, qmax)``, ``ma = f32(sa / sy)``; params za, zb, ma, mb, zy,
  qmin, qmax (the activation folded).
- ``f32_instance_norm_nhwc_qu8``: INSTANCE_NORM reading float32 (a conv's exact accumulators)
  and writing uint8 (kernels/f32_norm_qu8.py: two passes, statistics then normalise +
  quantize). inputs [x, run-time scale/bias or style vectors]; params ``inputs`` tags them
  ("scale", "bias": tensors; "style_scale", "style_bias": the style vector u whose product with
  weight ``style_scale``/``style_bias`` = G gives it, or ``..._q`` (int8 G), ``..._scale``
  [, ``..._zero``] when G was a DEQUANTIZE, expanded at bind time; ``passes/fusions/
  style_chain.py`` records [u, G] and puts the chain's nodes into the norm's step); weights
  ``scale``/``bias`` when constant (plans
  without ``inputs`` kept them as ``in1``/``in2``); params epsilon, act, p0, p1 (the norm's
  activation, in float), s, z, qmin, qmax (output), inplace (the float norm may overwrite x:
  nothing else reads it; otherwise the binder allocates a scratch once). Usually computed
  inside its conv's step instead (families/qconv_norm.py).
- ``f32_instance_norm_nhwc_add_qu8``: an INSTANCE_NORM that absorbed the uint8 ADD reading it
  (``passes/fusions/int8_norm_add.py``, record "add"), as one step writing the ADD's output:
  ``q = clamp(rint((norm(x) + rs * (r - rz)) / s) + z, qmin, qmax)``, the add's activation in
  the clamp. inputs [x, runtime scale/bias, r]; params as above plus rs, rz.
- ``f32_instance_norm_nhwc_add_qu8_fp32out``: the same with the ADD's float output (a "mixed"
  add: uint8 residual, float readers): ``o = clamp(norm(x) + rs * (r - rz), lo, hi)``.

These are the int8 table's lowerings of ADD and INSTANCE_NORM (``planning/step.py``: a node
lowers with them when one of its step's tensors carries quant params).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_norm_qu8 as knq
from kernels import qu8_elementwise as qew
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning.families.elementwise import activation
from mobile_engine.planning.families.qconv import clamp_range, per_tensor
from mobile_engine.planning.step import Step, lowers, lowers_int8

F32 = np.float32
QUANTIZE_ID = qew.QUANTIZE_ID
NORM_QU8, NORM_ADD_QU8, NORM_ADD_F32 = knq.NORM_QU8, knq.NORM_ADD_QU8, knq.NORM_ADD_F32


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def _f32_input(node: Node, graph: Graph) -> str:
    x = graph.tensors[node.inputs[0]]
    if x.dtype is not DType.FLOAT32 or x.quant is not None or len(x.shape) != 4 or x.is_const:
        raise _fail(node, f"input {x.name!r} is {x.dtype.value} {x.shape}; the norm kernel "
                          f"reads a float32 NHWC runtime tensor")
    return x.name


# --- style-computed scale and bias ---------------------------------------------------------
# NOTE: multistyle26 computes every norm's scale and bias as REDUCE_SUM(MUL(u[K, 1], G[K, C]),
# axis 0) from the style vector u; the int8 rewrite stores G as int8 behind a DEQUANTIZE. As
# the float family does (families/norm.py ``style_source``), a norm lowered here takes u and G
# (dequantized at compile time, the float32 values the DEQUANTIZE step would write) and its
# kernel computes ``u @ G`` (f32_norm ``style_matvec``) first: the DEQUANTIZE, MUL and
# REDUCE_SUM steps (~100 tiny steps in multistyle26) lower to nothing.
def _style_matrix(graph: Graph, name: str) -> dict[str, np.ndarray] | None:
    """The weights holding G = ``name``: {"": f32 G} for a constant; for the output of a
    DEQUANTIZE of an int8 constant read by nothing else, the int8 values themselves (a quarter
    of the plan bytes): {"_q": i8 G, "_scale": f32 per axis, "_zero": i32 when not symmetric},
    dequantized once at bind time as the DEQUANTIZE step does (``style_matrix``); else None."""
    data = graph.const(name)
    if data is not None:
        return {"": np.ascontiguousarray(data, F32)}
    dq = graph.producer(name)
    if dq is None or dq.op is not Op.DEQUANTIZE or graph.is_output(name) or \
            len(graph.consumers(name)) != 1:
        return None
    src = graph.tensors[dq.inputs[0]]
    q = src.quant
    if not src.is_const or src.dtype is not DType.INT8 or q is None or len(src.shape) != 2:
        return None
    shape = [1, 1]
    if q.axis is not None:
        shape[q.axis] = -1
    out = {"_q": np.ascontiguousarray(src.data, np.int8),
           "_scale": np.ascontiguousarray(np.asarray(q.scale, F32).reshape(shape))}
    if any(q.zero_point):
        out["_zero"] = np.ascontiguousarray(np.asarray(q.zero_point, np.int32).reshape(shape))
    return out


def _norm_params(node: Node, graph: Graph, x: str) -> tuple[list[str], dict, dict]:
    """(run-time inputs after x, weights, params) of a norm step: scale and bias are weights
    ``scale``/``bias`` when constant, run-time inputs, or a style vector input with weight
    ``style_scale``/``style_bias`` = G (``style_source``); param ``inputs`` tags the run-time
    inputs after x."""
    names, tags, weights = [], [], {}
    for i, what in ((1, "scale"), (2, "bias")):
        src = fusion.fusion(node).get(f"style_{what}")        # [u, G]
        name = node.inputs[i] if i < len(node.inputs) else ""
        data = graph.const(name) if name else None
        if src is not None:
            names.append(src[0])
            tags.append(f"style_{what}")
            weights.update({f"style_{what}{k}": a
                            for k, a in _style_matrix(graph, src[1]).items()})
        elif data is not None:
            weights[what] = np.ascontiguousarray(data, F32)
        elif name and graph.tensors[name].dtype is DType.FLOAT32:
            names.append(name)
            tags.append(what)
        else:
            raise _fail(node, f"{what} {name!r} must be a float32 tensor")
    act, p0, p1 = activation(node)
    inplace = graph.single_consumer(x) is node and x not in graph.inputs
    params = {"epsilon": float(node.attrs["epsilon"]), "act": act, "p0": p0, "p1": p1,
              "inplace": bool(inplace), "inputs": tags}
    return names, weights, params


@lowers_int8(Op.INSTANCE_NORM)
def lower_qinstance_norm(node: Node, graph: Graph) -> list[Step]:
    if node.attrs.get("layout", "nhwc") != "nhwc":
        raise _fail(node, "the uint8-output norm kernels are NHWC only")
    x = _f32_input(node, graph)
    out = graph.tensors[node.outputs[0]]
    names, weights, params = _norm_params(node, graph, x)
    names = [x] + names
    flops = 8 * int(np.prod(out.shape, dtype=np.int64))
    if out.quant is None:
        add = graph.node(fusion.fusion(node)["add"]) if "add" in fusion.fusion(node) else None
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


@lowers_int8(Op.ADD)
def lower_qadd(node: Node, graph: Graph) -> list[Step]:
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


@lowers(Op.INT8_RECODE)
def lower_int8_recode(node: Node, graph: Graph) -> list[Step]:
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    if x.is_const:
        raise _fail(node, f"input {x.name!r} is a constant; fold the node first")
    (signed, unsigned) = (x, y) if x.dtype is DType.INT8 else (y, x)
    qs = per_tensor(node, graph, signed.name, DType.INT8)
    qu = per_tensor(node, graph, unsigned.name)
    if qs.scale != qu.scale or qu.zero_point[0] != qs.zero_point[0] + 128:
        raise _fail(node, f"int8 {signed.name!r} ({qs}) and uint8 {unsigned.name!r} ({qu}) "
                          f"must share the scale, with zero points 128 apart")
    return [Step(node.name, "int8_recode", [x.name], [y.name], {})]


