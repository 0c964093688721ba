"""Int8 plans with the fused conv + instance norm step (planning/families/qconv_norm.py): which
nodes fuse, the outputs against the interpretation of the int8 graph, and edited
(re-checksummed) plans refused by the binders, never a crash (the machinery of
tests/test_plan_tampering.py, over the int8 conv and norm kernels)."""
from __future__ import annotations

import numpy as np
import pytest

import mobile_engine as me
import tests.test_plan_tampering as tp
from mobile_engine.calibration import calibrate
from mobile_engine.compiler import plan_from_graph
from mobile_engine.ir import Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes.quantize_int8 import quantize_int8
from tests.test_quantize_helpers import image_feeds, style_net

FUSED = ("_instance_norm", "_instance_norm_add")


def _quantize(net, table, **kw):
    """quantize_int8 with the style matrices G[4, 16] stored int8 behind DEQUANTIZE nodes, as
    multistyle26's G[26, 32..128] are (the net is too small for the size threshold)."""
    import mobile_engine.passes.quantize_int8 as qpass
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qpass, "CONST_MIN_SIZE", 64)
        return quantize_int8(net, table, **kw).graph


@pytest.fixture(scope="module")
def calibrated():
    net = style_net(h=10, w=14, c=16, seed=3)
    feeds = image_feeds(net, 5, seed=3)
    return net, calibrate(net, feeds[:3]), feeds[3:]


@pytest.fixture(scope="module")
def quantized(calibrated):
    net, table, feeds = calibrated
    return net, _quantize(net, table), feeds


def _matches_interpretation(plan, g, feeds):
    sess = me.Session(plan, threads=2)
    for feed in feeds:
        got = sess.run(None, feed)[0]
        ref = run_graph(g, feed)[g.outputs[0]]
        # the norms' float32 statistics vs the interpretation's float64: a uint8 step here and
        # there, carried through the later layers
        assert np.abs(got - ref).max() < 0.05, np.abs(got - ref).max()
        assert np.mean(np.abs(got - ref)) < 2e-3


def test_fused_steps_replace_norms_adds_and_style_arithmetic(quantized):
    net, g, feeds = quantized
    assert g.count(Op.DEQUANTIZE) > 0            # int8 G[K, C] behind DEQUANTIZE nodes
    plan = plan_from_graph(g)
    kernels = [s["kernel"] for s in plan.steps]
    fused = [s for s in plan.steps if s["kernel"].endswith(FUSED)]
    # conv0, conv1 and the residual blocks' four convs (the float tail may add the upsampling
    # conv's); the blocks' second norms carry the residual ADD
    assert len(fused) >= 6 and sum(k.endswith(FUSED[1:]) for k in kernels) == 2, kernels
    # every int8 norm computes its u @ G: of the 3 steps per style chain (dequantize, mul,
    # reduce) only those of a float norm's chains remain (the upsampling conv's norm may be
    # float: 2 chains)
    chains = g.count(Op.DEQUANTIZE)
    assert chains >= 12
    assert sum(k.startswith(("qs8_dequantize", "f32_vbinary", "f32_reduce"))
               for k in kernels) <= 6, kernels
    # G stays int8 in the plan (a quarter of the bytes), expanded at bind time
    assert any(k.endswith("style_scale_q") for s in fused for k in s["weights"]), fused[0]
    for s in fused:        # outputs: the uint8 result and the float32 scratch of the conv
        assert len(s["outputs"]) == 2
        assert plan.manifest["tensors"][s["outputs"][0]]["dtype"] == "uint8"
        assert plan.manifest["tensors"][s["outputs"][1]]["dtype"] == "float32"
        assert s["params"]["act"] == 0 and "norm_inputs" in s["params"]
    _matches_interpretation(plan, g, feeds)


def test_norm_add_with_float_output_keeps_its_step(calibrated):
    """The last residual ADD read by a float conv (multistyle26's res.5.1 before the float
    tail) has a float32 output: its norm + add keeps its own step (families/qconv_norm.py: not
    faster fused), after the conv's plain fp32out step."""
    net, table, feeds = calibrated
    g = _quantize(net, table, keep_float=["up"])
    plan = plan_from_graph(g)
    kernels = [s["kernel"] for s in plan.steps]
    assert kernels.count("f32_instance_norm_nhwc_add_qu8_fp32out") == 1, kernels
    assert sum(k.endswith(FUSED) for k in kernels) >= 5, kernels
    _matches_interpretation(plan, g, feeds)


@pytest.fixture(scope="module")
def plan_path(calibrated, tmp_path_factory):
    net, table, _ = calibrated
    g = _quantize(net, table, keep_float=["up"])      # fused and standalone norm steps
    path = plan_from_graph(g).save(tmp_path_factory.mktemp("qtamper") / "q.mplan")
    return path


