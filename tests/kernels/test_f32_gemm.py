"""fp32 GEMM / MatMul kernels against kernels/reference.py: directly (the kernel table's rows
over edge shapes, transposes and batch broadcasts) and through lowering + binding."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from kernels import table

from tests.kernels.harness import lower_and_run
from tests.tolerances import assert_close


RNG = np.random.default_rng(5)
SIZES = (1, 3, 13, 24, 63, 64, 65)


def rand(*shape):
    return RNG.uniform(-1, 1, size=shape).astype(np.float32)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("m,k", [(1, 1), (5, 13), (4, 64), (9, 65)])
def test_gemm_table(m, k, n):
    run, reference = table.entry_and_reference("f32_gemm_4x32")
    a, b, c = rand(m, k), rand(k, n), rand(n)
    assert_close(run(a, b, c), reference(a, b, c), k, what=f"{m}x{k}x{n}")


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("c_shape", [None, (), (1,), (37,), (6, 1), (6, 37)])
@pytest.mark.parametrize("runtime_b", [False, True])
def test_gemm_options(trans_a, trans_b, c_shape, runtime_b):
    run, reference = table.entry_and_reference("f32_gemm_4x32")
    m, k, n = 6, 11, 37
    a = rand(k, m) if trans_a else rand(m, k)
    b = rand(n, k) if trans_b else rand(k, n)
    c = None if c_shape is None else rand(*c_shape)
    args = (a, b, c, 0.75, -1.5, trans_a, trans_b, int(Activation.LEAKY_RELU), (0.1,))
    assert_close(run(*args, pack_at_run_time=runtime_b), reference(*args), k)


@pytest.mark.parametrize("parallel", [False, True])
def test_gemm_parallel_tiles(parallel):
    run, reference = table.entry_and_reference("f32_gemm_4x32")
    a, b, c = rand(33, 70), rand(70, 97), rand(33, 1)
    assert_close(run(a, b, c, parallel=parallel), reference(a, b, c), 70)


@pytest.mark.parametrize("a_shape,b_shape", [((7,), (7,)), ((7,), (7, 5)), ((2, 4, 7), (7,)),
                                             ((2, 1, 4, 7), (3, 7, 65)), ((5, 7), (2, 7, 40)),
                                             ((3, 13, 24), (3, 24, 13)), ((1, 63), (63, 1))])
def test_matmul_table(a_shape, b_shape):
    run, reference = table.entry_and_reference("f32_matmul_4x32")
    a, b = rand(*a_shape), rand(*b_shape)
    k = a_shape[-1]
    assert_close(run(a, b), reference(a, b), k, what=f"{a_shape} @ {b_shape}")
    assert_close(run(a, b, int(Activation.RELU), parallel=True),
                 reference(a, b, Activation.RELU), k)


# --- through lowering and binding ---------------------------------------------------------------
@pytest.mark.parametrize("const_b", [True, False])
@pytest.mark.parametrize("c_kind", [None, "const", "runtime"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_lowered_gemm(const_b, c_kind, trans_a, trans_b):
    m, k, n = 5, 24, 13
    bld = GraphBuilder()
    feeds = {"a": rand(k, m) if trans_a else rand(m, k)}
    a = bld.input("a", feeds["a"].shape)
    b_val = rand(n, k) if trans_b else rand(k, n)
    if const_b:
        b = bld.const(b_val)
    else:
        b = bld.input("b", b_val.shape)
        feeds["b"] = b_val
    inputs = [a, b]
    if c_kind == "const":
        inputs.append(bld.const(rand(n)))
    elif c_kind == "runtime":
        inputs.append(bld.input("c", (m, 1)))
        feeds["c"] = rand(m, 1)
    y = bld.node(Op.GEMM, *inputs, alpha=0.5, beta=2.0, trans_a=trans_a, trans_b=trans_b,
                 activation=Activation.CLAMP, act_params=(-0.5, 0.5))
    g = bld.build(y)
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == f"f32_gemm_4x16{'' if const_b else '_packb'}_minmax"
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[y], want[y], k)


@pytest.mark.parametrize("a_shape,b_shape,const_b", [((2, 3, 13), (13, 40), True),
                                                     ((2, 3, 13), (2, 13, 40), False),
                                                     ((13,), (3, 13, 5), True),
                                                     ((4, 13), (13,), False)])
def test_lowered_matmul(a_shape, b_shape, const_b):
    bld = GraphBuilder()
    feeds = {"a": rand(*a_shape)}
    a = bld.input("a", a_shape)
    b_val = rand(*b_shape)
    if const_b:
        b = bld.const(b_val)
    else:
        b = bld.input("b", b_shape)
        feeds["b"] = b_val
    y = bld.node(Op.MATMUL, a, b)
    g = bld.build(y)
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[y], want[y], a_shape[-1])


def test_lowered_integer_matmul():
    bld = GraphBuilder()
    a = bld.input("a", (3, 4), DType.INT64)
    y = bld.node(Op.MATMUL, a, bld.const(np.arange(8, dtype=np.int64).reshape(4, 2)))
    g = bld.build(y)
    feeds = {"a": np.arange(12, dtype=np.int64).reshape(3, 4)}
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == "np_matmul"
    got = lower_and_run(g, feeds)[y]
    np.testing.assert_array_equal(got, feeds["a"] @ np.arange(8).reshape(4, 2))
