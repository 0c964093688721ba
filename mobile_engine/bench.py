"""`mobile-engine bench`: latency of a plan, measured alternately with a peer in one process.

Both engines get the same input, the same thread count, and take turns run by run, so machine noise
falls on both; the report quotes medians and the ratio engine/peer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobile_engine.errors import EngineError


def make_feeds(inputs: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic feeds: floats uniform in [0, 1) (images, style weights), ints zero."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in inputs:
        if i["dtype"] == "float32":
            feeds[i["name"]] = rng.random(i["shape"], dtype=np.float32)
        else:
            feeds[i["name"]] = np.zeros(i["shape"], i["dtype"])
    return feeds


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"min": float(a.min()), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


@dataclass
class BenchReport:
    model: str
    threads: int
    runs: int
    init_ms: float
    first_run_ms: float
    latency_ms: dict
    arena_bytes: int
    weight_bytes: int
    compare: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def text(self) -> str:
        lat = self.latency_ms
        lines = [f"{self.model}: {self.threads} thread(s), {self.runs} runs",
                 f"  init {self.init_ms:.1f} ms, first run {self.first_run_ms:.1f} ms",
                 f"  mobile-engine  p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f}  "
                 f"min {lat['min']:.2f}  max {lat['max']:.2f}"]
        for name, c in self.compare.items():
            lines.append(f"  {name:<13}  p50 {c['p50']:.2f} ms  p90 {c['p90']:.2f}  "
                         f"ratio engine/{name} {c['ratio']:.3f}")
        return "\n".join(lines)


def _ort_session(model_path: str, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise EngineError("--compare onnxruntime needs onnxruntime: pip install onnxruntime") \
            from None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def run_bench(model: str, shapes: dict | None = None, threads: int = 1, runs: int = 20,
              compare: str | None = None) -> BenchReport:
    import mobile_engine as me
    from mobile_engine.plan import Plan
    path = Path(model)
    t0 = time.perf_counter()
    if path.suffix == ".mplan":
        plan = Plan.load(path)
        source = plan.manifest["provenance"].get("source")
    else:
        plan = me.compile(str(path), input_shapes=shapes)
        source = str(path)
    sess = me.Session(plan, threads=threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    feeds = make_feeds(plan.inputs)
    t0 = time.perf_counter()
    sess.run(None, feeds)
    first_ms = (time.perf_counter() - t0) * 1e3

    peer = None
    if compare == "onnxruntime":
        if not source or not Path(source).exists():
            raise EngineError(f"cannot compare: the plan's source model {source!r} is not on disk")
        peer = _ort_session(source, threads)
        peer.run(None, feeds)
    ours, theirs = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ours.append((time.perf_counter() - t0) * 1e3)
        if peer is not None:
            t0 = time.perf_counter()
            peer.run(None, feeds)
            theirs.append((time.perf_counter() - t0) * 1e3)
    lat = percentiles(ours)
    report = BenchReport(str(model), threads, runs, init_ms, first_ms, lat, plan.arena_bytes,
                         plan.weight_bytes)
    if peer is not None:
        p = percentiles(theirs)
        report.compare["onnxruntime"] = {**p, "ratio": lat["p50"] / p["p50"]}
    return report
