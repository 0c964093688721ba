"""`mobile-engine bench MODEL.tflite --compare litert`: LiteRT as the peer, alternating in one
process, on a tiny TFLite net built in code. The peer's outputs come from LiteRT itself."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mobile_engine import bench, cli
from mobile_engine.errors import EngineError, InputError
from tests.tflite_nets import TFLiteBuilder

litert = pytest.importorskip("ai_edge_litert.interpreter")


def tiny_tflite() -> bytes:
    rng = np.random.default_rng(3)
    b = TFLiteBuilder()
    x = b.input("image", (1, 12, 10, 3))
    w = b.const(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) / 5)
    y = b.op("CONV_2D", [x, w, b.const(np.zeros(8, np.float32))], (1, 12, 10, 8),
             "Conv2DOptions", Padding=0, StrideW=1, StrideH=1, FusedActivationFunction=1)
    z = b.op("DEPTHWISE_CONV_2D", [y, b.const(rng.standard_normal((1, 3, 3, 8))
                                              .astype(np.float32) / 3),
                                   b.const(np.zeros(8, np.float32))], (1, 6, 5, 8),
             "DepthwiseConv2DOptions", name="out", Padding=0, StrideW=2, StrideH=2,
             DepthMultiplier=1)
    return b.build([z])


@pytest.fixture(scope="module")
def tflite_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "tiny.tflite"
    path.write_bytes(tiny_tflite())
    return path


def test_bench_compares_with_litert(tflite_path):
    doc = bench.run_bench(tflite_path, threads=[1, 2], runs=3, compare="litert",
                          profile_runs=1).as_dict()
    assert doc["peer"]["engine"] == "litert" and doc["peer"]["precision"] == "fp32"
    assert doc["peer"]["model"] == str(tflite_path)
    for r in doc["results"]:
        c = r["compare"]["litert"]
        assert c["ratio"] == pytest.approx(r["latency_ms"]["p50"] / c["p50"])
        assert c["max_abs_diff"] < 1e-4
        assert not any("differ" in w for w in r["warnings"])
    bench.validate_report(json.loads(json.dumps(doc)))


def test_cli_bench_plan_against_litert(tflite_path, tmp_path, capsys):
    plan = tmp_path / "tiny.mplan"
    assert cli.main(["compile", str(tflite_path), "-o", str(plan)]) == 0
    out_json = tmp_path / "b.json"
    rc = cli.main(["bench", str(plan), "--runs", "2", "--compare", "litert", "--json",
                   str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0 and "ratio mobile-engine/litert" in text
    doc = json.loads(out_json.read_text())
    assert doc["peer"]["model"] == str(tflite_path)            # the plan's source


def test_litert_refuses_an_onnx_model(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    from tests.test_bench import tiny_model
    import onnx
    onnx.save(tiny_model(), onnx_path)
    with pytest.raises(InputError, match="not a TFLite model.*--compare onnxruntime"):
        bench.run_bench(onnx_path, runs=1, compare="litert")


def test_onnxruntime_refuses_a_tflite_model(tflite_path):
    with pytest.raises(InputError, match="is a TFLite model.*--compare litert"):
        bench.run_bench(tflite_path, runs=1, compare="onnxruntime")


def test_missing_litert_is_a_clear_error(tflite_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(EngineError, match="LiteRT is not installed.*pip install ai-edge-litert"):
        bench.run_bench(tflite_path, runs=1, compare="litert")
