"""fp32 reductions and softmax against kernels/reference.py: directly (the kernel table's rows
over edge shapes and axis sets) and through lowering + binding (GraphBuilder nodes)."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from kernels import f32_reduce as kred
from kernels import table

from tests.kernels.harness import lower_and_run
from tests.tolerances import assert_close


RNG = np.random.default_rng(7)
CHANNELS = (1, 3, 13, 24, 63, 64, 65)


def rand(shape, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


AXES = [((2, 5, 7, 13), (1, 2), "ori"),          # NHWC spatial mean
        ((2, 5, 7, 13), (3,), "ori"),            # last axis
        ((2, 5, 7, 13), (0,), "ori"),            # first axis
        ((2, 5, 7, 13), (), "ori"),              # everything
        ((2, 5, 7, 13), (0, 2), "nd"),           # two runs
        ((2, 5, 7, 13), (-1, 1), "nd"),
        ((3, 1, 4, 1, 5), (1, 3), "ori"),        # only size-1 axes reduced
        ((2, 3, 1, 4, 5, 2), (0, 2, 4), "nd"),
        ((1, 1, 1, 600), (3,), "ori"),
        ((4, 1100), (0,), "ori")]                # inner longer than one chunk


@pytest.mark.parametrize("op", ["reduce_mean", "reduce_sum"])
@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("shape,axes,kind", AXES)
def test_reduce_table(op, keepdims, shape, axes, kind):
    run, reference = table.entry_and_reference("f32_reduce_mean_ori")
    assert kred.reduce_plan(shape, axes)["kind"] == kind
    x = rand(shape) + np.float32(1)
    for parallel in (False, True):
        assert_close(run(op, x, axes, keepdims, parallel=parallel),
                     reference(op, x, axes, keepdims), 4,
                     what=f"{op} {shape} axes={axes}")


@pytest.mark.parametrize("c", CHANNELS)
def test_spatial_mean_channels(c):
    run, reference = table.entry_and_reference("f32_reduce_mean_ori")
    x = rand((2, 9, 11, c))
    assert_close(run("reduce_mean", x, (1, 2)), reference("reduce_mean", x, (1, 2)), 4)


SOFTMAX = [((2, 5, 7, 13), -1), ((2, 5, 7, 13), 1), ((2, 5, 7, 13), 0), ((1, 1000), 1),
           ((3, 1), 0), ((65,), 0), ((4, 64, 3), 1), ((2, 6), -2)]


@pytest.mark.parametrize("shape,axis", SOFTMAX)
def test_softmax_table(shape, axis):
    run, reference = table.entry_and_reference("f32_softmax_lastaxis")
    x = rand(shape, -30, 30)
    x.reshape(-1)[0] = 80.0                      # exp(80) overflows float32: max subtraction
    for parallel in (False, True):
        got = run(x, axis, parallel=parallel)
        assert_close(got, reference(x, axis), 8, what=f"softmax {shape} axis={axis}")
        np.testing.assert_allclose(got.sum(axis=axis), 1.0, rtol=1e-5)


def test_parallel_default_large():
    run, reference = table.entry_and_reference("f32_reduce_mean_ori")
    x = rand((4, 40, 40, 24))
    assert_close(run("reduce_mean", x, (1, 2)), reference("reduce_mean", x, (1, 2)), 4)
    run, reference = table.entry_and_reference("f32_softmax_lastaxis")
    assert_close(run(x, 3), reference(x, 3), 8)
    assert_close(run(x, 1), reference(x, 1), 8)


# --- through lowering and binding ---------------------------------------------------------------
@pytest.mark.parametrize("op", [Op.REDUCE_MEAN, Op.REDUCE_SUM])
@pytest.mark.parametrize("axes,keepdims,kind", [((1, 2), True, "ori"), ((0, 2), False, "nd"),
                                                ((), False, "ori")])
def test_lowered_reduce(op, axes, keepdims, kind):
    bld = GraphBuilder()
    x = bld.input("x", (2, 5, 7, 13))
    g = bld.build(bld.node(op, x, axes=axes, keepdims=keepdims))
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == f"f32_{op.value}_{kind}"
    feeds = {"x": rand((2, 5, 7, 13))}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for k in want:
        assert_close(got[k], want[k], 4)


@pytest.mark.parametrize("op", [Op.REDUCE_MEAN, Op.REDUCE_SUM])
def test_lowered_integer_reduce(op):
    bld = GraphBuilder()
    x = bld.input("x", (3, 4, 5), DType.INT64)
    g = bld.build(bld.node(op, x, axes=(0, 2), keepdims=False))
    feeds = {"x": RNG.integers(-50, 50, size=(3, 4, 5))}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for k in want:
        assert_close(got[k], want[k])


@pytest.mark.parametrize("axis,kernel", [(-1, "f32_softmax_lastaxis"), (1, "f32_softmax_strided")])
def test_lowered_softmax(axis, kernel):
    bld = GraphBuilder()
    x = bld.input("x", (2, 5, 24))
    g = bld.build(bld.node(Op.SOFTMAX, x, axis=axis))
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == kernel
    feeds = {"x": rand((2, 5, 24), -10, 10)}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for k in want:
        assert_close(got[k], want[k], 8)
