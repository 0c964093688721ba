"""multistyle26 in int8 against its fp32 plan (issue 4): calibrated on 8 photos, evaluated on 4
others, several styles; plan size; the quality report in the plan's provenance.

Measured (percentile 99.995 observer, equalization alpha 0.7, fused norm + residual):
- 128x128: PSNR 41.7 / 45.5 / 43.6 / 42.1 (style 0), 39.3 / 43.6 / 42.6 / 40.5 (style 7),
  33.6 / 37.7 / 37.3 / 39.4 (style 13), 33.9 / 39.0 / 38.3 / 37.5 dB (style 21) on rocket /
  coffee / chelsea / grass; plan 35.8% of fp32.
- 480x640 (slow test): min 32.5 dB (rocket, styles 13 and 21), plan 30.9% of fp32.
"""
import numpy as np
import pytest

import mobile_engine as me
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
    q = me.compile(path, shapes, quantize="int8", calibration=calib, evaluation=evals)
    return me.compile(path, shapes), q, evals


def plan_bytes(plan, tmp_path, name) -> int:
    return plan.save(tmp_path / name).stat().st_size


def test_128x128(multistyle26_path, photo, tmp_path):
    fp32, int8, evals = compile_both(multistyle26_path, photo, 128, 128)
    fs, qs = me.Session(fp32, threads=2), me.Session(int8, threads=2)
    psnr = [psnr_db(fs.run(None, f)[0], qs.run(None, f)[0]) for f in evals]
    # measured minimum 33.6 dB (rocket, style 13); 1 dB of margin for other CPUs' rounding
    assert min(psnr) >= 32.6, np.round(psnr, 1)
    assert np.median(psnr) >= 38.0, np.round(psnr, 1)
    # the report stored in the plan saw the same images
    report = int8.manifest["provenance"]["quantization"]["report"]
    np.testing.assert_allclose(report["psnr_db"], psnr, atol=0.02)
    norms = [e for e in report["layers"] if "instance_norm" in e["kernel"]]
    assert len(norms) == 18 and all(e["sqnr_db"] > 20 for e in norms)
    ratio = plan_bytes(int8, tmp_path, "q.mplan") / plan_bytes(fp32, tmp_path, "f.mplan")
    # issue 4's bound (35%) is at 480x640 (the slow test); the float plan's size-dependent
    # tables are smaller here: measured 0.358
    assert ratio <= 0.38, ratio


def test_min_psnr_keeps_the_costliest_layers_in_float(multistyle26_path, photo):
    h = w = 64
    calib = [{"image": photo(n, h, w), "style_weights": one_hot(STYLES[k % len(STYLES)])}
             for k, n in enumerate(CALIB[:4])]
    evals = [{"image": photo("rocket.jpg", h, w), "style_weights": one_hot(21)}]
    base = me.compile(multistyle26_path, {"image": (1, 3, h, w)}, quantize="int8",
                      calibration=calib, evaluation=evals)
    start = base.manifest["provenance"]["quantization"]["report"]["min_psnr_db"]
    target = start + 2.0
    plan = me.compile(multistyle26_path, {"image": (1, 3, h, w)}, quantize="int8",
                      calibration=calib, evaluation=evals, min_psnr=target)
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
    """Issue 4's size. Measured: 40.2 / 43.4 / 44.2 / 44.5 (style 0), 38.7 / 43.0 / 42.3 / 41.0
    (style 7), 32.6 / 36.0 / 36.4 / 37.8 (style 13), 32.5 / 36.2 / 38.4 / 40.2 dB (style 21) on
    rocket / coffee / chelsea / grass; plan 30.9% of fp32."""
    fp32, int8, evals = compile_both(multistyle26_path, photo, 480, 640)
    fs, qs = me.Session(fp32, threads=2), me.Session(int8, threads=2)
    psnr = [psnr_db(fs.run(None, f)[0], qs.run(None, f)[0]) for f in evals]
    assert min(psnr) >= 32.0, np.round(psnr, 1)
    ratio = plan_bytes(int8, tmp_path, "q.mplan") / plan_bytes(fp32, tmp_path, "f.mplan")
    assert ratio <= 0.35, ratio                                  # measured 0.309
