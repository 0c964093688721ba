"""nchw_tail in int8 compiles (issue 4): the few-channel tail stays float and planar, the body
int8, the last residual norm + add writes float for it; with nchw_tail off the few-channel convs
stay float all the same (quantize_int8's few_channel_float rule), NHWC."""
import numpy as np
import pytest

import mobile_engine as me
from mobile_engine.calibration import calibrate
from mobile_engine.compiler import optimized_graph
from mobile_engine.ir import Activation, DType, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes.quantize_int8 import quantize_int8
from tests.passes.helpers import NHWC_TO_NCHW, rand
from tests.test_quantize_helpers import sqnr_db

C, H, W = 16, 6, 8
TAIL = ("up0", "up1", "out")


def conv(b, x, ci, co, name, k=3, seed=1, **attrs):
    attrs.setdefault("pads", (k // 2,) * 4)
    w = b.const(rand((co, ci, k, k), seed, scale=1 / np.sqrt(ci * k * k)))
    return b.node(Op.CONV2D, x, w, b.const(rand((co,), seed + 1, 0.1)), name=name,
                  pad_mode="reflect", **attrs)


def norm(b, x, c, act=Activation.RELU, seed=7):
    scale = b.const(np.random.default_rng(seed).uniform(0.5, 1.5, c).astype(np.float32))
    return b.node(Op.INSTANCE_NORM, x, scale, b.const(rand((c,), seed + 1, 0.3)), activation=act)


def tail_net():
    """NHWC input -> conv 16->16, norm + relu (r) -> conv 16->16, norm -> ADD r (the residual
    stream) -> multistyle26's expand tail: up2 3x3 16->8, norm + relu, up2 3x3 8->4, norm +
    relu, 5x5 4->3, norm + sigmoid -> TRANSPOSE to NCHW."""
    b = GraphBuilder("tail_net")
    x = b.input("x", (1, H, W, C))
    r = norm(b, conv(b, x, C, C, "body0"), C)
    t = norm(b, conv(b, r, C, C, "body1", seed=3), C, Activation.NONE, seed=9)
    s = b.node(Op.ADD, r, t, name="add")
    up = {"upsample": 2}
    y = norm(b, conv(b, s, C, 8, "up0", seed=5, **up), 8, seed=11)
    y = norm(b, conv(b, y, 8, 4, "up1", seed=13, **up), 4, seed=15)
    y = norm(b, conv(b, y, 4, 3, "out", k=5, seed=17), 3, Activation.SIGMOID, seed=19)
    return b.build(b.node(Op.TRANSPOSE, y, perm=NHWC_TO_NCHW))


def feeds(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (1, H, W, C)).astype(np.float32)} for _ in range(n)]


@pytest.fixture(scope="module")
def planar():
    """(float graph through the pipeline, its int8 rewrite)."""
    graph, _ = optimized_graph(tail_net())
    return graph, quantize_int8(graph, calibrate(graph, feeds(3)))


def test_tail_is_planar_float_and_body_int8(planar):
    graph, r = planar
    g, t = r.graph, r.graph.tensors
    assert g.count(Op.TRANSPOSE) == 0                      # nchw_tail ran before quantize_int8
    convs = {n.name: n for n in g.nodes if n.op is Op.CONV2D}
    for name in ("body0", "body1"):
        assert t[convs[name].inputs[1]].dtype is DType.INT8, name
        assert t[convs[name].inputs[0]].dtype is DType.UINT8, name
    for name in TAIL:
        n = convs[name]
        assert n.attrs["out_layout"] == "nchw", name
        assert all(t[i].dtype is DType.FLOAT32 and t[i].quant is None for i in n.inputs if i)
    assert [convs[n].attrs["in_layout"] for n in TAIL] == ["nhwc", "nchw", "nchw"]
    norms = [n for n in g.nodes if n.op is Op.INSTANCE_NORM][-3:]
    assert all(n.attrs["layout"] == "nchw" and t[n.outputs[0]].dtype is DType.FLOAT32
               for n in norms)
    # the residual add feeding the float tail: reads the stream as uint8, writes float
    add = g.node("add")
    assert t[add.outputs[0]].dtype is DType.FLOAT32
    assert DType.UINT8 in [t[i].dtype for i in add.inputs]
    assert sorted(r.quantized) == ["add", "body0", "body1"] and r.few_channel_float == []
    assert g.outputs == graph.outputs and t[g.outputs[0]].shape == (1, 3, 4 * H, 4 * W)


