"""`mobile-engine bench-zoo`: one small real model end to end, the JSON document, the text table and
the one-line errors (no timing is asserted: benchmarks stay out of the test run)."""
from __future__ import annotations

import json

import pytest

from mobile_engine import bench_zoo, zoo, zoo_real
from mobile_engine.cli import main


def _need(name: str) -> None:
    try:
        zoo_real.model_file(name)
        zoo.image_path("astronaut.png")
    except zoo.ZooError as exc:
        pytest.skip(str(exc))


def test_bench_zoo_one_model_json_and_profile(tmp_path, capsys, ort):
    _need("ppocr_cls")
    out = tmp_path / "zoo.json"
    assert main(["bench-zoo", "--models", "ppocr_cls", "--runs", "8", "--profile",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ppocr_cls" in text and "geometric mean engine/onnxruntime over 1 models" in text
    assert "per-op profile" in text and "load average before" in text
    doc = json.loads(out.read_text())
    assert doc["kind"] == bench_zoo.KIND and doc["threads"] == 2 and doc["runs"] == 8
    (row,) = doc["models"]
    assert row["status"] == "ok", row
    assert row["shape"] == [1, 3, 48, 192] and row["sha256"] == zoo_real.spec("ppocr_cls").sha256
    assert all(o["ok"] and o["max_abs_diff"] <= 1e-3 * o["range"] for o in row["outputs"])
    ort_p50 = row["fp32"]["results"][0]["compare"]["onnxruntime"]["p50"]
    assert row["ratio"] == pytest.approx(row["fp32"]["results"][0]["latency_ms"]["p50"] / ort_p50)
    assert doc["geomean_ratio"] == pytest.approx(row["ratio"])


@pytest.mark.parametrize("argv,message", [
    (["--models", "lenet"], "unknown real model 'lenet'"),
    (["--models", "ppocr_cls", "--runs", "3"], "--runs 3"),
])
def test_bench_zoo_bad_arguments_are_one_line(argv, message, capsys):
    assert main(["bench-zoo", *argv]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_refused_model_is_a_row_not_a_crash(monkeypatch):
    def refuse(name):
        raise zoo.ZooError(f"{name}: refused for the test")
    monkeypatch.setattr(zoo_real, "model_file", refuse)
    row = bench_zoo.bench_model("yolov8n", threads=1, runs=8)
    assert row["status"] == "refused" and "refused for the test" in row["error"]
    assert "REFUSED" in bench_zoo.row_line(row)
