"""Gemm/MatMul binders (packed-B GEMM with epilogue, numpy matmul for other dtypes).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_gemm as kg
from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.elementwise import noop, readonly
from mobile_engine.runtime.binders.registry import binds


@binds(*table.ids("f32_gemm_{mr}x{nr}{packb}{epilogue}"),
       *table.ids("f32_matmul_{mr}x{nr}{packb}{epilogue}"))
def bind_gemm(params, weights, inputs, outputs, threads=None):
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
    act = v.activation(params)
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
                            alpha, nr, act, (p0, p1), threads=threads)
    v.require(b.size == nbatch_b * k * n, f"B has shape {list(b.shape)}; the plan needs "
                                          f"{nbatch_b} x {k}x{n}")
    v.walk_inside(f"B (sbk={sbk}, sbn={sbn})", 0, (nbatch_b, k, n), (k * n, sbk, sbn), b.size)
    bp = np.empty(nbatch_b * nb_size, np.float32)            # scratch, packed on every run
    b_bases = np.arange(nbatch_b, dtype=np.int64) * k * n
    fn, args = kg.gemm_call(readonly(a), a_offs, sam, sak, readonly(bp), b_offs,
                            None if c is None else readonly(c), scm, scn, beta, out, m, n, k,
                            alpha, nr, act, (p0, p1), threads=threads)
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
def bind_np_matmul(params, weights, inputs, outputs, threads=None):
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
