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


def test_ratio_against_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])],
        [numpy_helper.from_array(w, "w")])
    path = tmp_path / "conv.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                     .SerializeToString())
    x = np.random.default_rng(1).standard_normal((1, 8, 32, 32)).astype(np.float32)
    r = bench_cpu.compare(str(path), {"x": x}, runs=3)
    assert r["engine_ms"] > 0 and r["peer_ms"] > 0
    assert r["ratio"] == pytest.approx(r["engine_ms"] / r["peer_ms"])
