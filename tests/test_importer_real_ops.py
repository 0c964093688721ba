"""Ops real exports contain (issue 14), imported as existing IR ops or folded, compiled and run by
the engine against onnxruntime; ops the engine cannot run on run-time values fail with a clear
error naming the node."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine.errors import UnsupportedOperatorError
from tests.conftest import ort_run


def _model(nodes, inputs: dict, inits=(), opset=13):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s)
                                       for k, s in inputs.items()],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(ort, model, shapes: dict, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    feeds = {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in shapes.items()}
    (y,) = me.Session(me.compile(model), threads=1).run(None, feeds)
    (want,) = ort_run(ort, model, feeds)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_tensors_and_constants(op, ort):
    """three inputs: a tensor, a broadcast tensor [C, 1, 1] and a scalar constant (a CLIP)"""
    shapes = {"a": [1, 13, 4, 5], "b": [13, 1, 1]}
    model = _model([helper.make_node(op, ["a", "b", "k"], ["y"])], shapes,
                   {"k": np.array(0.25, np.float32)})
    _check(ort, model, shapes)


@pytest.mark.parametrize("op,attrs", [("Elu", {}), ("Elu", {"alpha": 0.3}), ("Selu", {})])
def test_elu_selu(op, attrs, ort):
    shapes = {"x": [1, 24, 3, 3]}
    _check(ort, _model([helper.make_node(op, ["x"], ["y"], **attrs)], shapes), shapes)


@pytest.mark.parametrize("eq,sa,sb", [("ij,jk->ik", [3, 13], [13, 5]),
                                      ("bij,bjk->bik", [2, 3, 4], [2, 4, 6]),
                                      ("bhqd,bhkd->bhqk", [1, 2, 5, 8], [1, 2, 7, 8]),
                                      ("ij,kj->ki", [3, 4], [5, 4])])
def test_einsum_as_matmul(eq, sa, sb, ort):
    shapes = {"a": sa, "b": sb}
    model = _model([helper.make_node("Einsum", ["a", "b"], ["y"], equation=eq)], shapes,
                   opset=12)
    _check(ort, model, shapes)


def test_where_with_known_condition(ort):
    shapes = {"a": [1, 3, 4, 4], "b": [1, 3, 4, 4]}
    cond = np.random.default_rng(1).random((1, 1, 4, 4)) > 0.5
    model = _model([helper.make_node("Where", ["c", "a", "b"], ["y"])], shapes, {"c": cond})
    _check(ort, model, shapes)


def test_shape_arithmetic_folds(ort):
    """y = x * (Floor(W / 2) == 2) + Ceil(H / 2) - Round(2.5), all from Shape(x): folds."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["sf", "two"], ["half"]),
             helper.make_node("Floor", ["half"], ["fl"]),
             helper.make_node("Ceil", ["half"], ["ce"]),
             helper.make_node("Equal", ["fl", "two"], ["eq"]),
             helper.make_node("Cast", ["eq"], ["eqf"], to=TensorProto.FLOAT),
             helper.make_node("Where", ["eq", "eqf", "two"], ["w"]),
             helper.make_node("Round", ["twohalf"], ["r"]),
             helper.make_node("Sign", ["r"], ["sg"]),
             helper.make_node("Gather", ["w", "i3"], ["wl"], axis=0),
             helper.make_node("Gather", ["ce", "i2"], ["ch"], axis=0),
             helper.make_node("Mul", ["x", "wl"], ["m"]),
             helper.make_node("Add", ["m", "ch"], ["a"]),
             helper.make_node("Sub", ["a", "r"], ["s2"]),
             helper.make_node("Mul", ["s2", "sg"], ["y"])]
    inits = {"two": np.array(2, np.float32), "twohalf": np.array(2.5, np.float32),
             "i3": np.array(3, np.int64), "i2": np.array(2, np.int64)}
    shapes = {"x": [1, 3, 5, 4]}
    model = _model(nodes, shapes, inits)
    plan = me.compile(model)
    assert all("binary" in s["kernel"] for s in plan.steps)      # the shape math folded
    _check(ort, model, shapes)


@pytest.mark.parametrize("op", ["Log", "Softplus", "Floor", "Ceil", "Round", "Sign"])
def test_runtime_math_ops(op, ort):
    """Floats computed at run time, a tensor of 5 x 67 (vector loops and tails), halves and
    zeros for Round/Sign, positive values for Log, large ones for Softplus's overflow."""
    shapes = {"x": [5, 67]}
    model = _model([helper.make_node("Abs", ["x"], ["ax"]), helper.make_node(op, ["ax"], ["y"])]
                   if op == "Log" else [helper.make_node(op, ["x"], ["y"])], shapes)
    x = (np.random.default_rng(1).standard_normal((5, 67)) * 40).astype(np.float32)
    x[0, :6] = [0.5, 1.5, -2.5, 0.0, -0.0, 100.0]
    (y,) = me.Session(me.compile(model), threads=1).run(None, {"x": x})
    (want,) = ort_run(ort, model, {"x": x})
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["LogSoftmax"])
def test_runtime_values_without_kernel_are_refused(op):
    model = _model([helper.make_node(op, ["x"], ["y"])], {"x": [1, 3]})
    with pytest.raises(UnsupportedOperatorError, match=f"op '{op}'.*run.time"):
        me.compile(model)
