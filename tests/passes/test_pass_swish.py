"""fuse_swish: x * sigmoid(x) becomes one SILU, which fuse_activation moves into the conv
before it; checked against the IR interpreter (helpers.apply) and onnxruntime (a whole model)."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import mobile_engine as me
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.passes import fuse_swish
from tests.passes.helpers import apply, counts, rand


def _swish_graph(operand_order: int = 0, extra_reader: bool = False):
    b = GraphBuilder("swish")
    x = b.input("x", (1, 6, 7, 5))
    s = b.node(Op.SIGMOID, x)
    ins = (x, s) if operand_order == 0 else (s, x)
    y = b.node(Op.MUL, *ins)
    outs = [y, b.node(Op.ADD, s, x)] if extra_reader else [y]
    return b.build(*outs)


@pytest.mark.parametrize("order", [0, 1])
def test_mul_of_sigmoid_becomes_silu(order):
    g, n = apply(fuse_swish.run, _swish_graph(order))
    assert n == 1 and counts(g) == {Op.SILU: 1}


def test_sigmoid_read_elsewhere_stays():
    g, n = apply(fuse_swish.run, _swish_graph(extra_reader=True))
    assert n == 0 and counts(g)[Op.SIGMOID] == 1


def test_mul_by_sigmoid_of_another_tensor_stays():
    b = GraphBuilder("not_swish")
    x, z = b.input("x", (1, 4, 4, 3)), b.input("z", (1, 4, 4, 3))
    g, n = apply(fuse_swish.run, b.build(b.node(Op.MUL, x, b.node(Op.SIGMOID, z))))
    assert n == 0


def _conv_silu_model(c=13, co=24):
    w = helper.make_tensor("w", TensorProto.FLOAT, (co, c, 3, 3),
                           rand((co, c, 3, 3), scale=0.3).ravel())
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["y"], ["s"]), helper.make_node("Mul", ["y", "s"], ["z"])]
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, (1, c, 11, 9))], [helper.make_tensor_value_info(
            "z", TensorProto.FLOAT, (1, co, 11, 9))], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_silu_is_one_step_and_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    model = _conv_silu_model()
    plan = me.compile(model.SerializeToString())
    assert [s["params"].get("act") for s in plan.steps if "conv2d" in s["kernel"]] == [12]
    assert not [s for s in plan.steps if "sigmoid" in s["kernel"] or "mul" in s["kernel"]]
    x = rand((1, 13, 11, 9), seed=3)
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    (got,) = me.Session(plan).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
