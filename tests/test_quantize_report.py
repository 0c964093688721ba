"""The int8 quality report (issue 16 part 1): per output, per image, relative to each output's
own range; top-1/top-5 of classifier-like outputs; a decode hook; calibration and validation
images; --min-psnr for the worst output. Checked against numpy on the two plans' outputs."""
import json

import numpy as np
import pytest

import mobile_engine as me
from mobile_engine.cli import hold_out, main
from mobile_engine.errors import EngineError
from quantize.report import measure, psnr_db
from tests.onnx_nets import detector_like
from tests.test_quantize_cli import write_images


def by_hand(f, q) -> float:
    f, q = np.asarray(f, np.float64), np.asarray(q, np.float64)
    return 10 * np.log10(np.ptp(f) ** 2 / np.mean((f - q) ** 2))


def peak_one(f, q) -> float:
    """The former measure: peak 1.0 for outputs in [0, 1]."""
    return 10 * np.log10(1 / np.mean((np.float64(f) - q) ** 2))


def test_psnr_is_relative_to_the_outputs_range():
    f = np.array([0.0001, 0.001, 0.002, 0.0041])
    q = f + 0.0004                           # a tenth of the range: 20 dB, not 68
    assert psnr_db(f, q) == pytest.approx(20.0, abs=1e-9)
    assert peak_one(f, q) > 67
    assert psnr_db(f, f) == float("inf")
    assert psnr_db(np.full(3, 2.0), np.full(3, 2.2)) == pytest.approx(20.0)   # constant: |f|


def test_top1_top5_agreement():
    f = [np.arange(12.0)[None], np.arange(12.0)[None]]        # float argmax: 11
    q0 = np.arange(12.0)[None].copy()                           # agrees
    q1 = np.arange(12.0)[None].copy()
    q1[0, 11], q1[0, 3] = 7.5, 20                               # 11 is 5th highest: top-5 only
    err = measure("logits", f, [q0, q1])
    assert (err.top1, err.top5) == (0.5, 1.0)
    q1[0, 11] = 6.5                                             # 11 now 6th
    assert measure("logits", f, [q0, q1]).top5 == 0.5
    assert measure("boxes", [np.zeros((1, 4))], [np.zeros((1, 4))]).top1 is None  # 4 entries


def feeds(seeds):
    yy, xx = np.mgrid[0:37, 0:53] / 53
    out = []
    for s in seeds:
        r = np.random.default_rng(s)
        a = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (r.uniform(0.5, 3) * xx
                                                      + r.uniform(0.5, 3) * yy + c))
                      for c in range(3)])
        out.append({"image": np.clip(a + r.normal(0, .03, a.shape), 0, 1)
                    .astype(np.float32)[None]})
    return out


@pytest.fixture(scope="module")
def detector():
    model = detector_like()
    names = [o.name for o in model.graph.output]
    return model.SerializeToString(), names, me.Session(me.compile(model.SerializeToString()))


def outputs(sess, feed, names):
    return dict(zip(names, sess.run(names, feed)))


