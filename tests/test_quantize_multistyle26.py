"""multistyle26 in int8 against its fp32 plan (issue 4): calibrated on 8 photos, evaluated on 4
others, several styles; plan size; the quality report in the plan's provenance.

Measured (percentile 99.995 observer, equalization alpha 0.7, fused norm + residual, the
few-channel expand tail in float and planar as in the fp32 plan):
- 128x128: PSNR 41.8 / 46.2 / 44.5 / 43.4 (style 0), 39.4 / 43.8 / 42.7 / 40.8 (style 7),
  33.7 / 38.0 / 37.7 / 39.8 (style 13), 33.9 / 39.2 / 38.8 / 37.7 dB (style 21) on rocket /
  coffee / chelsea / grass; plan 34.7% of fp32.
- 480x640 (slow test): min 32.5 dB (rocket, style 21), plan 31.6% of fp32.

NOTE: the float tail's weight banks are the same bytes as in the fp32 plan; its row and column
tables are rebuilt at bind (planning/families/conv.py), and the int8 norms keep the style
matrices int8, which brings the ratio under issue 4's 35%. The ratio grows at small sizes,
where the manifest (the same at every size) weighs more.
"""
import numpy as np
import pytest

import mobile_engine as me
from quantize.report import psnr_db as range_psnr
from tests.test_quantize_helpers import psnr_db

CALIB = ["astronaut.png", "camera.png", "horse.png", "brick.png", "gravel.png", "retina.jpg",
         "cell.png", "hubble_deep_field.jpg"]
EVAL = ["rocket.jpg", "coffee.png", "chelsea.png", "grass.png"]
STYLES = (0, 7, 13, 21)


def one_hot(i: int) -> np.ndarray:
    w = np.zeros(26, np.float32)
    w[i] = 1
    return w


def compile_both(path, photo, h, w, evaluation_styles=STYLES):
    shapes = {"image": (1, 3, h, w)}
    calib = [{"image": photo(n, h, w), "style_weights": one_hot(STYLES[k % len(STYLES)])}
             for k, n in enumerate(CALIB)]
    evals = [{"image": photo(n, h, w), "style_weights": one_hot(s)}
             for s in evaluation_styles for n in EVAL]
    q = me.compile(path, shapes, quantize="int8", calibration=calib, validation=evals)
    return me.compile(path, shapes), q, evals


def plan_bytes(plan, tmp_path, name) -> int:
    return plan.save(tmp_path / name).stat().st_size


def test_128x128(multistyle26_path, photo, tmp_path):
    fp32, int8, evals = compile_both(multistyle26_path, photo, 128, 128)
    fs, qs = me.Session(fp32, threads=2), me.Session(int8, threads=2)
    pairs = [(fs.run(None, f)[0], qs.run(None, f)[0]) for f in evals]
    psnr = [psnr_db(a, b) for a, b in pairs]
    # measured minimum 33.6 dB (rocket, style 13); 1 dB of margin for other CPUs' rounding
    assert min(psnr) >= 32.6, np.round(psnr, 1)
    assert np.median(psnr) >= 38.0, np.round(psnr, 1)
    # the report stored in the plan saw the same images (its PSNR: relative to the range)
    report = int8.manifest["provenance"]["quantization"]["report"]
    np.testing.assert_allclose(report["psnr_db"], [range_psnr(a, b) for a, b in pairs],
                               atol=0.02)
    norms = [e for e in report["layers"] if "instance_norm" in e["kernel"]]
    # 18 norm steps; a conv + norm step's second output (the conv's float32 values) is compared
    # too where the float plan writes it (its Winograd convs: their norms run apart)
    assert len({e["node"] for e in norms}) == 18 and all(e["sqnr_db"] > 20 for e in norms)
    assert_float_planar_tail(int8)
    ratio = plan_bytes(int8, tmp_path, "q.mplan") / plan_bytes(fp32, tmp_path, "f.mplan")
    assert ratio <= 0.36, ratio             # measured 0.347 (module docstring)


