"""The ONNX importer against onnxruntime: hand-built nets, the real multistyle26, and the errors
a user can provoke (each names the file, node, op or tensor involved)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mobile_engine.errors import InputError, ModelFormatError, UnsupportedOperatorError
from mobile_engine.importers.onnx import import_onnx
from mobile_engine.importers.onnx_base import TO_NCHW, TO_NHWC
from mobile_engine.ir import interpret, verify
from mobile_engine.ir.ops import SPATIAL, Op
from onnx_nets import NETS, random_feeds
from tolerances import MODEL_ATOL

NET_RTOL = 1e-4                 # max |error| relative to the output's range


def ort_outputs(ort, model: onnx.ModelProto, feeds) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close_to_range(got, want, rel, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    span = float(want.max() - want.min()) or 1.0
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= rel * span, f"{what}: max error {err:.3g} > {rel} x range {span:.3g}"


# --- hand-built nets vs onnxruntime -------------------------------------------------------------
@pytest.mark.parametrize("net", sorted(NETS))
def test_net_matches_onnxruntime(net, ort):
    model = NETS[net]()
    feeds = random_feeds(model, seed=7)
    graph = import_onnx(model)
    verify(graph)
    outs = interpret.run_graph(graph, feeds)
    want = ort_outputs(ort, model, feeds)
    assert graph.outputs == [o.name for o in model.graph.output]
    for name, w in zip(graph.outputs, want):
        assert graph.tensors[name].shape == w.shape
        assert_close_to_range(outs[name], w, NET_RTOL, f"{net}:{name}")


@pytest.mark.parametrize("net", sorted(NETS))
def test_net_keeps_io_contract_and_layout(net):
    model = NETS[net]()
    graph = import_onnx(model)
    assert graph.name == model.graph.name
    for vi in model.graph.input:
        t = graph.tensors[vi.name]
        assert t.shape == tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        assert t.dtype.value == "float32"
    assert graph.inputs == [vi.name for vi in model.graph.input]
    # every spatial op reads an NCHW->NHWC transpose and feeds an NHWC->NCHW transpose
    for node in graph.nodes:
        if node.op in SPATIAL:
            src = graph.producer(node.inputs[0])
            assert src is not None and src.op is Op.TRANSPOSE and src.attrs["perm"] == TO_NHWC, \
                node
            (dst,) = graph.consumers(node.outputs[0])
            assert dst.op is Op.TRANSPOSE and dst.attrs["perm"] == TO_NCHW, node
    # no node is left whose inputs are all constants (they fold while importing)
    for node in graph.nodes:
        assert not all(graph.tensors[i].is_const for i in node.inputs if i), node


def test_classifier_head_folds_shape_arithmetic():
    graph = import_onnx(NETS["classifier_head"]())
    ops = {n.op for n in graph.nodes}
    assert not ops & {Op.GATHER, Op.CONCAT, Op.CAST, Op.SLICE}
    (reshape,) = [n for n in graph.nodes if n.op is Op.RESHAPE]
    assert reshape.attrs["shape"] == (2, 12, 35)


# --- the real model ---------------------------------------------------------------------------------
def test_multistyle26_matches_onnxruntime(multistyle26_path, photo, ort):
    image = photo("chelsea.png", 64, 96)
    weights = np.zeros(26, np.float32)
    weights[[2, 11, 19]] = [0.5, 0.3, 0.2]
    feeds = {"image": image, "style_weights": weights}
    graph = import_onnx(multistyle26_path, input_shapes={"image": (1, 3, 64, 96)})
    out = interpret.run_graph(graph, feeds)["stylized"]
    (want,) = ort_outputs(ort, onnx.load(multistyle26_path), feeds)
    assert out.shape == want.shape == (1, 3, 64, 96)
    err = float(np.abs(out - want).max())
    assert err <= MODEL_ATOL, f"max error {err:.3g} against onnxruntime"


def test_multistyle26_has_only_runtime_ops(multistyle26_path):
    graph = import_onnx(multistyle26_path, input_shapes={"image": (1, 3, 64, 96)})
    assert graph.name == "main_graph"
    assert graph.inputs == ["image", "style_weights"] and graph.outputs == ["stylized"]
    assert graph.tensors["image"].shape == (1, 3, 64, 96)
    assert graph.tensors["stylized"].shape == (1, 3, 64, 96)
    for op in (Op.CAST, Op.SLICE, Op.CONCAT, Op.GATHER):
        assert graph.count(op) == 0, op
    assert graph.count(Op.CONV2D) == 18
    assert graph.count(Op.PAD) == 18                 # reflect pads, absorbed by a later pass
    assert all(n.attrs["mode"] == "reflect" for n in graph.nodes if n.op is Op.PAD)
    assert graph.count(Op.RESIZE) == 2
    assert graph.count(Op.SIGMOID) == 1
    for node in graph.nodes:
        assert not all(graph.tensors[i].is_const for i in node.inputs if i), node


def test_multistyle26_needs_input_shapes(multistyle26_path):
    with pytest.raises(ModelFormatError, match=r"'image'.*'h'.*input_shapes"):
        import_onnx(multistyle26_path)


# --- folding, opset variants, small semantics ---------------------------------------------------------
def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def test_initializer_listed_as_input_is_a_constant(ort):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                   [_vi("x", [4, 2]), _vi("w", [2, 3])], [_vi("y", [4, 3])],
                   [numpy_helper.from_array(w, "w")])
    graph = import_onnx(model)
    assert graph.inputs == ["x"] and graph.tensors["w"].is_const
    x = np.random.default_rng(0).random((4, 2), dtype=np.float32)
    np.testing.assert_allclose(interpret.run_graph(graph, {"x": x})["y"], x @ w, rtol=1e-6)


def test_float64_constants_fold_and_narrow():
    nodes = [helper.make_node("Cast", ["d"], ["f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Mul", ["x", "f"], ["y"], name="mul")]
    d = np.array([0.5, 2.0, -1.0], np.float64)
    model = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], [numpy_helper.from_array(d, "d")])
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == [Op.MUL]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(interpret.run_graph(graph, {"x": x})["y"], x * d)


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_flattens_at_axis_before_opset13(opset, ort):
    model = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")],
                   [_vi("x", [2, 3, 4])], [_vi("y", [2, 3, 4])], opset=opset)
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    got = interpret.run_graph(import_onnx(model), {"x": x})["y"]
    np.testing.assert_allclose(got, ort_outputs(ort, model, {"x": x})[0], rtol=1e-5, atol=1e-7)
    sums = got.reshape(2, -1).sum(1) if opset == 11 else got.sum(1)
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_graph_output_that_is_an_input_keeps_its_name():
    model = _model([helper.make_node("Identity", ["x"], ["y"], name="id")],
                   [_vi("x", [3])], [_vi("y", [3])])
    graph = import_onnx(model)
    assert graph.outputs == ["y"]
    x = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(interpret.run_graph(graph, {"x": x})["y"], x)


# --- errors -----------------------------------------------------------------------------------------
def _small_model_bytes() -> bytes:
    return NETS["resnet_like"]().SerializeToString()


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_file(tmp_path, fraction):
    data = _small_model_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFormatError, match="cut.onnx"):
        import_onnx(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError, match="noise.onnx"):
        import_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match="nowhere.onnx"):
        import_onnx(tmp_path / "nowhere.onnx")


def test_unsupported_op():
    model = _model([helper.make_node("Relu", ["x"], ["h"], name="r"),
                    helper.make_node("FooBar", ["h"], ["y"], name="weird")],
                   [_vi("x", [3])], [_vi("y", [3])])
    with pytest.raises(UnsupportedOperatorError,
                       match=r"node 'weird' \(op 'FooBar', opset 17\) has no importer; "
                             r"supported ops: .*Conv"):
        import_onnx(model)


def test_missing_initializer():
    model = _model([helper.make_node("Conv", ["x", "conv1.weight"], ["y"], name="conv1")],
                   [_vi("x", [1, 3, 8, 8])], [_vi("y", None)])
    with pytest.raises(ModelFormatError, match=r"'conv1'.*'conv1.weight'"):
        import_onnx(model)


def test_cycle():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Relu", ["a"], ["y"], name="out")]
    model = _model(nodes, [_vi("x", [3])], [_vi("y", [3])])
    with pytest.raises(ModelFormatError, match=r"cycle.*'first'.*'second'"):
        import_onnx(model)


def test_symbolic_dim_without_input_shapes():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                   [_vi("x", [1, 3, "height", 16])], [_vi("y", None)])
    with pytest.raises(ModelFormatError, match=r"input 'x'.*'height'.*axis 2.*input_shapes"):
        import_onnx(model)
    graph = import_onnx(model, input_shapes={"x": (1, 3, 5, 16)})
    assert graph.tensors["y"].shape == (1, 3, 5, 16)
    with pytest.raises(InputError, match="axis 3"):
        import_onnx(model, input_shapes={"x": (1, 3, 5, 17)})
    with pytest.raises(InputError, match="not model inputs"):
        import_onnx(model, input_shapes={"z": (1,)})


@pytest.mark.parametrize("node, pattern", [
    (helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic", name="up"),
     r"node 'up' \(op 'Resize'.*cubic"),
    (helper.make_node("Resize", ["x", "", "s"], ["y"], mode="spline", name="up"),
     r"node 'up'.*attribute mode='spline'"),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="mirror", name="pad7"),
     r"node 'pad7'.*attribute mode='mirror'"),
    (helper.make_node("QuantizeLinear", ["x", "qs"], ["y"], name="q"),
     r"node 'q'.*int8 QDQ import is not supported yet"),
    (helper.make_node("Conv", ["x3", "w3"], ["y"], name="conv3d"),
     r"node 'conv3d' \(op 'Conv', opset 17\): only 2-D"),
])
def test_unsupported_attribute_values(node, pattern):
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s"),
             numpy_helper.from_array(np.zeros(8, np.int64), "p"),
             numpy_helper.from_array(np.array(0.1, np.float32), "qs"),
             numpy_helper.from_array(np.ones((2, 1, 3, 3, 3), np.float32), "w3")]
    model = _model([node], [_vi("x", [1, 1, 4, 4]), _vi("x3", [1, 1, 4, 4, 4])],
                   [_vi("y", None)], inits)
    with pytest.raises(UnsupportedOperatorError, match=pattern):
        import_onnx(model)