def test_tampered_fused_steps_are_refused_not_crashed(plan_path, tmp_path, monkeypatch):
    plan = me.Plan.load(plan_path)
    steps = [i for i, s in enumerate(plan.steps) if s["kernel"].endswith(FUSED)]
    chosen = {steps[0], next(i for i in steps if plan.steps[i]["kernel"].endswith(FUSED[1])),
              next(i for i, s in enumerate(plan.steps) if s["kernel"].startswith(
                  "f32_instance_norm_nhwc_add_qu8"))}
    owned = {s["kernel"] for s in plan.steps if s["kernel"].startswith(("qu8_conv2d",
                                                                        "f32_instance_norm"))}
    monkeypatch.setattr(tp, "OWNED", owned)
    paths = []
    rng = np.random.default_rng(0)
    for label, manifest in tp.variants(plan.manifest, rng):
        if not any(label.startswith(f"s{i}-") for i in chosen):
            continue
        path = tmp_path / f"{label}.mplan".replace("/", "_")
        tp._write(path, manifest, plan.blobs)
        paths.append(path)
    mine = {b for i in chosen for b in plan.manifest["steps"][i]["weights"].values()}
    for label, bi, new in tp.blob_edits(plan):
        if bi in mine:
            path = tmp_path / f"{label}.mplan"
            tp._write(path, plan.manifest, plan.blobs[:bi] + [new] + plan.blobs[bi + 1:])
            paths.append(path)
    verdicts = tp._run_worker([plan_path] + paths, tmp_path, timeout=900)
    assert verdicts[str(plan_path)] == "ran", verdicts[str(plan_path)]
    bad = tp._bad(verdicts)
    assert not bad, f"{len(bad)} of {len(paths)} edited plans misbehaved:\n" + \
        "\n".join(f"{k}: {v}" for k, v in list(bad.items())[:30])
    refused = sum(v.startswith("engine-error PlanFormatError") for v in verdicts.values())
    assert refused > len(paths) // 2, f"only {refused} of {len(paths)} edits were refused"


def test_standalone_norm_binder_reads_old_and_new_param_forms():
    """``f32_instance_norm_nhwc_qu8`` steps: scale/bias as weights ``scale``/``bias`` with
    params ``inputs`` (tags of the run-time ones), or as plans before ``inputs`` wrote them
    (weights ``in1``/``in2``); a style pair (u, G) computes the scale in the kernel."""
    from kernels import f32_norm_qu8 as knq
    from mobile_engine.runtime import validate
    from mobile_engine.runtime.binders import BINDERS
    rng = np.random.default_rng(5)
    x = (rng.normal(0, 3, (1, 6, 7, 24)) + 10).astype(np.float32)
    scale = rng.uniform(0.5, 2, 24).astype(np.float32)
    bias = rng.normal(0, 1, 24).astype(np.float32)
    u = rng.uniform(0, 1, (3, 1)).astype(np.float32)
    g = rng.uniform(0.5, 2, (3, 24)).astype(np.float32)
    gq = rng.integers(10, 128, (3, 24)).astype(np.int8)
    gs = rng.uniform(0.005, 0.02, (3, 1)).astype(np.float32)
    base = {"epsilon": 1e-5, "act": 1, "p0": 0.0, "p1": 0.0, "inplace": False, "s": 0.03,
            "z": 5, "qmin": 0, "qmax": 255}
    bind = BINDERS["f32_instance_norm_nhwc_qu8"]
    forms = [({**base, "inputs": []}, {"scale": scale, "bias": bias}, [], scale),
             (base, {"in1": scale, "in2": bias}, [], scale),
             ({**base, "inputs": ["bias"]}, {"scale": scale}, [bias], scale),
             ({**base, "inputs": ["style_scale"]}, {"style_scale": g, "bias": bias}, [u],
              (u.astype(np.float64).T @ g).astype(np.float32).reshape(-1)),
             ({**base, "inputs": ["style_scale"]},                # G stored int8 per row
              {"style_scale_q": gq, "style_scale_scale": gs, "bias": bias}, [u],
              (u.astype(np.float64).T @ ((gq.astype(np.int32)).astype(np.float32) * gs))
              .astype(np.float32).reshape(-1))]
    for params, weights, rt, expect_scale in forms:
        out = np.empty(x.shape, np.uint8)
        fn, args = bind(params, weights, [x] + rt, [out])
        fn(*args)
        ref = knq._reference(x, expect_scale, bias, 0.03, 5, act=1)
        assert np.abs(out.astype(int) - ref).max() <= 1
    for params, weights, rt in (({**base, "inputs": ["scale", "scale"]}, {"bias": bias},
                                 [scale, scale]),                      # a tag twice
                                ({**base, "inputs": ["style_scale"]}, {"bias": bias}, [u]),
                                ({**base, "inputs": ["style_scale"]},
                                 {"style_scale_q": gq, "style_scale_scale": gs[:2],
                                  "bias": bias}, [u]),
                                ({**base, "inputs": []}, {"scale": scale[:5], "bias": bias},
                                 []),
                                ({**base, "inputs": [], "s": -1.0},
                                 {"scale": scale, "bias": bias}, [])):
        with pytest.raises(validate.BindError):
            bind(params, weights, [x] + rt, [np.empty(x.shape, np.uint8)])
