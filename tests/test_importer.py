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
from tests.onnx_nets import NETS, random_feeds
from tests.tolerances import MODEL_ATOL

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


# --- the real model ------------------------------------------------------------------------------
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


# --- folding, opset variants, small semantics ----------------------------------------------------
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


def test_graph_outputs_that_alias_keep_their_names():
    """y is the input itself, z an Identity of an intermediate, w the same tensor again."""
    nodes = [helper.make_node("Identity", ["x"], ["y"], name="id"),
             helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Identity", ["r"], ["z"], name="id2"),
             helper.make_node("Identity", ["r"], ["w"], name="id3")]
    model = _model(nodes, [_vi("x", [3])], [_vi("y", [3]), _vi("z", [3]), _vi("w", [3])])
    graph = import_onnx(model.SerializeToString(), name="aliases")
    assert graph.name == "aliases" and graph.outputs == ["y", "z", "w"]
    assert graph.count(Op.RELU) == 1
    x = np.array([-1, 2, 3], np.float32)
    outs = interpret.run_graph(graph, {"x": x})
    np.testing.assert_array_equal(outs["y"], x)
    np.testing.assert_array_equal(outs["z"], np.maximum(x, 0))
    np.testing.assert_array_equal(outs["w"], np.maximum(x, 0))


# --- opset variants against onnxruntime: attributes vs inputs, legacy semantics ------------------
def _i64(*v):
    return np.array(v, np.int64)


def _f32(*v):
    return np.array(v, np.float32)


