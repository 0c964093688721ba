"""multistyle26 end to end against onnxruntime: real photos, single styles and blends, several
sizes (square and not, not multiples of 8 or 16)."""
import numpy as np
import pytest

import mobile_engine as me
from tests.conftest import ort_run
from tests.tolerances import MODEL_ATOL


def style(*pairs):
    w = np.zeros(26, np.float32)
    for i, v in pairs:
        w[i] = v
    return w


STYLES = {"style0": style((0, 1.0)), "style7": style((7, 1.0)),
          "blend3_19": style((3, 0.5), (19, 0.5)), "uniform": np.full(26, 1 / 26, np.float32)}
CASES = [  # (h, w, photo, style)
    (64, 96, "chelsea.png", "style7"),
    (200, 328, "rocket.jpg", "blend3_19"),
    (256, 256, "coffee.png", "style0"),
    (100, 132, "astronaut.png", "uniform"),   # multiples of 4 only
]


@pytest.mark.parametrize("h,w,photo_name,style_name", CASES,
                         ids=[f"{h}x{w}-{s}" for h, w, _, s in CASES])
def test_matches_onnxruntime(multistyle26_path, photo, ort, tmp_path, h, w, photo_name, style_name):
    plan = me.compile(multistyle26_path, input_shapes={"image": (1, 3, h, w)})
    path = plan.save(tmp_path / "style.mplan")
    sess = me.Session(path, threads=2)
    feeds = {"image": photo(photo_name, h, w), "style_weights": STYLES[style_name]}
    (ours,) = sess.run(None, feeds)
    (expected,) = ort_run(ort, multistyle26_path, feeds)
    assert ours.shape == expected.shape
    err = float(np.abs(ours - expected).max())
    assert err <= MODEL_ATOL, f"max abs error {err:.2e} against onnxruntime"
    # a second run on other styles with the same session: no state leaks between runs
    feeds["style_weights"] = STYLES["style0"]
    (again,) = sess.run(None, feeds)
    (expected,) = ort_run(ort, multistyle26_path, feeds)
    assert float(np.abs(again - expected).max()) <= MODEL_ATOL


def test_fused_plan_shape(multistyle26_path):
    """The compiled plan: 18 convs; the first reads the NCHW image; the two stride-2 convs absorb
    their norms; the 12 residual 3x3 convs run Winograd (passes/fusions/conv_norm.py leaves
    their norms steps of their own, and each block's second norm adds the residual,
    passes/fusions/norm_add.py); the few-channel tail runs planar and
    writes the NCHW output (nchw_tail); the norms compute their style-dependent scale/bias."""
    plan = me.compile(multistyle26_path, input_shapes={"image": (1, 3, 64, 96)})
    kernels = [s["kernel"] for s in plan.steps]
    assert sum("conv2d" in k for k in kernels) == 18
    assert not any("transpose" in k for k in kernels), kernels
    assert sum("_instnorm" in k for k in kernels) == 3
    assert sum(k == "f32_conv2d_winograd_f4x3_minmax" for k in kernels) == 12
    assert sum(k.startswith("f32_instance_norm_nhwc") for k in kernels) == 12
    assert sum(s["params"].get("inputs", [])[-1:] == ["residual"] for s in plan.steps) == 6
    assert not any("vbinary_add" in k for k in kernels)
    assert sum("instance_norm_nchw" in k for k in kernels) == 3 and len(kernels) == 33
    assert not any("pad" in k or "resize" in k for k in kernels), kernels


@pytest.mark.slow
def test_480x640_matches_onnxruntime(multistyle26_path, photo, ort):
    plan = me.compile(multistyle26_path, input_shapes={"image": (1, 3, 480, 640)})
    feeds = {"image": photo("chelsea.png", 480, 640), "style_weights": STYLES["blend3_19"]}
    (ours,) = me.Session(plan, threads=2).run(None, feeds)
    (expected,) = ort_run(ort, multistyle26_path, feeds)
    assert float(np.abs(ours - expected).max()) <= MODEL_ATOL
