"""pack_output_pixels: few-channel int8 convs compute f output pixels per position; the output
bytes are unchanged (checked against the unpacked plan bit for bit, and against onnxruntime)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import mobile_engine as me
from mobile_engine.compiler import optimized_graph
from mobile_engine.ir import Op
from mobile_engine.passes import pack_output_pixels
from tests.passes.test_fold_qdq_layout import _Net, _reference


@pytest.mark.parametrize("co,kw,width,f", [(3, 9, 384, 4), (8, 9, 384, 2), (8, 3, 384, 2),
                                           (16, 3, 384, 1), (32, 3, 96, 1), (3, 9, 1, 1),
                                           (1, 3, 32, 16), (13, 3, 10, 1), (100, 1, 1, 1),
                                           (320, 1, 7, 1)])
def test_choose_factor(co, kw, width, f):
    assert pack_output_pixels.choose_factor(co, kw, width) == f


def conv_model(ci: int, co: int, k: int, h: int, w: int, upsample: bool, seed: int = 0):
    """NHWC x -> Q/DQ -> NCHW -> [nearest Resize x2] -> reflect Pad -> Q/DQ -> Conv k x k
    ci -> co -> Relu -> Q/DQ -> NHWC y."""
    rng = np.random.default_rng(seed)
    n = _Net()
    p = k // 2
    x = n.qdq(n.node("Transpose", ["x"], perm=[0, 3, 1, 2]), 1 / 255, 0)
    if upsample:
        x = n.node("Resize", [x, "", n.const([1, 1, 2, 2])], mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    x = n.qdq(n.node("Pad", [x, n.const([0, 0, p, p, 0, 0, p, p], np.int64)], mode="reflect"),
              1 / 255, 0)
    y = n.qdq(n.node("Relu", [n.conv(x, rng, ci, co, k)]), 0.01, 0)
    y = n.node("Transpose", [y], perm=[0, 2, 3, 1])
    s = 2 if upsample else 1
    return n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, h, w, ci])], y,
                   [1, s * h, s * w, co])


@pytest.mark.parametrize("ci,co,k,h,w,upsample", [
    (3, 8, 9, 12, 16, False), (8, 3, 9, 10, 12, False), (16, 8, 3, 6, 8, True),
    (4, 1, 3, 5, 7, False)])
def test_packed_conv_writes_the_same_bytes(ort, monkeypatch, ci, co, k, h, w, upsample):
    model = conv_model(ci, co, k, h, w, upsample).SerializeToString()
    graph, _ = optimized_graph(model)
    (conv,) = [n for n in graph.nodes if n.op is Op.CONV2D]
    wo = graph.tensors[graph.outputs[0]].shape[2]
    f = pack_output_pixels.choose_factor(co, k, wo)
    assert f > 1
    assert graph.tensors[conv.inputs[1]].shape == (f * co, ci, k, k + f - 1)
    assert conv.attrs["strides"] == (1, f) and conv.attrs["pad_mode"] == "reflect"
    packed = me.compile(model)
    monkeypatch.setattr(pack_output_pixels, "choose_factor", lambda *a: 1)
    plain = me.compile(model)
    x = np.random.default_rng(1).random((1, h, w, ci), np.float32)
    ours = me.Session(packed).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ours, me.Session(plain).run(None, {"x": x})[0])
    (ref,) = _reference(ort, onnx.load_from_string(model), {"x": x})
    steps = np.rint(np.abs(ours - ref) / 0.01)
    assert steps.max() <= 1 and np.mean(steps > 0) < 0.01
