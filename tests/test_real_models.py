"""The real-model set of DATA.md (zoo_real.py) against onnxruntime at small shapes, the seeded
weights of the light nets, and the importers those models needed (LRN, Range, -1 dims)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine import zoo, zoo_real
from mobile_engine.bench_zoo import check_outputs, geomean
from mobile_engine.errors import EngineError
from tests.conftest import ort_run

# name -> input shape for the default run: the classifiers keep 224 (their Gemm is sized for it),
# the dynamic OCR and YOLO nets run small
SMALL = {"resnet50": (1, 3, 224, 224), "densenet121": (1, 3, 224, 224),
         "inception_v1": (1, 3, 224, 224), "inception_v2": (1, 3, 224, 224),
         "shufflenet": (1, 3, 224, 224), "squeezenet": (1, 3, 224, 224),
         "alexnet": (1, 3, 224, 224), "zfnet512": (1, 3, 224, 224),
         "ppocr_det": (1, 3, 64, 96), "ppocr_rec": (1, 3, 48, 96),
         "ppocr_cls": (1, 3, 48, 192), "yolov8n": (1, 3, 64, 96)}
SLOW = {"vgg19": (1, 3, 224, 224)}           # 20 GFLOP in the numpy-free path: minutes on CI


def _model(name: str):
    try:
        return zoo_real.model_file(name)
    except zoo.ZooError as exc:
        pytest.skip(str(exc))


def _compare(ort, path, shape):
    iname = zoo_real.input_name(onnx.load(str(path), load_external_data=False))
    try:
        x, _ = zoo_real.test_input(path.name.split(".")[0], shape)
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    plan = me.compile(str(path), input_shapes={iname: shape})
    ours = me.Session(plan, threads=2).run(None, {iname: x})
    theirs = ort_run(ort, str(path), {iname: x})
    names = [o["name"] for o in plan.outputs]
    rows = check_outputs(names, ours, theirs)
    bad = [r for r in rows if not r["ok"]]
    assert not bad, f"{path.name} at {shape}: outputs off onnxruntime's by more than 1e-3 of " \
                    f"their range: {bad}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_real_model_matches_onnxruntime(name, ort):
    _compare(ort, _model(name), SMALL[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_real_model_matches_onnxruntime_slow(name, ort):
    _compare(ort, _model(name), SLOW[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(zoo_real.MODELS))
def test_real_model_at_bench_shape(name, ort):
    _compare(ort, _model(name), zoo_real.spec(name).shape)


# --- seeded weights ---------------------------------------------------------------------------
def _const_of_shape_net() -> onnx.ModelProto:
    """conv -> BN -> relu -> global pool -> flatten -> gemm, every weight ConstantOfShape(0.02)
    with its shape an initializer listed among the inputs (as the Caffe2 exports do)."""
    shapes = {"w": (8, 3, 3, 3), "b": (8,), "s": (8,), "bb": (8,), "m": (8,), "v": (8,),
              "fw": (5, 8), "fb": (5,)}
    nodes, inits, inputs = [], [], [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  [1, 3, 8, 8])]
    fill = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.02])
    for k, s in shapes.items():
        inits.append(numpy_helper.from_array(np.array(s, np.int64), f"{k}__SHAPE"))
        inputs.append(helper.make_tensor_value_info(f"{k}__SHAPE", TensorProto.INT64, [len(s)]))
        nodes.append(helper.make_node("ConstantOfShape", [f"{k}__SHAPE"], [k], value=fill))
    nodes += [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
              helper.make_node("Relu", ["n"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1),
              helper.make_node("Softmax", ["g"], ["y"])]
    g = helper.make_graph(nodes, "cos", inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)


def test_seeded_weights_replace_constant_of_shape_by_role(ort):
    model = _const_of_shape_net()
    seeded = zoo_real.seeded_weights(model, seed=3)
    assert [n.op_type for n in seeded.graph.node] == \
        [n.op_type for n in model.graph.node if n.op_type != "ConstantOfShape"]
    w = {i.name: numpy_helper.to_array(i) for i in seeded.graph.initializer}
    assert not any(k.endswith("__SHAPE") for k in w)
    assert not any(i.name.endswith("__SHAPE") for i in seeded.graph.input)
    assert w["w"].shape == (8, 3, 3, 3) and w["w"].dtype == np.float32
    assert 0.5 < w["w"].std() / np.sqrt(2 / 27) < 1.5                    # He-normal, fan-in 27
    assert 0.5 < w["fw"].std() / np.sqrt(2 / 8) < 1.6
    assert np.all((w["v"] >= 0.5) & (w["v"] <= 1.5))
    assert abs(w["s"].mean() - 1) < 0.2 and abs(w["m"].mean()) < 0.2
    again = zoo_real.seeded_weights(model, seed=3)
    assert all(np.array_equal(w[i.name], numpy_helper.to_array(i))
               for i in again.graph.initializer)
    onnx.checker.check_model(seeded)
    x = np.random.default_rng(0).random((1, 3, 8, 8), np.float32)
    (y,) = ort_run(ort, seeded, {"x": x})
    assert y.std() > 1e-3                       # no longer the constant output of 0.02 weights
    tempered = zoo_real.temper_logits(seeded, x, target_std=3.0)
    (y,) = ort_run(ort, tempered, {"x": x})
    assert np.log(y).std() == pytest.approx(3.0, rel=1e-3)   # log softmax = logits - constant
    assert [n.op_type for n in tempered.graph.node] == [n.op_type for n in seeded.graph.node]


def test_check_outputs_and_geomean():
    want = np.array([0.0, 1.0, 2.0], np.float32)
    rows = check_outputs(["a", "b", "c"], [want + 1e-3, want + 3e-3, np.zeros(2)],
                         [want, want, want])
    assert [r["ok"] for r in rows] == [True, False, False]
    assert rows[0]["range"] == 2.0 and rows[2]["max_abs_diff"] is None
    assert check_outputs(["n"], [np.array([np.nan])], [np.array([1.0])])[0]["ok"] is False
    assert geomean([0.5, 2.0, None]) == pytest.approx(1.0)


# --- importers the set needed ---------------------------------------------------------------------
def _single(node, x_shape, opset=13, extra_inits=()):
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          list(extra_inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _lrn_reference(x, size, alpha, beta, bias):
    """ONNX's LRN definition, written out."""
    c = x.shape[1]
    sq = np.zeros_like(x, np.float64)
    for i in range(c):
        lo, hi = max(0, i - (size - 1) // 2), min(c - 1, i + -(-(size - 1) // 2))
        sq[:, i] = (x[:, lo:hi + 1].astype(np.float64) ** 2).sum(axis=1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize("c,size,beta", [(1, 5, 0.75), (3, 5, 0.75), (13, 3, 0.75),
                                         (13, 4, 0.75), (24, 5, 0.6), (63, 5, 0.75),
                                         (64, 5, 0.75), (65, 5, 0.6)])
def test_lrn_matches_reference(c, size, beta, ort):
    """beta 0.75 runs as square roots, other betas through pow"""
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.3, beta=beta, bias=2.0)
    model = _single(node, [1, c, 5, 7])
    x = np.random.default_rng(c).normal(size=(1, c, 5, 7)).astype(np.float32) * 3
    (y,) = me.Session(me.compile(model), threads=1).run(None, {"x": x})
    want = _lrn_reference(x, size, 0.3, beta, 2.0)
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=1e-6)
    if size % 2:                                # onnxruntime refuses even sizes
        np.testing.assert_allclose(ort_run(ort, model, {"x": x})[0], want, rtol=2e-5, atol=1e-6)


def test_range_folds_and_minus_one_dims_are_symbolic(ort):
    """x [-1, 3, 0, W] (dims stored as -1 / 0): y = x + Range(0, W, 1) on the last axis."""
    inits = [numpy_helper.from_array(np.array([3], np.int64), "i3"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i3"], ["w1"]),
             helper.make_node("Squeeze", ["w1"], ["w"], axes=[0]),
             helper.make_node("Range", ["zero", "w", "one"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["y"])]
    g = helper.make_graph(nodes, "range", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [-1, 3, 0, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    x = np.random.default_rng(1).random((2, 3, 4, 5), np.float32)
    plan = me.compile(model, input_shapes={"x": x.shape})
    assert not any("range" in s["kernel"] for s in plan.steps)
    (y,) = me.Session(plan, threads=1).run(None, {"x": x})
    np.testing.assert_array_equal(y, x + np.arange(5, dtype=np.float32))
    with pytest.raises(EngineError, match="symbolic"):
        me.compile(model)
