"""Lowered int8 plans against the quantized graph: each quantized op compiled into a plan and
run by a Session, compared with an independent integer reference (kernels/reference_q8.py,
bit-exact) and with the IR's interpretation (uint8 within one step where float rounding of the
norm may differ, float outputs to float32 rounding)."""
import numpy as np
import pytest

import mobile_engine as me
from kernels import reference_q8 as rq
from mobile_engine.calibration import calibrate
from mobile_engine.compiler import plan_from_graph
from mobile_engine.ir import Activation, DType, GraphBuilder, Op, QuantParams
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes.quantize_int8 import quantize_int8
from mobile_engine.plan import Plan
from quantize.weights import quantize_weights
from tests.test_quantize_helpers import image_feeds, style_net

RNG = np.random.default_rng(7)
SX, ZX = 0.043, 9


def conv_graph(h, w, c, co, k, stride, pad_mode, upsample, out, act, group=1):
    b = GraphBuilder("qconv")
    x = b.input("x", (1, h, w, c), DType.UINT8)
    b.graph.tensors[x].quant = QuantParams((SX,), (ZX,))
    wf = RNG.normal(0, 1, (co, c // group, k, k)) * RNG.uniform(0.05, 1, (co, 1, 1, 1))
    wq, wp = quantize_weights(wf.astype(np.float32))
    wn = b.const(wq)
    b.graph.tensors[wn].quant = wp
    bias = RNG.normal(0, 1, co).astype(np.float32)
    params = (-0.5, 1.5) if act is Activation.CLAMP else ()
    y = b.node(Op.CONV2D, x, wn, b.const(bias), strides=(stride, stride), pads=(k // 2,) * 4,
               pad_mode=pad_mode, upsample=upsample, group=group, activation=act,
               act_params=params)
    g = b.build(y)
    if out == "u8":
        g.tensors[y].dtype, g.tensors[y].quant = DType.UINT8, QuantParams((0.11,), (100,))
    return g, wq, wp, bias


# (h, w, c, co, k, stride, pad mode, upsample, output, activation, group): channel counts 1, 3,
# 13, 24, 32, 65 over the three tiles (16/32/64 lanes) and both epilogues
CONVS = [
    (19, 23, 3, 32, 9, 1, "reflect", 1, "f32", Activation.NONE, 1),      # multistyle26's first
    (21, 45, 32, 32, 3, 2, "reflect", 1, "f32", Activation.NONE, 1),
    (9, 11, 32, 8, 3, 1, "reflect", 2, "f32", Activation.RELU, 1),       # nearest 2x upsample
    (10, 13, 13, 24, 3, 1, "constant", 1, "u8", Activation.RELU, 1),     # zero-padded taps
    (7, 9, 24, 65, 1, 1, "constant", 1, "u8", Activation.NONE, 1),
    (8, 41, 1, 13, 3, 1, "edge", 1, "u8", Activation.CLAMP, 1),
    (6, 7, 16, 16, 3, 1, "constant", 1, "u8", Activation.NONE, 4),       # grouped
    (9, 12, 24, 24, 3, 2, "constant", 1, "u8", Activation.RELU, 24),     # depthwise
    (7, 10, 13, 26, 5, 1, "reflect", 1, "f32", Activation.NONE, 13),     # multiplier 2
    (12, 37, 4, 3, 9, 1, "reflect", 1, "u8", Activation.NONE, 1),        # few channels: kdot16
    (11, 19, 8, 4, 3, 1, "reflect", 2, "f32", Activation.RELU, 1),
    (9, 21, 5, 1, 3, 2, "constant", 1, "u8", Activation.CLAMP, 1),
]


@pytest.mark.parametrize("co,group,family", [(3, 1, "kdot16"), (8, 1, "kdot16"),
                                             (9, 1, "igemm"), (8, 2, "igemm")])
def test_few_channel_int8_convs_run_kdot16(co, group, family):
    """Group-1 int8 convs with at most 8 output channels take the 16-byte-dot kernel (1.7-2.5x
    the igemm's speed on multistyle26's 32->8, 8->4 and 4->3 layers, serial, measured)."""
    g, *_ = conv_graph(9, 11, 8, co, 3, 1, "reflect", 1, "u8", Activation.NONE, group)
    (step,) = plan_from_graph(g).steps
    assert step["kernel"].startswith(f"qu8_conv2d_{family}_"), step["kernel"]


@pytest.mark.parametrize("case", CONVS, ids=[f"{c[2]}to{c[3]}-k{c[4]}s{c[5]}-{c[6]}-up{c[7]}-"
                                             f"{c[8]}-{c[9].name.lower()}-g{c[10]}" for c in CONVS])
def test_qconv_plan_is_bit_exact(case):
    h, w, c, co, k, stride, pad_mode, up, out, act, group = case
    g, wq, wp, bias = conv_graph(*case)
    sess = me.Session(plan_from_graph(g), threads=2)
    xv = RNG.integers(0, 256, (1, h, w, c)).astype(np.uint8)
    (got,) = sess.run(None, {"x": xv})
    bq = rq.conv_bias_q(bias, wq, SX, wp.scale, ZX)
    kw = dict(strides=(stride, stride), pads=(k // 2,) * 4, pad_mode=pad_mode, upsample=up,
              group=group)
    if out == "u8":
        sy, zy = 0.11, 100
        qmin, qmax = {Activation.NONE: (0, 255), Activation.RELU: (zy, 255),
                      Activation.CLAMP: (int(np.rint(-0.5 / sy)) + zy,
                                         int(np.rint(1.5 / sy)) + zy)}[act]
        ref = rq.qu8_conv2d_reference(xv, wq, bq, rq.requant_multiplier(SX, wp.scale, sy), ZX,
                                      zy, qmin, qmax, **kw)
        np.testing.assert_array_equal(got, ref)
        interp = run_graph(g, {"x": xv})[g.outputs[0]]
        assert np.abs(got.astype(int) - interp).max() <= 1       # rounding of b / (sx sw)
    else:
        ref = rq.qu8_conv2d_reference(xv, wq, bq, rq.requant_multiplier(SX, wp.scale), ZX, 0, 0,
                                      255, out_mode="fp32out", act=int(act), **kw)
        np.testing.assert_array_equal(got, ref)
        interp = run_graph(g, {"x": xv})[g.outputs[0]]
        # the interpretation's float bias vs the kernel's rint(b / (sx sw)): half a step of
        # sx * sw per channel, plus float32 rounding of the sums
        tol = SX * np.asarray(wp.scale)[None, None, None, :] * 0.5 + 1e-5 * np.abs(interp).max()
        assert np.all(np.abs(got - interp) <= tol)


@pytest.fixture(scope="module")
def style():
    net = style_net(h=22, w=30, c=16)
    feeds = image_feeds(net, 6)
    result = quantize_int8(net, calibrate(net, feeds[:4]))
    return net, result, feeds[4:]


def test_style_net_plan_matches_interpretation_per_step(style):
    """Every step of the int8 plan against the interpretation of the int8 graph, fed the
    interpretation's inputs: uint8 outputs of quantize/conv steps exact, of norm steps within
    one step (float32 norm vs the float64 reference), float outputs to float32 rounding."""
    net, result, feeds = style
    g = result.graph
    plan = plan_from_graph(g)
    kernels = [s["kernel"] for s in plan.steps]
    assert "qu8_quantize" in kernels
    # every conv -> norm (-> add) pair into uint8 is one step; the style's u @ G is computed
    # by the norm (no dequantize, mul or reduce steps)
    assert sum(k.startswith("qu8_conv2d_igemm") and k.endswith("_instance_norm")
               for k in kernels) == 4, kernels
    assert sum(k.endswith("_instance_norm_add") for k in kernels) == 2, kernels
    assert not any(k.startswith(("qs8_dequantize", "f32_vbinary", "f32_reduce"))
                   for k in kernels), kernels
    sess = me.Session(plan, threads=2)
    for feed in feeds:
        values = {n: t.data for n, t in g.tensors.items() if t.is_const}
        values.update(feed)
        from mobile_engine.ir.interpret import evaluate, evaluate_quantized
        for node in g.nodes:
            ins = [values[i] if i else None for i in node.inputs]
            quant = node.op in (Op.QUANTIZE, Op.DEQUANTIZE) or any(
                g.tensors[n].quant is not None for n in node.inputs + node.outputs if n)
            (v,) = evaluate_quantized(node, g, ins) if quant else evaluate(node, ins)
            values[node.outputs[0]] = np.asarray(v).astype(
                g.tensors[node.outputs[0]].dtype.np).reshape(g.tensors[node.outputs[0]].shape)
        seen = {}

        def check(i, outs):
            step = plan.steps[i]
            for name, arr in zip(step["outputs"], outs):
                seen[name] = True
                ref = values[name]
                if arr.dtype == np.uint8:
                    diff = np.abs(arr.astype(int) - ref.astype(int))
                    limit = 1 if "instance_norm" in step["kernel"] else 0
                    assert diff.max() <= limit, (step["name"], step["kernel"], diff.max())
                    assert np.mean(diff > 0) < 0.01, (step["name"], np.mean(diff > 0))
                else:
                    np.testing.assert_allclose(arr, ref, rtol=1e-4,
                                               atol=2e-5 * max(1.0, float(np.abs(ref).max())),
                                               err_msg=f"{step['name']} ({step['kernel']})")
        sess.run_observed(feed, check)
        assert net.outputs[0] in seen


def test_quantized_plan_survives_save_and_load(style, tmp_path):
    _, result, feeds = style
    plan = plan_from_graph(result.graph)
    path = plan.save(tmp_path / "q.mplan")
    a = me.Session(plan, threads=1).run(None, feeds[0])[0]
    b = me.Session(Plan.load(path), threads=2).run(None, feeds[0])[0]
    np.testing.assert_array_equal(a, b)


def test_uint8_add_and_dequantize_steps_are_bit_exact():
    b = GraphBuilder("qadd")
    shape = (1, 5, 7, 13)
    x1, x2 = b.input("a", shape, DType.UINT8), b.input("b", shape, DType.UINT8)
    g = b.graph
    g.tensors[x1].quant, g.tensors[x2].quant = QuantParams((0.05,), (10,)), QuantParams((0.2,), (200,))
    y = b.node(Op.ADD, x1, x2, activation=Activation.RELU)
    g.tensors[y].dtype, g.tensors[y].quant = DType.UINT8, QuantParams((0.13,), (60,))
    d = b.node(Op.DEQUANTIZE, y)
    g = b.build(y, d)
    plan = plan_from_graph(g)
    assert [s["kernel"] for s in plan.steps] == ["qu8_add_requant", "qu8_dequantize"]
    av, bv = (RNG.integers(0, 256, shape).astype(np.uint8) for _ in range(2))
    got_y, got_d = me.Session(plan).run(None, {"a": av, "b": bv})
    ref = rq.qu8_add_reference(av, 0.05, 10, bv, 0.2, 200, 0.13, 60, qmin=60)   # relu: >= zy
    np.testing.assert_array_equal(got_y, ref)
    np.testing.assert_array_equal(got_d, rq.dequantize_u8_reference(ref, 0.13, 60))
    interp = run_graph(g, {"a": av, "b": bv})
    assert np.abs(interp[y].astype(int) - got_y).max() <= 1


def test_dequantize_const_step_is_exact():
    b = GraphBuilder("dq")
    x = b.input("x", (26, 1))
    k = RNG.normal(0, 1, (26, 16)).astype(np.float32)
    y = b.node(Op.MUL, x, b.const(k))
    g = b.build(y)
    from quantize.table import QuantTable
    qg = quantize_int8(g, QuantTable()).graph
    xv = RNG.normal(0, 1, (26, 1)).astype(np.float32)
    (got,) = me.Session(plan_from_graph(qg)).run(None, {"x": xv})
    np.testing.assert_array_equal(got, run_graph(qg, {"x": xv})[y])


# --- kernels/f32_norm_qu8.py against its numpy reference (channel counts over the edges) -----
@pytest.mark.parametrize("c", [1, 3, 13, 24, 32, 63, 64, 65])
@pytest.mark.parametrize("act,params", [(Activation.NONE, ()), (Activation.RELU, ()),
                                        (Activation.CLAMP, (-0.5, 2.0)),
                                        (Activation.SIGMOID, ())])
def test_norm_qu8_kernels(c, act, params):
    from kernels import f32_norm_qu8 as knq
    rng = np.random.default_rng(c)
    shape = (2, 9, 11, c)
    x = (rng.normal(0, 1, shape) * rng.uniform(0.01, 30, c) + rng.normal(0, 50, c)) \
        .astype(np.float32)                             # large means, small spreads
    scale = rng.uniform(0.2, 2, (2, c)).astype(np.float32)       # per image, as style mixes
    bias = rng.normal(0, 1, (2, c)).astype(np.float32)
    r = rng.integers(0, 256, shape).astype(np.uint8)
    for residual in (None, r):
        kw = dict(eps=1e-5, act=int(act), act_params=params, residual=residual, rs=0.013,
                  rz=77, qmin=3, qmax=250)
        got = knq.instance_norm_qu8(x, scale, bias, 0.021, 120, **kw)
        ref = knq._reference(x, scale, bias, 0.021, 120, **kw)
        diff = np.abs(got.astype(int) - ref)
        assert diff.max() <= 1 and np.mean(diff > 0) < 0.002, (diff.max(), np.mean(diff > 0))
    # float output with the residual: clamp(norm(x) + rs (r - rz), lo, hi)
    out = np.empty(shape, np.float32)
    fn, args = knq.instance_norm_add_f32_call(x.copy(), scale, bias, out, 1e-5, int(act),
                                              params, r, 0.013, 77, -1.0, 3.0)
    fn(*args)
    from kernels import reference
    y = reference.instance_norm(x, scale, bias, epsilon=1e-5, activation_kind=act,
                                act_params=params)
    expect = np.clip(y + (r.astype(np.int32) - 77).astype(np.float32) * np.float32(0.013), -1, 3)
    np.testing.assert_allclose(out, expect, atol=2e-5)


@pytest.mark.parametrize("name", ["resnet_like", "mobilenet_like", "unet_like", "johnson_like",
                                  "classifier_head"])
def test_unseen_nets_compile_to_int8(name):
    """The rewrite only makes graphs the int8 lowerings take (conv -> conv uint8 outputs,
    depthwise and grouped convs, activations folded or kept float, pooling and resize in
    float), and the plans stay close to float. Measured PSNR: 64.6 / 66.5 / 68.8 / 33.9 dB /
    exact (the classifier has no conv)."""
    from quantize.report import psnr_db
    from tests.onnx_nets import NETS, random_feeds
    model = NETS[name]().SerializeToString()
    feeds = [random_feeds(NETS[name](), seed=s) for s in range(4)]
    plan = me.compile(model, quantize="int8", calibration=feeds[:3])
    ref = me.Session(me.compile(model)).run(None, feeds[3])[0]
    got = me.Session(plan).run(None, feeds[3])[0]
    assert psnr_db(ref, got) >= 30, psnr_db(ref, got)


def test_any_conv_kept_float_still_lowers(style):
    """A conv kept in float leaves its uint8 neighbours consistent: e.g. a residual block's
    first conv in float makes the stream's uint8 copy a QUANTIZE, which must run before the
    fused norm + add step that reads it (it runs where the norm is)."""
    net, result, feeds = style
    table = calibrate(net, image_feeds(net, 6)[:4])
    fsess = me.Session(plan_from_graph(net))
    ref = fsess.run(None, feeds[0])[0]
    for conv in [n.name for n in net.nodes if n.op is Op.CONV2D]:
        r = quantize_int8(net, table, keep_float=[conv])
        got = me.Session(plan_from_graph(r.graph)).run(None, feeds[0])[0]
        psnr = 10 * np.log10(1 / np.mean((got.astype(np.float64) - ref) ** 2))
        assert psnr > 32, (conv, psnr)              # measured 35.9-38.6 dB
