"""`mobile-engine compile --int8 --calib DIR [--min-psnr DB] [--quant-table FILE]` on a tiny
Johnson-style ONNX net (instance norms, reflect pads, residual adds, nearest upsampling)."""
import numpy as np
import pytest
from PIL import Image

import mobile_engine as me
from mobile_engine.cli import main
from tests.onnx_nets import johnson_like
from quantize.report import psnr_db


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "johnson.onnx"
    path.write_bytes(johnson_like().SerializeToString())
    return str(path)


def write_images(folder, n, seed):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:60, 0:80] / 80
    for k in range(n):
        img = np.stack([128 + 100 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * xx
                                                          + rng.uniform(0.5, 3) * yy + c))
                        for c in range(3)], axis=-1) + rng.normal(0, 8, (60, 80, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{k}.png")
    return str(folder)


def test_int8_compile_report_and_table(model, tmp_path, capsys):
    calib = write_images(tmp_path / "calib", 4, 0)
    held = write_images(tmp_path / "held", 2, 1)
    out, table = tmp_path / "q.mplan", tmp_path / "t.json"
    assert main(["compile", model, "-o", str(out), "--int8", "--calib", calib, "--eval", held,
                 "--quant-table", str(table), "--report", "--progress"]) == 0
    cap = capsys.readouterr()
    # the progress bar (forced: stderr is no terminal here): 4 passes (channel ranges,
    # histograms; tensor ranges, histograms)
    assert "calibrating on 4 images" in cap.err and "16/16" in cap.err
    assert f"wrote {table}" in cap.out and "validation (2 images; held out)" in cap.out
    assert "per-layer SQNR" in cap.out                                   # --report: layers
    plan = me.Plan.load(out)
    assert plan.manifest["provenance"]["precision"] == "int8"
    assert any(s["kernel"].startswith("qu8_conv2d") for s in plan.steps)
    # the int8 plan against the float plan on a held-out image
    from mobile_engine.images import ImageInput, load_image
    x = load_image(str(tmp_path / "held" / "img0.png"),
                   ImageInput("image", (1, 3, 37, 53), "float32", "nchw"))
    ref = me.Session(me.compile(model)).run(None, {"image": x})[0]
    got = me.Session(plan).run(None, {"image": x})[0]
    report = plan.manifest["provenance"]["quantization"]["report"]
    assert psnr_db(ref, got) == pytest.approx(report["psnr_db"][0], abs=0.05)
    assert psnr_db(ref, got) >= 30       # relative to the output's range; measured 36.1 dB

    # the table alone reproduces the plan's kernels and outputs (no calibration run)
    again = tmp_path / "again.mplan"
    assert main(["compile", model, "-o", str(again), "--int8", "--quant-table", str(table)]) == 0
    assert "calibrating" not in capsys.readouterr().err
    plan2 = me.Plan.load(again)
    assert [s["kernel"] for s in plan2.steps] == [s["kernel"] for s in plan.steps]
    np.testing.assert_array_equal(me.Session(plan2).run(None, {"image": x})[0], got)


def test_min_psnr_names_the_layers_kept_in_float(model, tmp_path, capsys):
    calib = write_images(tmp_path / "calib", 3, 2)
    out = tmp_path / "q.mplan"
    assert main(["compile", model, "-o", str(out), "--int8", "--calib", calib,
                 "--min-psnr", "45"]) == 0
    text = capsys.readouterr().out
    assert "target 45.0 dB (worst output, every image): met" in text, text
    kept = text.split("kept in float: ")[1].split("\n")[0].split(", ")
    assert kept and all(k.startswith("conv_") for k in kept)
    assert all(f"kept {k} in float: worst output" in text for k in kept)   # each step says why


@pytest.mark.parametrize("args,message", [
    (["--calib", "DIR"], "need --int8"),
    (["--int8"], "--int8 needs --calib DIR"),
    (["--int8", "--calib", "/nonexistent"], "not a folder of images"),
])
def test_cli_errors(model, tmp_path, capsys, args, message):
    args = [a.replace("DIR", str(tmp_path)) for a in args]
    assert main(["compile", model, "-o", str(tmp_path / "x.mplan"), *args]) == 2
    assert message in capsys.readouterr().err