def test_every_output_against_its_own_range(detector):
    model, names, fsess = detector
    calib, val = feeds(range(5)), feeds(range(10, 13))
    heatmap, boxes, logits = names
    decode = lambda o: {"peak": o[heatmap].max(axis=1)}                 # noqa: E731
    q = me.compile(model, quantize="int8", calibration=calib, validation=val, decode=decode)
    report = q.manifest["provenance"]["quantization"]["report"]
    qsess = me.Session(q)
    sets = {s["name"]: s for s in report["sets"]}
    assert (sets["calibration"]["images"], sets["validation"]["images"]) == (5, 3)
    for name, fs in (("calibration", calib), ("validation", val)):
        got = {o["name"]: o for o in sets[name]["outputs"]}
        assert set(got) == {*names, "decoded:peak"}
        for k, feed in enumerate(fs):
            ref, out = outputs(fsess, feed, names), outputs(qsess, feed, names)
            for n in names:
                assert got[n]["psnr_db"][k] == pytest.approx(by_hand(ref[n], out[n]), abs=0.01)
            assert got["decoded:peak"]["psnr_db"][k] == pytest.approx(
                by_hand(ref[heatmap].max(axis=1), out[heatmap].max(axis=1)), abs=0.01)
        top1 = np.mean([np.argmax(outputs(fsess, f, names)[logits])
                        == np.argmax(outputs(qsess, f, names)[logits]) for f in fs])
        assert got[logits]["top1"] == pytest.approx(top1)
        assert "top1" not in got[heatmap] and "top1" not in got[boxes]
    # the heatmap (~0.001..0.003) is read from a trunk whose uint8 scale the +-50 channels set:
    # ~10 dB relative to its range, where a peak of 1 said ~60 dB (and only outputs[0] was seen)
    feed = val[0]
    ref, out = outputs(fsess, feed, names)[heatmap], outputs(qsess, feed, names)[heatmap]
    assert by_hand(ref, out) < 20 and peak_one(ref, out) > 50
    worst = min(o["min_psnr_db"] for s in report["sets"] for o in s["outputs"])
    assert report["min_psnr_db"] == worst < 20
    from quantize.report import format_report
    text = format_report(report, layers=False)
    assert "relative to each output's own range" in text and "held out" in text
    assert text.count(heatmap) == 2 and "top-1 agreement" in text


def test_min_psnr_holds_for_the_worst_output(detector):
    model, names, fsess = detector
    calib, val = feeds(range(5)), feeds(range(10, 12))
    q = me.compile(model, quantize="int8", calibration=calib, validation=val, min_psnr=30)
    quant = q.manifest["provenance"]["quantization"]
    assert quant["kept_float"] and quant["report"]["min_psnr_db"] >= 30, quant["report"]["steps"]
    qsess = me.Session(q)
    for feed in calib + val:              # every output on every image, measured here
        ref, out = outputs(fsess, feed, names), outputs(qsess, feed, names)
        assert min(by_hand(ref[n], out[n]) for n in names) >= 30


def test_decode_must_keep_its_shapes(detector):
    model, names, _ = detector
    decode = lambda o: {"kept": o[names[0]][o[names[0]] > 0.0025]}      # noqa: E731
    with pytest.raises(EngineError, match="decode hook: 'decoded:kept' has shape"):
        me.compile(model, quantize="int8", calibration=feeds(range(3)), decode=decode)


def test_hold_out():
    assert hold_out(list(range(8))) == ([0, 1, 2, 4, 5, 6], [3, 7])
    assert hold_out([0, 1, 2]) == ([0, 1], [2])
    assert hold_out([0]) == ([0], [])


def test_cli_holds_out_part_of_calib_and_writes_the_json(detector, tmp_path, capsys):
    model, names, _ = detector
    path = tmp_path / "det.onnx"
    path.write_bytes(model)
    calib = write_images(tmp_path / "calib", 8, 3)
    out = tmp_path / "det.mplan"
    assert main(["compile", str(path), "-o", str(out), "--int8", "--calib", calib]) == 0
    text = capsys.readouterr().out
    assert "validating on 2 of the 8 --calib images" in text
    saved = json.loads((tmp_path / "det.quality.json").read_text())
    assert saved == me.Plan.load(out).manifest["provenance"]["quantization"]["report"]
    assert [(s["name"], s["images"]) for s in saved["sets"]] == [("calibration", 6),
                                                                 ("validation", 2)]
    assert f"worst output: {saved['min_psnr_db']:.1f} dB" in text


def test_identical_outputs_are_strict_json():
    from quantize.report import ImageSet, OutputError, QualityReport, format_report
    report = QualityReport(sets=[ImageSet("validation", 1, [OutputError("y", [float("inf")])])],
                           target_db=30.0)
    d = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert d["min_psnr_db"] is None and d["sets"][0]["outputs"][0]["psnr_db"] == [None]
    text = format_report(d)
    assert "worst output: inf dB (identical to the float plan)" in text and ": met" in text