def assert_float_planar_tail(plan):
    """The expand tail (few-channel convs and their norms) runs the fp32 planar kernels of the
    float plan (issue 4: faster than the int8 tiles there), with no final transpose; the last
    residual norm + add writes float for it, reading the uint8 stream."""
    steps = {s["name"]: s for s in plan.steps}
    tensors = plan.manifest["tensors"]
    for i in range(3):
        assert steps[f"/expand.{i}/Conv"]["kernel"].startswith("f32_conv2d_pix"), i
        (norm,) = [s for s in plan.steps if s["name"].startswith(f"/expand.{i}/norm/")
                   and "instance_norm" in s["kernel"]]
        assert "_nchw" in norm["kernel"], norm["kernel"]
    assert not any("transpose_nhwc_to_nchw" in s["kernel"] for s in plan.steps)
    # the step writing expand.0's input: /res.5.1's norm + the residual add
    (last,) = [s for s in plan.steps if steps["/expand.0/Conv"]["inputs"][0] in s["outputs"]]
    assert last["name"].startswith("/res.5.1/")
    assert [tensors[o]["dtype"] for o in last["outputs"]] == ["float32"]
    assert "uint8" in [tensors[i]["dtype"] for i in last["inputs"]]
    assert sum(s["kernel"].startswith("qu8_conv2d") for s in plan.steps) == 15
    q = plan.manifest["provenance"]["quantization"]
    assert q["few_channel_float"] == []                   # planar already: not candidates


def test_min_psnr_keeps_the_costliest_layers_in_float(multistyle26_path, photo):
    h = w = 64
    calib = [{"image": photo(n, h, w), "style_weights": one_hot(STYLES[k % len(STYLES)])}
             for k, n in enumerate(CALIB[:4])]
    evals = [{"image": photo("rocket.jpg", h, w), "style_weights": one_hot(21)}]
    base = me.compile(multistyle26_path, {"image": (1, 3, h, w)}, quantize="int8",
                      calibration=calib, validation=evals)
    start = base.manifest["provenance"]["quantization"]["report"]["min_psnr_db"]
    target = start + 2.0
    plan = me.compile(multistyle26_path, {"image": (1, 3, h, w)}, quantize="int8",
                      calibration=calib, validation=evals, min_psnr=target)
    q = plan.manifest["provenance"]["quantization"]
    kept, report = q["kept_float"], q["report"]
    assert kept and report["min_psnr_db"] >= target, (kept, report["steps"])
    assert len(report["steps"]) == len(kept)                     # one layer per step, said
    said = {s.split(" in float")[0].removeprefix("kept ") for s in report["steps"]}
    assert said == set(kept), report["steps"]
    kernels = {s["name"]: s["kernel"] for s in plan.steps}
    assert all(kernels[k].startswith("f32_conv2d") for k in kept)


@pytest.mark.slow
def test_480x640(multistyle26_path, photo, tmp_path):
    """Issue 4's size. Measured: 40.4 / 43.9 / 44.9 / 45.3 (style 0), 39.0 / 43.4 / 42.8 / 41.1
    (style 7), 32.7 / 36.3 / 36.8 / 38.3 (style 13), 32.5 / 36.3 / 38.7 / 40.5 dB (style 21) on
    rocket / coffee / chelsea / grass; plan 31.6% of fp32."""
    fp32, int8, evals = compile_both(multistyle26_path, photo, 480, 640)
    fs, qs = me.Session(fp32, threads=2), me.Session(int8, threads=2)
    psnr = [psnr_db(fs.run(None, f)[0], qs.run(None, f)[0]) for f in evals]
    assert min(psnr) >= 32.0, np.round(psnr, 1)
    ratio = plan_bytes(int8, tmp_path, "q.mplan") / plan_bytes(fp32, tmp_path, "f.mplan")
    assert ratio <= 0.35, ratio             # issue 4 (module docstring)
