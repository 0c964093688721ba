"""QDQ graphs as exporters write them (NCHW, float layout and statistics ops between
QuantizeLinear/DequantizeLinear): layout ops move uint8 bytes and fold into the int8 convs,
written-out norms become one stats-LUT step; against onnxruntime running the graph op by op
(graph optimizations off: the ONNX semantics of every Q/DQ)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine.compiler import optimized_graph
from mobile_engine.ir import Op


def _reference(ort, model: onnx.ModelProto, feeds: dict):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


class _Net:
    """A tiny ONNX builder: uint8 Q/DQ pairs with their own (scale, zero point)."""

    def __init__(self):
        self.nodes, self.inits, self.k = [], [], 0

    def name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def const(self, value, dtype=np.float32):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), n))
        return n

    def node(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def qdq(self, x, scale, zp):
        s, z = self.const(scale), self.const(zp, np.uint8)
        return self.node("DequantizeLinear", [self.node("QuantizeLinear", [x, s, z]), s, z])

    def conv(self, x, rng, ci, co, k, **attrs):
        w = rng.normal(0, 0.5 / np.sqrt(ci * k * k), (co, ci, k, k)).astype(np.float32)
        ws = (np.abs(w).reshape(co, -1).max(axis=1) / 127).astype(np.float32)
        wq = np.clip(np.rint(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
        wd = self.node("DequantizeLinear", [self.const(wq, np.int8), self.const(ws),
                                            self.const(np.zeros(co, np.int8), np.int8)], axis=0)
        b = self.const(rng.normal(0, 0.05, co))
        return self.node("Conv", [x, wd, b], kernel_shape=[k, k], **attrs)

    def model(self, inputs, out, out_shape):
        graph = helper.make_graph(self.nodes, "qdq", inputs, [helper.make_tensor_value_info(
            out, TensorProto.FLOAT, out_shape)], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def layout_model(c: int, h: int, w: int, seed: int = 0) -> onnx.ModelProto:
    """x -> Q/DQ -> reflect Pad -> Q/DQ -> Conv 3x3 -> Relu -> Q/DQ -> nearest Resize x2 ->
    reflect Pad -> Q/DQ -> Conv 3x3 -> Q/DQ -> y (all NCHW, Pads and Resize in float)."""
    rng = np.random.default_rng(seed)
    n = _Net()
    pads = n.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    x = n.qdq("x", 1 / 255, 0)
    x = n.qdq(n.node("Pad", [x, pads], mode="reflect"), 1 / 255, 0)
    y = n.node("Relu", [n.conv(x, rng, c, 8, 3)])
    y = n.qdq(y, 0.02, 0)
    y = n.node("Resize", [y, "", n.const([1, 1, 2, 2])], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    y = n.qdq(n.node("Pad", [y, pads], mode="reflect"), 0.02, 0)
    y = n.qdq(n.conv(y, rng, 8, 4, 3), 0.03, 128)
    return n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])], y,
                   [1, 4, 2 * h, 2 * w])


def style_norm_model(c: int, h: int, w: int, expose_mean: bool = False) -> onnx.ModelProto:
    """arbitrary_transform's StyleNorm as its (TensorFlow) exporter wrote it: NHWC x
    [1, H, W, C] transposed to NCHW and quantized, run-time gamma and beta [1, C, 1, 1]; mean,
    squared difference, variance, rsqrt, scale and shift each quantized; relu; the float
    output transposed back to NHWC."""
    n = _Net()
    x = n.qdq(n.node("Transpose", ["x"], perm=[0, 3, 1, 2]), 1 / 255, 0)
    m = n.qdq(n.node("GlobalAveragePool", [x]), 0.004, 0)
    d = n.node("Sub", [x, m])
    v = n.qdq(n.node("GlobalAveragePool", [n.qdq(n.node("Mul", [d, d]), 0.0015, 0)]), 0.0005, 0)
    a = n.qdq(n.node("Add", [v, n.const(np.full((1, 1, 1, 1), 1e-3))]), 0.0005, 0)
    r = n.qdq(n.node("Reciprocal", [n.node("Sqrt", [a])]), 0.06, 0)
    g, b = n.qdq("gamma", 0.01, 100), n.qdq("beta", 0.01, 128)
    mul = n.qdq(n.node("Mul", [r, g]), 0.06, 128)
    sub = n.qdq(n.node("Sub", [b, n.qdq(n.node("Mul", [m, mul]), 0.03, 128)]), 0.03, 160)
    y = n.node("Relu", [n.node("Add", [n.qdq(n.node("Mul", [x, mul]), 0.05, 128), sub])])
    y = n.node("Transpose", [n.qdq(y, 0.02, 0)], perm=[0, 2, 3, 1])
    vi = helper.make_tensor_value_info
    model = n.model([vi("x", TensorProto.FLOAT, [1, h, w, c]),
                     vi("gamma", TensorProto.FLOAT, [1, c, 1, 1]),
                     vi("beta", TensorProto.FLOAT, [1, c, 1, 1])], y, [1, h, w, c])
    if expose_mean:             # a chain value read outside the chain: no fusion
        model.graph.output.append(vi(m, TensorProto.FLOAT, [1, c, 1, 1]))
    return model


@pytest.mark.parametrize("c,h,w", [(3, 9, 11), (13, 16, 16)])
def test_pads_and_resize_fold_into_int8_convs(ort, c, h, w):
    model = layout_model(c, h, w)
    graph, _ = optimized_graph(model.SerializeToString())
    assert graph.count(Op.PAD) == graph.count(Op.RESIZE) == 0
    convs = [n for n in graph.nodes if n.op is Op.CONV2D]
    assert [(n.attrs["pad_mode"], n.attrs["pads"], n.attrs["upsample"]) for n in convs] == \
        [("reflect", (1, 1, 1, 1), 1), ("reflect", (1, 1, 1, 1), 2)]
    assert all(graph.tensors[n.inputs[0]].dtype.value == "uint8" for n in convs)
    # only the NCHW boundary transposes remain (input and output)
    assert graph.count(Op.TRANSPOSE) <= 2
    x = (np.random.default_rng(1).integers(0, 256, (1, c, h, w)) / 255).astype(np.float32)
    plan = me.compile(model.SerializeToString())
    kernels = [s["kernel"] for s in plan.steps]
    assert not any("pad" in k or "resize" in k for k in kernels), kernels
    ours = me.Session(plan).run(None, {"x": x})[0]
    (ref,) = _reference(ort, model, {"x": x})
    # outputs are multiples of 0.03: equal, or one step apart where onnxruntime's float conv
    # lands on a rounding tie differently from the exact integer one
    steps = np.rint(np.abs(ours - ref) / 0.03)
    assert steps.max() <= 1 and np.mean(steps > 0) < 0.01


@pytest.mark.parametrize("c,h,w", [(1, 7, 5), (3, 16, 16), (32, 24, 20)])
def test_written_out_style_norm_is_one_lut_step(ort, c, h, w):
    model = style_norm_model(c, h, w)
    plan = me.compile(model.SerializeToString())
    kernels = [s["kernel"] for s in plan.steps]
    # the norm: one step; the inputs' QUANTIZE (x, gamma, beta) and the boundary layout moves
    assert kernels.count("qu8_stats_lut_nhwc_f32") == 1, kernels
    assert not any(k.startswith(("f32_", "qu8_dequantize")) for k in kernels), kernels
    rng = np.random.default_rng(c)
    for trial in range(3):
        feeds = {"x": (rng.integers(0, 256, (1, h, w, c)) / 255).astype(np.float32)
                 * np.float32(rng.uniform(0.05, 1)),
                 "gamma": rng.normal(0.5, 0.4, (1, c, 1, 1)).astype(np.float32),
                 "beta": rng.normal(0, 0.4, (1, c, 1, 1)).astype(np.float32)}
        ours = me.Session(plan).run(None, feeds)[0]
        (ref,) = _reference(ort, model, feeds)
        # the same float32 arithmetic: equal but where a channel mean sits on a rounding tie
        # (onnxruntime sums float32 in its own order, the kernel exactly)
        steps = np.rint(np.abs(ours - ref) / 0.02)
        assert np.mean(steps > 0) < 0.01, (trial, steps.max(), np.mean(steps > 0))
        assert len(np.unique(ref)) > 3


def test_style_norm_with_a_value_read_outside_stays_op_by_op(ort):
    """A chain whose per-channel mean is also a graph output has two outputs: it is not fused
    (the ops run one by one) and both outputs still match."""
    c, h, w = 5, 8, 6
    model = style_norm_model(c, h, w, expose_mean=True)
    plan = me.compile(model.SerializeToString())
    kernels = [s["kernel"] for s in plan.steps]
    assert not any(k.startswith("qu8_stats_lut") for k in kernels), kernels
    rng = np.random.default_rng(3)
    feeds = {"x": (rng.integers(0, 256, (1, h, w, c)) / 255).astype(np.float32),
             "gamma": rng.normal(0.5, 0.4, (1, c, 1, 1)).astype(np.float32),
             "beta": rng.normal(0, 0.4, (1, c, 1, 1)).astype(np.float32)}
    ours = me.Session(plan).run(None, feeds)
    refs = _reference(ort, model, feeds)
    np.testing.assert_allclose(ours[1], refs[1], atol=1e-6)          # the mean: exact
    # one step apart at rounding ties: op by op, qu8_quantize multiplies by f32(1 / s) where
    # QuantizeLinear divides by s, and QDQ chains hit exact ties often (products of grids:
    # measured 9 of 240 outputs here; the stats-LUT step divides and matches)
    steps = np.rint(np.abs(ours[0] - refs[0]) / 0.02)
    assert steps.max() <= 1 and np.mean(steps > 0) < 0.1, (steps.max(), np.mean(steps > 0))


def test_chain_without_constants_saves_and_loads(ort, tmp_path):
    """x - Q(mean(x)): a stats-LUT step with no constant registers still makes a plan file
    (no 0-byte blob), and the loaded plan matches onnxruntime."""
    c, h, w = 4, 5, 6
    n = _Net()
    x = n.qdq(n.node("Transpose", ["x"], perm=[0, 3, 1, 2]), 1 / 255, 0)
    m = n.qdq(n.node("GlobalAveragePool", [x]), 0.004, 0)
    y = n.node("Transpose", [n.qdq(n.node("Sub", [x, m]), 0.004, 128)], perm=[0, 2, 3, 1])
    model = n.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, h, w, c])], y,
                    [1, h, w, c])
    plan = me.compile(model.SerializeToString())
    assert [s["kernel"] for s in plan.steps].count("qu8_stats_lut_nhwc_f32") == 1
    loaded = me.Session(plan.save(tmp_path / "chain.mplan"))
    x = np.random.default_rng(0).random((1, h, w, c), np.float32)
    ours = loaded.run(None, {"x": x})[0]
    (ref,) = _reference(ort, model, {"x": x})
    steps = np.rint(np.abs(ours - ref) / 0.004)
    assert steps.max() <= 1 and np.mean(steps > 0) < 0.05
