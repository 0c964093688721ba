"""One-thread CPU-time ratios against onnxruntime: kernel efficiency on a shared machine.

``python -m mobile_engine.bench_cpu [MODEL ...]`` (default: every model of ``zoo_real``) compiles
each model at its fixed shape and runs the plan and onnxruntime on one thread each, alternately,
on the model's test input (``zoo_real.test_input``), timing every run by the calling thread's
CPU time (``time.thread_time``): onnxruntime with one intra-op thread runs its kernels on the
calling thread too. Another process on the machine then costs both engines a little cache,
never whole time slices, so the ratio holds at loads where wall-clock medians of two threads
vary 1.5-3x between runs (BENCHMARKS.md). It says nothing about the parallel speed: that is
``mobile-engine bench-zoo`` on a quiet machine.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


def cpu_ms(run, runs: int) -> float:
    """Median CPU milliseconds of the calling thread over ``runs`` calls of ``run``."""
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        run()
        times.append(time.thread_time() - t0)
    return float(np.median(times)) * 1e3


def compare(model: str, feeds: dict, shapes: dict | None = None, runs: int = 7) -> dict:
    """{engine_ms, onnxruntime_ms, ratio} of ``model`` on ``feeds``, one thread each, runs
    alternating (after one untimed run of each)."""
    import mobile_engine as me
    from mobile_engine.bench import _ort_session, import_onnxruntime
    sess = me.Session(me.compile(model, input_shapes=shapes), threads=1)
    peer = _ort_session(import_onnxruntime(), model, 1, False)
    ours, theirs = [], []
    for r in range(runs + 1):
        e = cpu_ms(lambda: sess.run(None, feeds), 1)
        o = cpu_ms(lambda: peer.run(None, feeds), 1)
        if r:
            ours.append(e)
            theirs.append(o)
    e, o = float(np.median(ours)), float(np.median(theirs))
    return {"engine_ms": e, "onnxruntime_ms": o, "ratio": e / o}


def main(argv=None) -> int:
    from mobile_engine import zoo_real
    from mobile_engine.bench_zoo import _input_name
    p = argparse.ArgumentParser(prog="python -m mobile_engine.bench_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="models of the real set (default: all)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per engine (default 7)")
    args = p.parse_args(argv)
    ratios = []
    for name in args.models or list(zoo_real.MODELS):
        path = str(zoo_real.model_file(name))
        iname = _input_name(zoo_real.model_file(name))
        feeds = {iname: zoo_real.test_input(name)[0]}
        r = compare(path, feeds, {iname: zoo_real.spec(name).shape}, args.runs)
        ratios.append(r["ratio"])
        print(f"{name:<13} engine {r['engine_ms']:8.2f} ms  onnxruntime {r['onnxruntime_ms']:8.2f}"
              f" ms  ratio {r['ratio']:.2f}", flush=True)
    print(f"geometric mean over {len(ratios)} models: "
          f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
