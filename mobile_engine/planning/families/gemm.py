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
from mobile_engine.planning.families.elementwise import EPILOGUES, activation, readonly
from mobile_engine.planning.step import Step, binds, lowers

F32 = np.dtype(np.float32)


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def _kernel(op: str, nr: int, runtime_b: bool, act: int) -> str:
    return f"f32_{op}_{kg.MR}x{nr}{'_packb' if runtime_b else ''}{EPILOGUES[act]}"


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
    return [Step(node.name, _kernel("gemm", nr, b_const is None, act), inputs,
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
    return [Step(node.name, _kernel("matmul", nr, runtime_b, act), inputs, list(node.outputs),
                 params, weights, flops)]


@binds(*(_kernel(op, nr, rt, act) for op in ("gemm", "matmul") for nr in kg.NR_CHOICES
         for rt in (False, True) for act in EPILOGUES))
def bind_gemm(params, weights, inputs, outputs):
    runtime = iter(inputs)
    a = weights["a"] if "a" in weights else next(runtime)
    b = None if "bp" in weights else next(runtime)
    c = (weights["c"] if "c" in weights else next(runtime)) if params["has_c"] else None
    out = outputs[0]
    m, n, k, nr = (int(params[x]) for x in ("m", "n", "k", "nr"))
    batch_a, batch_b = tuple(params["batch_a"]), tuple(params["batch_b"])
    nb_size = kg.packed_size(k, n, nr)
    a_offs, b_offs = kg.batch_offsets(batch_a, batch_b, m * k, nb_size)
    if a.size != int(np.prod(batch_a, dtype=np.int64)) * m * k or \
            out.size != a_offs.shape[0] * m * n:
        raise ValueError(f"GEMM {m}x{k}x{n} (batches {batch_a}, {batch_b}) does not fit "
                         f"A {a.shape} / output {out.shape}")
    if b is None:
        bp = readonly(weights["bp"])
        if bp.size != int(np.prod(batch_b, dtype=np.int64)) * nb_size:
            raise ValueError(f"packed B has {bp.size} values, expected "
                             f"{int(np.prod(batch_b, dtype=np.int64)) * nb_size}")
        return kg.gemm_call(readonly(a), a_offs, params["sam"], params["sak"], bp, b_offs,
                            None if c is None else readonly(c), params["scm"], params["scn"],
                            params["beta"], out, m, n, k, params["alpha"], nr, params["act"],
                            (params["p0"], params["p1"]))
    nbatch_b = int(np.prod(batch_b, dtype=np.int64))
    bp = np.empty(nbatch_b * nb_size, np.float32)            # scratch, packed on every run
    b_bases = np.arange(nbatch_b, dtype=np.int64) * k * n
    fn, args = kg.gemm_call(readonly(a), a_offs, params["sam"], params["sak"], readonly(bp),
                            b_offs, None if c is None else readonly(c), params["scm"],
                            params["scn"], params["beta"], out, m, n, k, params["alpha"], nr,
                            params["act"], (params["p0"], params["p1"]))
    pack, b_flat, sbk, sbn = kg.pack_b_rt, readonly(b).reshape(-1), params["sbk"], params["sbn"]

    def run():
        pack(b_flat, b_bases, sbk, sbn, k, n, nr, bp)
        fn(*args)
    return run, ()


@binds("np_matmul")
def bind_np_matmul(params, weights, inputs, outputs):
    runtime = iter(inputs)
    a = weights["in0"] if "in0" in weights else next(runtime)
    b = weights["in1"] if "in1" in weights else next(runtime)
    out = outputs[0]
    return (lambda: np.matmul(a, b, out=out, casting="unsafe")), ()
