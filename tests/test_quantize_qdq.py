"""Pre-quantized ONNX (QDQ) models: QuantizeLinear/DequantizeLinear on run-time tensors import as
QUANTIZE/DEQUANTIZE (int8 activations as uint8 with the zero point moved by 128), the fold_qdq
pass turns DQ -> conv/add -> Q into int8 ops, and the plans run against onnxruntime."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine.ir import DType, Op
from tests.conftest import ort_run


def qdq_conv_model(act_dtype: int, seed: int = 0) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(w int8 per channel), b) -> Relu -> Q -> DQ -> y."""
    rng = np.random.default_rng(seed)
    zp = np.array(-128 if act_dtype == TensorProto.INT8 else 0,
                  np.int8 if act_dtype == TensorProto.INT8 else np.uint8)
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    ws = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(1 / 255, np.float32), "xs"), (zp, "xz"), (wq, "wq"), (ws, "ws"),
        (np.zeros(8, np.int8), "wz"), (rng.normal(0, 0.1, 8).astype(np.float32), "b"),
        (np.array(0.02, np.float32), "ys"), (zp, "yz")]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 11, 13])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 8, 11, 13])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("act_dtype", [TensorProto.UINT8, TensorProto.INT8],
                         ids=["uint8", "int8"])
def test_qdq_conv_matches_onnxruntime(ort, act_dtype):
    model = qdq_conv_model(act_dtype)
    from mobile_engine.compiler import optimized_graph
    graph, _ = optimized_graph(model.SerializeToString())
    # folded: the input's QUANTIZE, one int8 conv writing uint8, the output's DEQUANTIZE
    assert graph.count(Op.QUANTIZE) == 1 and graph.count(Op.DEQUANTIZE) == 1
    (conv,) = [n for n in graph.nodes if n.op is Op.CONV2D]
    x_t, w_t, y_t = (graph.tensors[n] for n in (conv.inputs[0], conv.inputs[1], conv.outputs[0]))
    assert (x_t.dtype, w_t.dtype, y_t.dtype) == (DType.UINT8, DType.INT8, DType.UINT8)
    # int8 with zero point -128 runs as uint8 with zero point 0: the same real values
    assert x_t.quant.zero_point == (0,) and y_t.quant.zero_point == (0,)
    x = (np.random.default_rng(1).integers(0, 256, (1, 3, 11, 13)) / 255).astype(np.float32)
    plan = me.compile(model.SerializeToString())
    kernels = [s["kernel"] for s in plan.steps]
    assert any(k.startswith("qu8_conv2d") and k.endswith("requant") for k in kernels), kernels
    assert not any(k.startswith("f32_conv2d") for k in kernels), kernels
    ours = me.Session(plan).run(None, {"x": x})[0]
    (ref,) = ort_run(ort, model, {"x": x})
    # outputs are multiples of 0.02: equal, or one step apart where a float32 sum lands on a
    # rounding boundary differently (measured: all equal)
    steps = np.rint(np.abs(ours - ref) / 0.02)
    assert steps.max() <= 1 and np.mean(steps > 0) < 0.01


def test_arbitrary_predict_runs_close_to_onnxruntime(ort):
    """The real QDQ MobileNetV2 style predictor. Measured against onnxruntime (which runs its
    own int8 kernels): max |diff| 0.020, mean 0.006 over outputs in [-2.0, 2.4] (one-step
    flips of intermediate quantizations, amplified)."""
    from mobile_engine import zoo
    try:
        path = str(zoo.model_path("arbitrary_predict"))
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    feed = {"style_image": np.random.default_rng(0).random((1, 256, 256, 3), np.float32)}
    plan = me.compile(path)
    kernels = [s["kernel"] for s in plan.steps]
    # every conv and add folded into int8 kernels: Q/DQ only at the input and output
    assert not any(k.startswith(("f32_conv2d", "f32_dwconv2d", "f32_vbinary")) for k in kernels)
    assert sum(k.startswith("qu8_conv2d") for k in kernels) == 36
    assert sum(k.startswith("qu8_dwconv2d") for k in kernels) == 17
    assert kernels.count("qu8_add_requant") == 10
    ours = me.Session(plan, threads=2).run(None, feed)[0]
    (ref,) = ort_run(ort, path, feed)
    d = np.abs(ours - ref)
    assert d.max() <= 0.05 and d.mean() <= 0.012, (d.max(), d.mean())
