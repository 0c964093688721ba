"""fp32 element-wise kernels against kernels/reference.py: directly (the kernel table's rows
over edge shapes and broadcast patterns) and through lowering + binding (GraphBuilder nodes)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from kernels import f32_elementwise as kew
from kernels import table
from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node

from tests.kernels.harness import lower_and_run
from tests.tolerances import assert_close


RNG = np.random.default_rng(1234)
CHANNELS = (1, 3, 13, 24, 63, 64, 65)


def rand(shape, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


# --- kernels directly: the module's table ------------------------------------------------------
UNARY_ATTRS = {"clip": {"min": -0.5, "max": 0.75}, "leaky_relu": {"alpha": 0.1},
               "hard_sigmoid": {"alpha": 0.3, "beta": 0.4}}


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("c", CHANNELS)
def test_unary_table(c, parallel):
    run, reference = table.entry_and_reference("f32_vrelu")
    x = rand((2, 3, 5, c))
    for name in kew.UNARY_CODES:
        xx = np.abs(x) + np.float32(0.1) if name in ("sqrt", "reciprocal") else x
        attrs = UNARY_ATTRS.get(name, {})
        assert_close(run(xx, name, parallel=parallel, **attrs), reference(xx, name, **attrs),
                     what=f"{name} c={c}")


BROADCASTS = [
    ((2, 5, 7, 13), (2, 5, 7, 13), "flat"),     # same shape
    ((2, 5, 7, 13), (), "flat"),                 # scalar right
    ((1,), (3, 5, 63), "flat"),                  # scalar left
    ((2, 5, 7, 24), (24,), "rows"),              # per channel (NHWC)
    ((65,), (2, 3, 3, 65), "rows"),              # per channel on the left
    ((2, 5, 7, 1), (2, 5, 7, 3), "rows"),        # per pixel (column broadcast)
    ((2, 5, 7, 13), (2, 1, 1, 13), "nd"),        # per image and channel
    ((2, 1, 7, 1), (1, 5, 1, 3), "nd"),          # both sides broadcast
    ((2, 3, 1, 2, 1, 3), (1, 1, 4, 2, 5, 1), "nd"),  # rank 6
    ((1, 1), (1,), "flat"),                      # single element
    ((3, 1, 64), (3, 4, 64), "nd"),
]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("a_shape,b_shape,kind", BROADCASTS)
def test_binary_table(a_shape, b_shape, kind, parallel):
    run, reference = table.entry_and_reference("f32_vbinary_add")
    assert kew.broadcast_plan(a_shape, b_shape)["kind"] == kind
    a, b = rand(a_shape), rand(b_shape)
    for name in kew.BINARY_CODES:
        aa = np.abs(a) + np.float32(0.5) if name == "pow" else a
        bb = b + np.float32(np.where(b >= 0, 0.25, -0.25)) if name == "div" else b
        assert_close(run(aa, bb, name, parallel=parallel), reference(aa, bb, name),
                     what=f"{name} {a_shape} {b_shape}")


@pytest.mark.parametrize("act,params", [(Activation.RELU, ()), (Activation.CLAMP, (-1.0, 2.0)),
                                        (Activation.LEAKY_RELU, (0.2,)), (Activation.SIGMOID, ()),
                                        (Activation.TANH, ()),
                                        (Activation.HARD_SIGMOID, (0.2, 0.5)),
                                        (Activation.HARD_SWISH, ())])
def test_binary_fused_activation(act, params):
    run, reference = table.entry_and_reference("f32_vbinary_add")
    for a_shape, b_shape, _ in BROADCASTS[:4] + BROADCASTS[6:7]:
        a, b = rand(a_shape), rand(b_shape)
        assert_close(run(a, b, "add", int(act), params), reference(a, b, "add", act, params),
                     what=f"add+{act.name} {a_shape} {b_shape}")


def test_binary_large_parallel_blocks():
    """More than one BLOCK per task and a ragged last block, in the parallel variant."""
    a, b = rand((3, 67, 129, 5)), rand((5,))
    run, reference = table.entry_and_reference("f32_vbinary_add")
    assert_close(run(a, b, "mul", parallel=True), reference(a, b, "mul"))
    assert_close(run(a, a, "sub", parallel=True), reference(a, a, "sub"))


def test_broadcast_plan_merges_axes():
    plan = kew.broadcast_plan((2, 5, 7, 13), (2, 1, 1, 13))
    assert plan["shape"][-3:] == [2, 35, 13]
    assert plan["b_strides"][-3:] == [13, 0, 1] and plan["a_strides"][-3:] == [455, 13, 1]


def test_exp_accuracy_over_the_float_range():
    """exp_f32 (plain arithmetic, vectorised) within 1 ulp of float64 exp, overflow to inf,
    underflow to 0, NaN kept."""
    x = np.concatenate([np.linspace(-110, 95, 200001, dtype=np.float32),
                        np.float32([88.72, 88.73, -87.3, -103.5, 0.0, -0.0])])
    got = kew.unary(x, "exp")
    want = np.exp(x.astype(np.float64))
    normal = (want > np.finfo(np.float32).tiny) & (want < np.finfo(np.float32).max)
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(want[normal].astype(np.float32))
    assert ulps.max() <= 2.0
    assert np.all(got[want >= 3.5e38] == np.inf)
    assert np.abs(got[want < 1e-37] - want[want < 1e-37]).max() < 1e-44


def test_tanh_accuracy_over_the_float_range():
    """tanh_f32 (plain arithmetic, vectorised) within 2 ulp of float64 tanh (measured 1.23),
    both sides of its 0.625 split, saturating to +-1, odd."""
    x = np.concatenate([np.linspace(-12, 12, 240001, dtype=np.float32),
                        np.float32([0.625, np.nextafter(np.float32(0.625), np.float32(1)),
                                    -0.625, 1e-30, -1e-30, 1e-6, 9.0, 50.0, -50.0])])
    got = kew.unary(x, "tanh")
    want = np.tanh(x.astype(np.float64))
    ulps = np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32))
    assert ulps.max() <= 2.0, (ulps.max(), x[np.argmax(ulps)])
    np.testing.assert_array_equal(got, -kew.unary(-x, "tanh"))


def test_exp_and_tanh_loops_call_no_libm():
    """The unary kernel's exp, sigmoid and tanh loops are plain vector arithmetic: its machine
    code calls no libm function (one call per element would be ~10x slower)."""
    import numba

    from kernels import config
    # a fresh dispatcher: code loaded from Numba's cache cannot be inspected
    fresh = numba.njit(**{**config.FLAGS, "cache": False})(kew.SERIAL.vunary.py_func)
    x = np.linspace(-5, 5, 64, dtype=np.float32)
    fresh(kew.readonly(x), np.empty_like(x), kew.UNARY_CODES["tanh"], np.float32(0),
          np.float32(0))
    np.testing.assert_allclose(kew.unary(x, "tanh"), np.tanh(x), rtol=1e-6, atol=1e-7)
    asm = "\n".join(fresh.inspect_asm().values())
    assert "vfmadd" in asm                           # the kernel's code, not an empty stub
    # LLVM calls libm indirectly: ``movabsq $tanhf, %rbp`` ... ``callq *%rbp``
    libm = re.findall(r"\$_*(?:exp|tanh)f?\b", asm)
    assert not libm, libm


def test_special_values_propagate():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30], np.float32)
    for name in ("relu", "neg", "exp", "tanh", "sigmoid"):
        with np.errstate(all="ignore"):
            want = table.entry_and_reference("f32_vrelu")[1](x, name)
        got = kew.unary(x, name)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-6)
    with np.errstate(all="ignore"):
        got = kew.binary(np.float32([1, -1, 0]), np.float32([0]), "div")
    np.testing.assert_array_equal(got[:2], [np.inf, -np.inf])
    assert np.isnan(got[2])


# --- through lowering and binding ---------------------------------------------------------------
@pytest.mark.parametrize("op", [Op.RELU, Op.CLIP, Op.LEAKY_RELU, Op.SIGMOID, Op.TANH,
                                Op.HARD_SIGMOID, Op.HARD_SWISH, Op.SQRT, Op.RECIPROCAL, Op.NEG,
                                Op.EXP])
def test_lowered_unary(op):
    b = GraphBuilder()
    x = b.input("x", (1, 5, 7, 24))
    attrs = {Op.CLIP: {"min": 0.0, "max": 6.0}, Op.LEAKY_RELU: {"alpha": 0.3}}.get(op, {})
    g = b.build(b.node(op, x, **attrs))
    feeds = {"x": rand((1, 5, 7, 24), 0.1, 8.0) if op in (Op.SQRT, Op.RECIPROCAL)
             else rand((1, 5, 7, 24), -8, 8)}
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == f"f32_v{op.value}"
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for k in want:
        assert_close(got[k], want[k], what=op.name)


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW])
@pytest.mark.parametrize("a_shape,b_shape,const,suffix", [
    ((1, 4, 6, 13), (1, 4, 6, 13), None, ""),
    ((1, 4, 6, 13), (13,), 1, "_rows"),
    ((13,), (1, 4, 6, 13), 0, "_rows"),
    ((1, 4, 6, 13), (), 1, "_scalar"),
    ((), (2, 3, 5), 0, "_scalar"),
    ((2, 4, 6, 13), (2, 1, 1, 13), None, "_bcast"),
])
def test_lowered_binary(op, a_shape, b_shape, const, suffix):
    bld = GraphBuilder()
    lo = 0.5 if op is Op.POW else -2.0
    arrays = [rand(a_shape, lo, 2.0), rand(b_shape, 0.5, 2.0)]
    names = [bld.const(arr) if i == const else bld.input(f"in{i}", arr.shape)
             for i, arr in enumerate(arrays)]
    g = bld.build(bld.node(op, *names, activation=Activation.CLAMP, act_params=(-1.5, 3.0)))
    feeds = {f"in{i}": arr for i, arr in enumerate(arrays) if i != const}
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == f"f32_vbinary_{op.value}{suffix}_minmax"
    if const is not None:
        assert f"in{const}" in step.weights and len(step.inputs) == 1
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for k in want:
        assert_close(got[k], want[k], what=f"{op.name} {a_shape} {b_shape}")


@pytest.mark.parametrize("slope_shape", [(24,), (1,), (1, 1, 1, 24), (1, 5, 1, 1)])
def test_lowered_prelu(slope_shape):
    bld = GraphBuilder()
    x = bld.input("x", (2, 5, 7, 24))
    g = bld.build(bld.node(Op.PRELU, x, bld.const(rand(slope_shape, 0, 1))))
    feeds = {"x": rand((2, 5, 7, 24))}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[g.outputs[0]], want[g.outputs[0]], what=f"prelu {slope_shape}")


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW])
@pytest.mark.parametrize("dtype", [DType.INT64, DType.INT32])
def test_lowered_integer_binary(op, dtype):
    bld = GraphBuilder()
    a = RNG.integers(-20, 20, size=(3, 4)).astype(dtype.np)
    b = RNG.integers(1, 4, size=(4,)).astype(dtype.np) * np.where(RNG.random(4) < 0.5, -1, 1) \
        .astype(dtype.np)
    if op is Op.POW:
        b = np.abs(b)
    x = bld.input("a", a.shape, dtype)
    g = bld.build(bld.node(op, x, bld.const(b)))
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == f"np_binary_{op.value}"
    got, want = lower_and_run(g, {"a": a}), run_graph(g, {"a": a})
    for k in want:
        assert_close(got[k], want[k], what=f"{op.name} {dtype}")


def test_lowered_mixed_pow_and_bool_add():
    bld = GraphBuilder()
    x = bld.input("x", (2, 3))
    g = bld.build(bld.node(Op.POW, x, bld.const(np.array(2, np.int64))))
    feeds = {"x": rand((2, 3))}
    assert_close(lower_and_run(g, feeds)[g.outputs[0]], run_graph(g, feeds)[g.outputs[0]])
    bld = GraphBuilder()
    p, q = bld.input("p", (4,), DType.BOOL), bld.input("q", (4,), DType.BOOL)
    g = bld.build(bld.node(Op.ADD, p, q))
    feeds = {"p": np.array([0, 1, 0, 1], bool), "q": np.array([0, 0, 1, 1], bool)}
    assert_close(lower_and_run(g, feeds)[g.outputs[0]], run_graph(g, feeds)[g.outputs[0]])


def test_lowered_integer_unary():
    bld = GraphBuilder()
    x = bld.input("x", (7,), DType.INT64)
    g = bld.build(bld.node(Op.CLIP, bld.node(Op.NEG, x), min=-3))
    feeds = {"x": np.arange(-3, 4, dtype=np.int64) * 2}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[g.outputs[0]], want[g.outputs[0]])
