"""GEMM / MATMUL family: one register-tiled batched GEMM kernel (kernels/f32_gemm.py).

Kernel ids ``f32_{gemm,matmul}_4x{16,32}[_packb][_<epilogue>]``: ``_packb`` when B is a run-time
tensor (packed into a binder-owned scratch on every run); otherwise B is packed at compile time
(weight ``bp``, transposed as needed). A is read in place (``trans_a`` through strides);
GEMM's constant C is stored as ``beta * C`` (weight ``c``), a run-time C is scaled in the
epilogue. ``np_matmul`` serves integer MatMul (``numpy.matmul(..., out=)``).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_gemm as kg
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families.elementwise import activation
from mobile_engine.planning.step import Step, lowers

F32 = np.dtype(np.float32)


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


@lowers(Op.GEMM)
def lower_gemm(node: Node, graph: Graph) -> list[Step]:
    a_name, b_name = node.inputs[0], node.inputs[1]
    c_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    for name in (a_name, b_name, c_name):
        if name and graph.tensors[name].dtype.np != F32:
            raise _fail(node, f"input {name!r} is {graph.tensors[name].dtype.value}; only "
                              f"float32 has a kernel")
    at = node.attrs
    a_shape, b_shape = graph.tensors[a_name].shape, graph.tensors[b_name].shape
    m, k = a_shape[::-1] if at["trans_a"] else a_shape
    n = b_shape[0] if at["trans_b"] else b_shape[1]
    nr = kg.choose_nr(n)
    act, p0, p1 = activation(node)
    params = {"m": m, "n": n, "k": k, "nr": nr, "alpha": float(at["alpha"]),
              "beta": float(at["beta"]), "sam": 1 if at["trans_a"] else k,
              "sak": m if at["trans_a"] else 1, "sbk": 1 if at["trans_b"] else n,
              "sbn": k if at["trans_b"] else 1, "act": act, "p0": p0, "p1": p1,
              "has_c": c_name is not None, "scm": 0, "scn": 0, "batch_a": [], "batch_b": []}
    inputs, weights = [], {}
    a_const = graph.const(a_name)
    if a_const is not None:
        weights["a"] = np.ascontiguousarray(a_const, np.float32)
    else:
        inputs.append(a_name)
    b_const = graph.const(b_name)
    if b_const is not None:
        weights["bp"] = kg.pack_b(b_const.T if at["trans_b"] else b_const, nr)
    else:
        inputs.append(b_name)
    if c_name is not None:
        params["scm"], params["scn"] = kg.bias_strides(graph.tensors[c_name].shape, m, n)
        c_const = graph.const(c_name)
        if c_const is not None:
            weights["c"] = np.ascontiguousarray(c_const.astype(np.float64) * params["beta"],
                                                np.float32)
            params["beta"] = 1.0
        else:
            inputs.append(c_name)
    return [Step(node.name, kg.kernel_id("gemm", nr, b_const is None, act), inputs,
                 list(node.outputs), params, weights, flops=2 * m * n * k)]


@lowers(Op.MATMUL)
def lower_matmul(node: Node, graph: Graph) -> list[Step]:
    a_name, b_name = node.inputs
    a_t, b_t = graph.tensors[a_name], graph.tensors[b_name]
    out_t = graph.tensors[node.outputs[0]]
    act, p0, p1 = activation(node)
    a_shape = (1,) + a_t.shape if len(a_t.shape) == 1 else a_t.shape
    b_shape = b_t.shape + (1,) if len(b_t.shape) == 1 else b_t.shape
    m, k = a_shape[-2:]
    n = b_shape[-1]
    flops = 2 * int(np.prod(out_t.shape, dtype=np.int64)) * k
    inputs, weights = [], {}
    for i, name in enumerate((a_name, b_name)):
        data = graph.const(name)
        if data is not None:
            weights[f"in{i}"] = np.ascontiguousarray(data)
        else:
            inputs.append(name)
    if {a_t.dtype.np, b_t.dtype.np, out_t.dtype.np} != {F32}:
        if act:
            raise _fail(node, f"fused activation on {out_t.dtype.value} MatMul")
        return [Step(node.name, "np_matmul", inputs, list(node.outputs), {}, weights, flops)]
    nr = kg.choose_nr(n)
    params = {"m": m, "n": n, "k": k, "nr": nr, "alpha": 1.0, "beta": 0.0, "sam": k, "sak": 1,
              "sbk": n, "sbn": 1, "act": act, "p0": p0, "p1": p1, "has_c": False, "scm": 0,
              "scn": 0, "batch_a": list(a_shape[:-2]), "batch_b": list(b_shape[:-2])}
    if "in0" in weights:
        weights["a"] = np.ascontiguousarray(weights.pop("in0"), np.float32)
    runtime_b = "in1" not in weights
    if not runtime_b:
        weights["bp"] = kg.pack_b(weights.pop("in1").reshape(b_shape).astype(np.float32), nr)
    return [Step(node.name, kg.kernel_id("matmul", nr, runtime_b, act), inputs, list(node.outputs),
                 params, weights, flops)]