N = helper.make_node
# id -> (opset, nodes reading "x" [1, 4, 7, 9] (and "idx") and writing "y", initializers)
VARIANTS = {
    "clip_attrs_opset10": (10, [N("Clip", ["x"], ["y"], min=-0.5, max=0.25)], {}),
    "clip_min_input_only": (13, [N("Clip", ["x", "lo"], ["y"])], {"lo": _f32(-0.3)}),
    "pad_attr_reflect_opset10": (10, [N("Pad", ["x"], ["y"], mode="reflect",
                                        pads=[0, 0, 2, 1, 0, 0, 1, 3])], {}),
    "pad_edge_opset13": (13, [N("Pad", ["x", "p"], ["y"], mode="edge")],
                         {"p": _i64(0, 1, 1, 0, 0, 0, 2, 2)}),
    "pad_axes_value_opset18": (18, [N("Pad", ["x", "p", "v", "ax"], ["y"])],
                               {"p": _i64(1, 2, 3, 0), "v": _f32(1.5), "ax": _i64(-1, 2)}),
    "pad_negative_crops": (13, [N("Pad", ["x", "p"], ["y"])],
                           {"p": _i64(0, 0, -2, 1, 0, 0, 1, -3)}),
    "slice_attrs_opset9": (9, [N("Slice", ["x"], ["y"], starts=[1, -4], ends=[3, 100],
                                 axes=[1, 3])], {}),
    "slice_negative_steps": (13, [N("Slice", ["x", "s", "e", "a", "st"], ["y"])],
                             {"s": _i64(-1, 5), "e": _i64(-100, 0), "a": _i64(3, 2),
                              "st": _i64(-2, -3)}),
    "squeeze_unsqueeze_attrs_opset11": (11, [N("Unsqueeze", ["x"], ["u"], axes=[0, -1]),
                                             N("Squeeze", ["u"], ["y"], axes=[0, 5])], {}),
    "squeeze_unsqueeze_inputs": (13, [N("Unsqueeze", ["x", "a"], ["u"]),
                                      N("Squeeze", ["u"], ["y"])], {"a": _i64(2)}),
    "reduce_mean_attr_opset13": (13, [N("ReduceMean", ["x"], ["y"], axes=[1, -1],
                                        keepdims=0)], {}),
    "reduce_mean_input_opset18": (18, [N("ReduceMean", ["x", "a"], ["y"])], {"a": _i64(2)}),
    "reduce_sum_attr_opset11": (11, [N("ReduceSum", ["x"], ["y"], axes=[0, 2])], {}),
    "reduce_sum_noop_empty_axes": (13, [N("ReduceSum", ["x", "a"], ["y"],
                                          noop_with_empty_axes=1)],
                                   {"a": np.zeros(0, np.int64)}),
    "reduce_sum_all": (13, [N("ReduceSum", ["x"], ["y"], keepdims=0)], {}),
    "upsample_nearest_opset9": (9, [N("Upsample", ["x", "s"], ["y"], mode="nearest")],
                                {"s": _f32(1, 1, 2, 3)}),
    "upsample_linear_attr_opset7": (7, [N("Upsample", ["x"], ["y"], mode="linear",
                                          scales=[1.0, 1.0, 2.0, 2.0])], {}),
    "resize_opset10_nearest_down": (10, [N("Resize", ["x", "s"], ["y"], mode="nearest")],
                                    {"s": _f32(1, 1, 0.5, 0.5)}),
    "resize_sizes_linear_pytorch_half_pixel": (
        13, [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear",
               coordinate_transformation_mode="pytorch_half_pixel")], {"sz": _i64(1, 4, 1, 14)}),
    "resize_nearest_tf_half_pixel_ceil": (
        13, [N("Resize", ["x", "", "s"], ["y"], mode="nearest", nearest_mode="ceil",
               coordinate_transformation_mode="tf_half_pixel_for_nn")],
        {"s": _f32(1, 1, 1.5, 0.75)}),
    "resize_nearest_tf_half_pixel_unit_axis": (
        13, [N("Resize", ["x", "", "s"], ["y"], mode="nearest", nearest_mode="round_prefer_ceil",
               coordinate_transformation_mode="tf_half_pixel_for_nn")], {"s": _f32(1, 1, 1, 2)}),
    "resize_axes_not_larger_opset18": (
        18, [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[3, 2],
               keep_aspect_ratio_policy="not_larger")], {"sz": _i64(20, 12)}),
    "conv_same_upper_stride2": (17, [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER",
                                       strides=[2, 2])],
                                {"w": np.linspace(-1, 1, 5 * 4 * 4 * 4, dtype=np.float32)
                                 .reshape(5, 4, 4, 4)}),
    "conv_same_lower_grouped": (
        17, [N("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_LOWER", group=2)],
        {"w": np.linspace(-1, 1, 6 * 2 * 3 * 2, dtype=np.float32).reshape(6, 2, 3, 2),
         "b": _f32(1, 2, 3, 4, 5, 6)}),
    "conv_transpose_output_shape": (
        17, [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[15, 20])],
        {"w": np.linspace(-1, 1, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)}),
    "conv_transpose_same_upper_grouped": (
        17, [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER",
               group=2)],
        {"w": np.linspace(-1, 1, 4 * 2 * 4 * 4, dtype=np.float32).reshape(4, 2, 4, 4)}),
    "maxpool_ceil_pads_dilated": (
        17, [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1],
               dilations=[1, 2], ceil_mode=1)], {}),
    "avgpool_ceil_count_include_pad": (
        17, [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)], {}),
    "avgpool_same_lower": (17, [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 3],
                                  auto_pad="SAME_LOWER")], {}),
    "dropout_ratio_input_opset12": (12, [N("Dropout", ["x", "r"], ["y"])],
                                    {"r": np.array(0.3, np.float32)}),
    "gemm_trans_a_alpha_beta": (
        17, [N("Reshape", ["x", "sh"], ["m"]),
             N("Gemm", ["m", "w", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)],
        {"sh": _i64(-1, 9), "w": np.linspace(-1, 1, 28 * 3, dtype=np.float32).reshape(28, 3),
         "c": _f32(1, -1, 0.5)}),
    "prelu_channel_slope": (17, [N("PRelu", ["x", "s"], ["y"])],
                            {"s": _f32(0.1, -0.2, 0.3, 2).reshape(4, 1, 1)}),
    "batchnorm_rank3_opset7": (
        7, [N("Reshape", ["x", "sh"], ["m"]), N("BatchNormalization", ["m", "g", "b", "mu", "v"],
                                                ["y"], epsilon=1e-3)],
        {"sh": _i64(1, 4, 63), "g": _f32(1, 2, 0.5, 1), "b": _f32(0, 1, -1, 0.1),
         "mu": _f32(0.1, 0, -0.1, 0.2), "v": _f32(1, 0.5, 2, 1)}),
    "instance_norm_rank3": (17, [N("Reshape", ["x", "sh"], ["m"]),
                                 N("InstanceNormalization", ["m", "g", "b"], ["y"])],
                            {"sh": _i64(1, 4, 63), "g": _f32(1, 2, 0.5, 1),
                             "b": _f32(0, 1, -1, 0.1)}),
    "flatten_negative_axis": (17, [N("Flatten", ["x"], ["y"], axis=-3)], {}),
    "gather_runtime_indices": (17, [N("Gather", ["x", "idx"], ["y"], axis=3)], {}),
    "shape_start_end_reshape": (
        17, [N("Shape", ["x"], ["s"], start=1, end=-1),
             N("Concat", ["one", "s", "nine"], ["t"], axis=0),
             N("Reshape", ["x", "t"], ["y"])],
        {"one": _i64(1), "nine": _i64(9)}),
    "constant_of_shape_add": (
        17, [N("Shape", ["x"], ["s"]),
             N("ConstantOfShape", ["s"], ["c"], value=numpy_helper.from_array(_f32(0.25))),
             N("Add", ["x", "c"], ["y"])], {}),
    "cast_runtime_to_int32": (17, [N("Cast", ["x"], ["y"], to=TensorProto.INT32)], {}),
    "hard_sigmoid_leaky_relu": (17, [N("HardSigmoid", ["x"], ["h"], alpha=0.3, beta=0.4),
                                     N("LeakyRelu", ["h"], ["y"], alpha=0.2)], {}),
    "elementwise_chain": (
        17, [N("Neg", ["x"], ["n"]), N("Exp", ["n"], ["e"]),
             N("Sqrt", ["e"], ["s"]), N("Reciprocal", ["s"], ["r"]),
             N("Pow", ["r", "k"], ["p"]), N("Div", ["p", "x"], ["d"]), N("Sub", ["d", "x"], ["y"])],
        {"k": np.array(2, np.int64)}),
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_opset_variant_matches_onnxruntime(case, ort):
    opset, nodes, inits = VARIANTS[case]
    for i, n in enumerate(nodes):
        n.name = n.name or f"{case}_{i}"
    inputs = [_vi("x", [1, 4, 7, 9])]
    feeds = {"x": np.random.default_rng(3).standard_normal((1, 4, 7, 9)).astype(np.float32)}
    if any("idx" in n.input for n in nodes):
        inputs.append(_vi("idx", [2, 3], TensorProto.INT64))
        feeds["idx"] = np.array([[0, 8, 3], [-1, 2, 2]], np.int64)
    out_type = TensorProto.INT32 if nodes[-1].op_type == "Cast" else TensorProto.FLOAT
    model = _model(nodes, inputs, [helper.make_tensor_value_info("y", out_type, None)],
                   [numpy_helper.from_array(v, k) for k, v in inits.items()], opset=opset)
    (want,) = ort_outputs(ort, model, feeds)
    graph = import_onnx(model)
    got = interpret.run_graph(graph, feeds)["y"]
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        assert_close_to_range(got, want, 1e-5, case)
    else:
        np.testing.assert_array_equal(got, want)


def test_legacy_broadcast_before_opset7():
    """Add-6 with broadcast=1, axis=1 lines B up with A's axes 1..2 (onnxruntime no longer
    runs opset 6, so the oracle is numpy)."""
    b = np.arange(28, dtype=np.float32).reshape(4, 7)
    model = _model([N("Add", ["x", "b"], ["y"], broadcast=1, axis=1, name="add")],
                   [_vi("x", [1, 4, 7, 9])], [_vi("y", [1, 4, 7, 9])],
                   [numpy_helper.from_array(b, "b")], opset=6)
    x = np.random.default_rng(0).standard_normal((1, 4, 7, 9)).astype(np.float32)
    got = interpret.run_graph(import_onnx(model), {"x": x})["y"]
    np.testing.assert_array_equal(got, x + b[None, :, :, None])


# --- errors --------------------------------------------------------------------------------------
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
    (helper.make_node("Resize", ["x", "", "s"], ["y"], mode="spline", name="up"),
     r"node 'up'.*attribute mode='spline'"),
    (helper.make_node("Pad", ["x", "p"], ["y"], mode="mirror", name="pad7"),
     r"node 'pad7'.*attribute mode='mirror'"),
    (helper.make_node("QuantizeLinear", ["x", "s"], ["y"], axis=2, name="q"),
     r"node 'q'.*per-axis QuantizeLinear/DequantizeLinear on run-time tensors"),
    (helper.make_node("ConvTranspose", ["x3", "w3"], ["y"], name="deconv3d",
                      auto_pad="SAME_UPPER"),
     r"node 'deconv3d' \(op 'ConvTranspose', opset 17\): 3-D ConvTranspose with auto_pad"),
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

