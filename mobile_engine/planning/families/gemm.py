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
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning import validate as v
from mobile_engine.planning.families.elementwise import EPILOGUES, activation, noop, readonly
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
    a = weights["a"] if "a" in weights else v.operand(runtime, "A")
    b = None if "bp" in weights else v.operand(runtime, "B")
    has_c = v.flag(params, "has_c")
    c = (weights["c"] if "c" in weights else v.operand(runtime, "C")) if has_c else None
    out = outputs[0]
    m, n, k = (v.integer(params, x) for x in ("m", "n", "k"))
    nr = v.choice(params, "nr", kg.NR_CHOICES)
    sam, sak, sbk, sbn, scm, scn = (v.integer(params, x)
                                    for x in ("sam", "sak", "sbk", "sbn", "scm", "scn"))
    act = v.integer(params, "act", 0, max(Activation))
    alpha, beta, p0, p1 = (v.number(params, x) for x in ("alpha", "beta", "p0", "p1"))
    batch_a, batch_b = tuple(v.integers(params, "batch_a")), tuple(v.integers(params, "batch_b"))
    for what, x in (("A", a), ("B", b), ("C", c), ("the output", out)):
        if x is not None:
            v.array(what, x, np.float32)
    try:
        batch = v.prod(np.broadcast_shapes(batch_a, batch_b))
    except ValueError:
        raise v.fail(f"batch shapes {list(batch_a)} and {list(batch_b)} do not "
                     f"broadcast") from None
    nbatch_a, nbatch_b = v.prod(batch_a), v.prod(batch_b)
    if a.size != nbatch_a * m * k or out.size != batch * m * n:
        raise v.fail(f"GEMM {m}x{k}x{n} (batches {list(batch_a)}, {list(batch_b)}) does not "
                     f"fit A {list(a.shape)} / output {list(out.shape)}")
    if out.size == 0:
        return noop, ()
    # every index the kernel forms: A rows through (sam, sak) from each batch's offset, C
    # through (scm, scn), B packed [nb, K, nr] per batch (or read through (sbk, sbn) to pack)
    v.walk_inside(f"A (sam={sam}, sak={sak})", 0, (nbatch_a, m, k), (m * k, sam, sak), a.size)
    if c is not None:
        v.walk_inside(f"C (scm={scm}, scn={scn})", 0, (m, n), (scm, scn), c.size)
    nb_size = kg.packed_size(k, n, nr)
    a_offs, b_offs = kg.batch_offsets(batch_a, batch_b, m * k, nb_size)
    if b is None:
        bp = readonly(v.array("packed B", weights["bp"], np.float32))
        if bp.size != nbatch_b * nb_size:
            raise v.fail(f"packed B has {bp.size} values, expected {nbatch_b * nb_size} "
                         f"({nbatch_b} x [{-(-n // nr)}, {k}, {nr}])")
        return kg.gemm_call(readonly(a), a_offs, sam, sak, bp, b_offs,
                            None if c is None else readonly(c), scm, scn, beta, out, m, n, k,
                            alpha, nr, act, (p0, p1))
    v.require(b.size == nbatch_b * k * n, f"B has shape {list(b.shape)}; the plan needs "
                                          f"{nbatch_b} x {k}x{n}")
    v.walk_inside(f"B (sbk={sbk}, sbn={sbn})", 0, (nbatch_b, k, n), (k * n, sbk, sbn), b.size)
    bp = np.empty(nbatch_b * nb_size, np.float32)            # scratch, packed on every run
    b_bases = np.arange(nbatch_b, dtype=np.int64) * k * n
    fn, args = kg.gemm_call(readonly(a), a_offs, sam, sak, readonly(bp), b_offs,
                            None if c is None else readonly(c), scm, scn, beta, out, m, n, k,
                            alpha, nr, act, (p0, p1))
    pack, b_flat = kg.pack_b_rt, readonly(b).reshape(-1)

    def run():
        pack(b_flat, b_bases, sbk, sbn, k, n, nr, bp)
        fn(*args)
    return run, ()


def _matmul_shape(a: tuple, b: tuple) -> tuple:
    """numpy.matmul's output shape, or a BindError."""
    if not a or not b:
        raise v.fail(f"matmul of a scalar ({list(a)} @ {list(b)})")
    sa = (1,) + a if len(a) == 1 else a
    sb = b + (1,) if len(b) == 1 else b
    if sa[-1] != sb[-2]:
        raise v.fail(f"inner dimensions differ: {list(a)} @ {list(b)}")
    try:
        batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise v.fail(f"batch dimensions do not broadcast: {list(a)} @ {list(b)}") from None
    shape = batch + (sa[-2], sb[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


@binds("np_matmul")
def bind_np_matmul(params, weights, inputs, outputs):
    runtime = iter(inputs)
    a = weights["in0"] if "in0" in weights else v.operand(runtime, "A")
    b = weights["in1"] if "in1" in weights else v.operand(runtime, "B")
    out = outputs[0]
    for what, x in (("A", a), ("B", b), ("the output", out)):
        v.array(what, x)
    shape = _matmul_shape(a.shape, b.shape)
    v.require(shape == out.shape, f"{list(a.shape)} @ {list(b.shape)} is {list(shape)}, the "
                                  f"output is {list(out.shape)}")

    def make(a, b, out):
        return lambda: np.matmul(a, b, out=out, casting="unsafe")
    v.probe(make, a, b, out)
    return make(a, b, out), ()
