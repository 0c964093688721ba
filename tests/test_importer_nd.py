"""1-D convolutions, transposed convolutions and pools on the 2-D IR ([N, C, 1, L]), 3-D pools
as two 2-D pools, 3-D convolutions and transposed convolutions as one 2-D op per kernel depth
(importers/onnx_nd.py), against onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(16)


def _run_both(node, x, inits=()):
    model = helper.make_model(
        helper.make_graph([node], "nd", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for n, a in inits]),
        opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = me.Session(me.compile(model)).run(None, {"x": x})[0]
    return got, want


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("attrs", [
    dict(kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1], ceil_mode=1),
    dict(kernel_shape=[3, 3, 3], strides=[1, 2, 2], pads=[1, 1, 1, 1, 1, 1],
         count_include_pad=1),
    dict(kernel_shape=[3, 2, 2], auto_pad="SAME_UPPER", strides=[2, 2, 1])])
def test_pool_3d(op, attrs):
    if op == "MaxPool":
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    x = RNG.standard_normal((2, 3, 5, 7, 6)).astype(np.float32)
    got, want = _run_both(helper.make_node(op, ["x"], ["y"], **attrs), x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("node, inits", [
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1],
                      dilations=[2]), []),
    (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[4], strides=[3], pads=[2, 1],
                      ceil_mode=1), []),
    (helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2], pads=[2, 1], dilations=[2],
                      group=3), [("w", RNG.standard_normal((6, 1, 3)).astype(np.float32)),
                                 ("b", RNG.standard_normal(6).astype(np.float32))]),
    (helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[3], output_shape=[40]),
     [("w", RNG.standard_normal((3, 2, 4)).astype(np.float32))]),
    (helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 0],
                      output_padding=[1]),
     [("w", RNG.standard_normal((3, 4, 3)).astype(np.float32))])])
def test_one_d(node, inits):
    x = RNG.standard_normal((2, 3, 13)).astype(np.float32)
    got, want = _run_both(node, x, inits)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs, w_shape, bias", [
    (dict(pads=[1, 0, 2, 1, 1, 0], strides=[2, 1, 2], dilations=[1, 2, 1]), (4, 3, 3, 2, 3), True),
    (dict(auto_pad="SAME_UPPER", strides=[2, 2, 1], group=3), (6, 1, 2, 3, 3), False),
    (dict(dilations=[2, 1, 1]), (5, 3, 2, 1, 1), True)])
def test_conv_3d(attrs, w_shape, bias):
    x = RNG.standard_normal((2, 3, 6, 7, 5)).astype(np.float32)
    inits = [("w", RNG.standard_normal(w_shape).astype(np.float32))]
    if bias:
        inits.append(("b", RNG.standard_normal(w_shape[0]).astype(np.float32)))
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)
    got, want = _run_both(node, x, inits)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attrs, w_shape, bias", [
    (dict(), (3, 2, 3, 3, 3), False),
    (dict(strides=[2, 1, 3], pads=[1, 0, 0, 0, 1, 1], output_padding=[1, 0, 2]), (3, 4, 3, 2, 3),
     True),
    (dict(strides=[3, 2, 1], dilations=[2, 1, 1], group=3), (3, 1, 2, 3, 2), True)])
def test_conv_transpose_3d(attrs, w_shape, bias):
    x = RNG.standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    inits = [("w", RNG.standard_normal(w_shape).astype(np.float32))]
    if bias:
        inits.append(("b", RNG.standard_normal(w_shape[1] * attrs.get("group", 1))
                      .astype(np.float32)))
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"],
                            **attrs)
    got, want = _run_both(node, x, inits)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
