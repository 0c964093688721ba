"""Element-wise family: unary maps, binary ops (numpy broadcasting, fused activation), PReLU.

Lowering (compile time) decides the kernel and the broadcast walk (``broadcast_plan``: merged
axes and strides), keeps constant operands as weights ``in<i>``, and records the activation
as ints/floats. Binding (load time) checks the params, weights and views against the kernel
(``runtime/validate.py``: an edited plan must not send a kernel out of bounds), reshapes the
arena views to flat views and picks the serial or parallel variant; nothing is decided per run.

Kernel ids:

- ``f32_v<op>`` unary float32 maps, e.g. ``f32_vrelu``, ``f32_vhard_swish``, ``f32_vsqrt``
- ``f32_vbinary_<op>[_scalar|_rows|_bcast][_<epilogue>]``: ``<op>`` in add, sub, mul, div,
  pow, prelu; no suffix = same shapes, ``_scalar`` = one side a single value, ``_rows`` = two
  merged axes (NHWC + per-channel vector), ``_bcast`` = general strided broadcast; the
  epilogue names the fused activation (``_relu``, ``_minmax``, ``_lrelu``, ``_sigmoid``, ...)
- ``np_unary_<op>`` / ``np_binary_<op>``: other dtypes (int64/int32/bool/mixed), numpy ufuncs
  writing into the output view with ``out=`` (no allocation)
"""
from __future__ import annotations

import numpy as np

from kernels import f32_elementwise as kew
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import BINARY, UNARY, Activation, Op
from mobile_engine.planning.step import Step, lowers, runtime_inputs

F32 = np.dtype(np.float32)
EPILOGUES = kew.EPILOGUES


def _dtype(graph: Graph, name: str) -> np.dtype:
    return graph.tensors[name].dtype.np


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def activation(node: Node) -> tuple[int, float, float]:
    kind = Activation(node.attrs.get("activation", Activation.NONE))
    p0, p1 = kew.act_params(kind, node.attrs.get("act_params", ()))
    return int(kind), p0, p1


# --------------------------------------------------------------------------------------------
# Unary
@lowers(*UNARY)
def lower_unary(node: Node, graph: Graph) -> list[Step]:
    names, consts = runtime_inputs(node, graph)
    a = node.attrs
    p0, p1 = {Op.CLIP: (a.get("min", -np.inf), a.get("max", np.inf)),
              Op.LEAKY_RELU: (a.get("alpha", 0.01), 0.0),
              Op.HARD_SIGMOID: (a.get("alpha", 0.2), a.get("beta", 0.5))}.get(node.op, (0.0, 0.0))
    x = node.inputs[0]
    size = int(np.prod(graph.tensors[x].shape, dtype=np.int64))
    params = {"code": kew.UNARY_CODES[node.op.value], "p0": float(p0), "p1": float(p1)}
    if _dtype(graph, x) == F32:
        kernel = f"f32_v{node.op.value}"
    else:
        if node.op not in (Op.RELU, Op.CLIP, Op.NEG, Op.SQRT, Op.EXP, Op.RECIPROCAL):
            raise _fail(node, f"{node.op.name} on {_dtype(graph, x)} has no kernel")
        kernel = f"np_unary_{node.op.value}"
    return [Step(node.name, kernel, names, list(node.outputs), params, consts, flops=size)]


# --------------------------------------------------------------------------------------------
# Binary and PReLU
def _pattern(plan: dict) -> str:
    if plan["kind"] == "flat":
        return "" if plan["a_strides"] == plan["b_strides"] == [1] else "_scalar"
    return "_rows" if plan["kind"] == "rows" else "_bcast"


@lowers(*BINARY, Op.PRELU)
def lower_binary(node: Node, graph: Graph) -> list[Step]:
    names, consts = runtime_inputs(node, graph)
    a_name, b_name = node.inputs[0], node.inputs[1]
    out_t = graph.tensors[node.outputs[0]]
    act, p0, p1 = activation(node)
    name = node.op.value
    params = {"op": kew.BINARY_CODES[name], "act": act, "p0": p0, "p1": p1}
    flops = int(np.prod(out_t.shape, dtype=np.int64))
    dtypes = {_dtype(graph, a_name), _dtype(graph, b_name), out_t.dtype.np}
    if dtypes == {F32}:
        a_shape, b_shape = graph.tensors[a_name].shape, graph.tensors[b_name].shape
        try:
            plan = kew.broadcast_plan(a_shape, b_shape)
        except ValueError as exc:
            raise _fail(node, str(exc)) from None
        params.update(plan)
        consts = {k: np.ascontiguousarray(v, np.float32) for k, v in consts.items()}
        kernel = f"f32_vbinary_{name}{_pattern(plan)}{EPILOGUES[Activation(act)]}"
    else:
        if node.op is Op.PRELU:
            raise _fail(node, f"PRELU on {sorted(map(str, dtypes))} has no kernel")
        if act not in (Activation.NONE, Activation.RELU, Activation.CLAMP) and \
                out_t.dtype.np != F32:
            raise _fail(node, f"activation {Activation(act).name} on {out_t.dtype.np} "
                              f"has no kernel")
        kernel = f"np_binary_{name}"
    return [Step(node.name, kernel, names, list(node.outputs), params, consts, flops=flops)]
