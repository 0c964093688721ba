"""fold_conv_affine, fuse_hard_swish and fuse_activation_affine against the IR interpreter
(helpers.apply), and PP-LCNet-style blocks (conv * c + d, hard swish written out, the learnable
affine block after it) against onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.ops import Activation
from mobile_engine.passes import fold_conv_affine, fuse_activation_affine, fuse_hard_swish
from tests.passes.helpers import apply, counts, rand


def _conv(b, x, c, co):
    return b.node(Op.CONV2D, x, b.const(rand((co, c, 3, 3), scale=0.3)),
                  b.const(rand((co,), seed=2)), pads=(1, 1, 1, 1))


@pytest.mark.parametrize("shape", [(), (1,), (24,), (1, 1, 1, 24)])
def test_scale_and_shift_fold_into_the_conv(shape):
    b = GraphBuilder("affine")
    x = b.input("x", (1, 7, 6, 13))
    y = _conv(b, x, 13, 24)
    y = b.node(Op.MUL, b.const(rand(shape, seed=4) if shape else np.float32(1.7)), y)
    y = b.node(Op.ADD, y, b.const(rand(shape, seed=5) if shape else np.float32(0.3)))
    g, n = apply(fold_conv_affine.run, b.build(y))
    assert n == 2 and counts(g) == {Op.CONV2D: 1}


def test_a_spatial_constant_or_a_shared_conv_output_stays():
    b = GraphBuilder("no_affine")
    x = b.input("x", (1, 7, 6, 13))
    y = _conv(b, x, 13, 24)
    z = b.node(Op.MUL, y, b.const(rand((1, 7, 1, 1), seed=4)))       # per row, not per channel
    g, n = apply(fold_conv_affine.run, b.build(z))
    assert n == 0
    b = GraphBuilder("shared")
    x = b.input("x", (1, 7, 6, 13))
    y = _conv(b, x, 13, 24)
    g, n = apply(fold_conv_affine.run, b.build(b.node(Op.MUL, y, b.const(np.float32(2))), y))
    assert n == 0


def _written_out(b, x, last="div"):
    gate = b.node(Op.CLIP, b.node(Op.ADD, x, b.const(np.float32(3))), min=0.0, max=6.0)
    m = b.node(Op.MUL, x, gate)
    return b.node(Op.DIV, m, b.const(np.float32(6))) if last == "div" else \
        b.node(Op.MUL, m, b.const(np.float32(1 / 6)))


@pytest.mark.parametrize("last", ["div", "mul"])
def test_written_out_hard_swish_becomes_one_op(last):
    b = GraphBuilder("hswish")
    x = b.input("x", (1, 5, 4, 9))
    g, n = apply(fuse_hard_swish.run, b.build(_written_out(b, x, last)))
    assert n == 1 and counts(g) == {Op.HARD_SWISH: 1}


def test_x_times_hard_sigmoid_becomes_hard_swish():
    b = GraphBuilder("hsig")
    x = b.input("x", (1, 5, 4, 9))
    y = b.node(Op.MUL, x, b.node(Op.HARD_SIGMOID, x, alpha=1 / 6, beta=0.5))
    g, n = apply(fuse_hard_swish.run, b.build(y))
    assert n == 1 and counts(g) == {Op.HARD_SWISH: 1}


def test_other_constants_stay():
    b = GraphBuilder("not_hswish")
    x = b.input("x", (1, 5, 4, 9))
    gate = b.node(Op.CLIP, b.node(Op.ADD, x, b.const(np.float32(2))), min=0.0, max=6.0)
    y = b.node(Op.DIV, b.node(Op.MUL, x, gate), b.const(np.float32(6)))
    g, n = apply(fuse_hard_swish.run, b.build(y))
    assert n == 0


def _lcnet_block():
    w = rand((16, 8, 3, 3), scale=0.3)
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["a", "y"], ["ya"]), helper.make_node("Add", ["ya", "b"], ["t"]),
             helper.make_node("Add", ["t", "three"], ["t3"]),
             helper.make_node("Clip", ["t3", "zero", "six"], ["g"]),
             helper.make_node("Mul", ["t", "g"], ["m"]), helper.make_node("Div", ["m", "six"], ["z"])]
    inits = [c("w", w), c("a", [1.38]), c("b", [0.59]), c("three", 3.0), c("zero", 0.0),
             c("six", 6.0)]
    graph = helper.make_graph(nodes, "lcnet", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, (1, 8, 12, 10))], [helper.make_tensor_value_info(
            "z", TensorProto.FLOAT, (1, 16, 12, 10))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_lcnet_block_is_one_conv_and_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    model = _lcnet_block()
    plan = me.compile(model.SerializeToString())
    convs = [s for s in plan.steps if "conv2d" in s["kernel"]]
    assert len(convs) == 1 and convs[0]["params"]["act"] == 7      # HARD_SWISH in the epilogue
    assert not [s for s in plan.steps if "vbinary" in s["kernel"] or "vunary" in s["kernel"]]
    x = rand((1, 8, 12, 10), seed=3)
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    (got,) = me.Session(plan).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _hswish_conv(b, x):
    return b.node(Op.CONV2D, x, b.const(rand((24, 13, 3, 3), scale=0.3)),
                  b.const(rand((24,), seed=2)), pads=(1, 1, 1, 1),
                  activation=Activation.HARD_SWISH)


@pytest.mark.parametrize("chain", [("mul", "add"), ("mul",), ("add",), ("mul", "sub", "mul"),
                                   ("rmul", "radd")])
def test_scalar_affine_after_hard_swish_joins_the_conv(chain):
    b = GraphBuilder("lab")
    y = _hswish_conv(b, b.input("x", (1, 7, 6, 13)))
    for k, op in enumerate(chain):
        c = b.const(np.float32(0.4 + 0.7 * k) if k % 2 else np.full((1,), -1.3, np.float32))
        kind = {"mul": Op.MUL, "add": Op.ADD, "sub": Op.SUB}[op.lstrip("r")]
        y = b.node(kind, c, y) if op.startswith("r") else b.node(kind, y, c)
    g, n = apply(fuse_activation_affine.run, b.build(y))
    assert n == len(chain) and counts(g) == {Op.CONV2D: 1}
    assert g.nodes[0].attrs["activation"] is Activation.HARD_SWISH_AFFINE


def test_other_affines_stay():
    cases = []
    b = GraphBuilder("per_channel")                 # not one number
    y = _hswish_conv(b, b.input("x", (1, 7, 6, 13)))
    cases.append(b.build(b.node(Op.MUL, y, b.const(rand((24,), seed=4)))))
    b = GraphBuilder("c_minus_x")                   # c - x is no shift
    y = _hswish_conv(b, b.input("x", (1, 7, 6, 13)))
    cases.append(b.build(b.node(Op.SUB, b.const(np.float32(1)), y)))
    b = GraphBuilder("shared")                      # the hard swish is read elsewhere too
    y = _hswish_conv(b, b.input("x", (1, 7, 6, 13)))
    cases.append(b.build(b.node(Op.MUL, y, b.const(np.float32(2))), y))
    b = GraphBuilder("relu")                        # another activation
    x = b.input("x", (1, 7, 6, 13))
    y = b.node(Op.CONV2D, x, b.const(rand((24, 13, 3, 3), scale=0.3)), pads=(1, 1, 1, 1),
               activation=Activation.RELU)
    cases.append(b.build(b.node(Op.MUL, y, b.const(np.float32(2)))))
    for g in cases:
        _, n = apply(fuse_activation_affine.run, g)
        assert n == 0, g.name


def test_learnable_affine_block_runs_in_the_conv_epilogue_and_matches_onnxruntime():
    """conv -> HardSwish -> Mul(a) -> Add(b), as PP-OCRv4's backbone exports it: one step."""
    ort = pytest.importorskip("onnxruntime")
    c = lambda name, v: numpy_helper.from_array(np.asarray(v, np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w", "bias"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["y"], ["h"]),
             helper.make_node("Mul", ["h", "a"], ["ha"]),
             helper.make_node("Add", ["ha", "b"], ["z"])]
    inits = [c("w", rand((16, 8, 3, 3), scale=0.3)), c("bias", rand((16,), seed=5)),
             c("a", [0.83]), c("b", [-0.21])]
    graph = helper.make_graph(nodes, "lab", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, (1, 8, 12, 10))], [helper.make_tensor_value_info(
            "z", TensorProto.FLOAT, (1, 16, 12, 10))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = me.compile(model.SerializeToString())
    assert [s["params"]["act"] for s in plan.steps if "conv2d" in s["kernel"]] == \
        [int(Activation.HARD_SWISH_AFFINE)]
    assert not [s for s in plan.steps if "vbinary" in s["kernel"]]
    x = rand((1, 8, 12, 10), seed=3)
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    (got,) = me.Session(plan).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