def test_planar_int8_plan_runs_the_pixel_kernels(planar):
    """The lowered int8 plan: qu8 body, fp32 planar tail (no transpose step), close to the
    float graph's interpretation. Measured SQNR 43.1 / 38.1 / 32.8 dB (random weights and
    inputs; the assert leaves 1 dB for other CPUs' rounding)."""
    graph, r = planar
    from mobile_engine.compiler import plan_from_graph
    plan = plan_from_graph(r.graph)
    kernels = {s["name"]: s["kernel"] for s in plan.steps}
    assert all(kernels[n].startswith("qu8_conv2d") for n in ("body0", "body1"))
    assert all(kernels[n].startswith("f32_conv2d_pix") for n in TAIL), kernels
    assert sum("instance_norm_nchw" in k for k in kernels.values()) == 3
    assert not any("transpose" in k for k in kernels.values()), kernels
    sess = me.Session(plan, threads=2)
    out = graph.outputs[0]
    sqnr = [sqnr_db(run_graph(graph, f)[out], sess.run(None, f)[0]) for f in feeds(3, seed=1)]
    assert min(sqnr) >= 31.8, sqnr


def test_int8_compile_keeps_the_tail_planar_or_few_channel_float():
    """compile(quantize="int8") runs nchw_tail (no transpose step, planar norms); with it
    switched off the few-channel convs are float all the same (NHWC pixel-lane kernels)."""
    cal = feeds(3)
    plan = me.compile(tail_net(), quantize="int8", calibration=cal)
    kernels = {s["name"]: s["kernel"] for s in plan.steps}
    assert all(kernels[n].startswith("f32_conv2d_pix") for n in TAIL)
    assert not any("transpose" in k for k in kernels.values())
    q = plan.manifest["provenance"]["quantization"]
    assert q["few_channel_float"] == [] and "nchw_tail" in \
        [p["name"] for p in plan.manifest["passes"] if p["rewrites"]]

    nhwc = me.compile(tail_net(), quantize="int8", calibration=cal, disable_passes=["nchw_tail"])
    kernels = {s["name"]: s["kernel"] for s in nhwc.steps}
    assert all(kernels[n].startswith("f32_conv2d_pix") for n in TAIL)
    assert sum("transpose" in k for k in kernels.values()) == 1
    assert nhwc.manifest["provenance"]["quantization"]["few_channel_float"] == list(TAIL)
    a = me.Session(plan).run(None, cal[0])[0]
    b = me.Session(nhwc).run(None, cal[0])[0]
    np.testing.assert_allclose(a, b, atol=1e-5)            # the same math in either layout


def qdq_body_float_tail():
    """A pre-quantized body (x -> Q -> DQ -> Conv(DQ(w int8)) 3->8 -> Relu -> Q -> DQ), then a
    float instance norm and a float few-channel conv 8->3 writing the NCHW output (a conv
    reading DQ directly would fold into int8)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    ws = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (np.array(1 / 255, np.float32), "xs"), (np.array(0, np.uint8), "xz"), (wq, "wq"),
        (ws, "ws"), (np.zeros(8, np.int8), "wz"), (rng.normal(0, 0.1, 8).astype(np.float32), "b"),
        (np.array(0.02, np.float32), "ys"), (np.array(0, np.uint8), "yz"),
        (rng.normal(0, 0.2, (3, 8, 3, 3)).astype(np.float32), "w2"),
        (rng.uniform(0.5, 1.5, 8).astype(np.float32), "g"),
        (rng.normal(0, 0.3, 8).astype(np.float32), "be")]]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "ys", "yz"], ["rd"]),
             helper.make_node("InstanceNormalization", ["rd", "g", "be"], ["n"]),
             helper.make_node("Conv", ["n", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "qdq_tail", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 11, 13])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 3, 11, 13])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_qdq_model_folds_first_then_its_float_tail_goes_planar(ort):
    from tests.conftest import ort_run
    model = qdq_body_float_tail()
    plan = me.compile(model.SerializeToString())
    kernels = [s["kernel"] for s in plan.steps]
    assert any(k.startswith("qu8_conv2d") for k in kernels), kernels      # the body folded
    assert kernels[-1].startswith("f32_conv2d_pix"), kernels             # writes NCHW itself
    assert not any("transpose_nhwc_to_nchw" in k for k in kernels), kernels
    assert [p["rewrites"] for p in plan.manifest["passes"] if p["name"] == "nchw_tail"] == [1]
    x = (np.random.default_rng(1).integers(0, 256, (1, 3, 11, 13)) / 255).astype(np.float32)
    (ref,) = ort_run(ort, model, {"x": x})
    np.testing.assert_allclose(me.Session(plan).run(None, {"x": x})[0], ref, atol=1e-4)
