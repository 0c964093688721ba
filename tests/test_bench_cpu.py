"""``mobile_engine.bench_cpu``: the calling thread's CPU time, and a ratio against onnxruntime."""
from __future__ import annotations

import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mobile_engine import bench_cpu


def test_cpu_time_ignores_waiting_and_counts_work():
    """A sleeping engine costs no CPU (a wall clock would count 30 ms); a busy one does."""
    assert bench_cpu.cpu_ms(lambda: time.sleep(0.03), 3) < 5

    def busy():
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.02:
            pass
    assert bench_cpu.cpu_ms(busy, 3) >= 20


def _conv_model(path, seed: int):
    w = np.random.default_rng(seed).standard_normal((16, 8, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])],
        [numpy_helper.from_array(w, "w")])
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                     .SerializeToString())
    return str(path)


def test_ratio_against_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    r = bench_cpu.compare(_conv_model(tmp_path / "conv.onnx", 0), runs=3)
    assert r["engine_ms"] > 0 and r["peer_ms"] > 0 and r["outputs_ok"]
    assert r["ratio"] == pytest.approx(r["engine_ms"] / r["peer_ms"])


def test_outputs_that_differ_from_the_peer_are_flagged(tmp_path, monkeypatch):
    """The peer runs other weights: the ratio is reported as meaningless."""
    pytest.importorskip("onnxruntime")
    other = _conv_model(tmp_path / "other.onnx", 1)
    real_peer = bench_cpu._peer
    monkeypatch.setattr(bench_cpu, "_peer", lambda model: real_peer(other))
    assert not bench_cpu.compare(_conv_model(tmp_path / "conv.onnx", 0), runs=1)["outputs_ok"]
