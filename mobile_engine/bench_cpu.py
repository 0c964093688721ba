"""One-thread CPU-time ratios against onnxruntime or LiteRT: kernel efficiency on a shared machine.

``python -m mobile_engine.bench_cpu [MODEL ...]`` (default: every model of ``zoo_real``; a
MediaPipe ``.tflite`` of the zoo, e.g. ``selfie_segmentation``, runs against LiteRT) compiles
each model at its fixed shape and runs the plan and the peer on one thread each, alternately, on
the model's test input (``zoo_real.test_input``; random values in [0, 1) for the MediaPipe
models), timing every run by the calling thread's CPU time (``time.thread_time``): onnxruntime
with one intra-op thread and LiteRT with ``num_threads=1`` run their kernels on the calling
thread too. Another process on the machine then costs both engines a little cache,
never whole time slices, so the ratio holds at loads where wall-clock medians of two threads
vary 1.5-3x between runs (BENCHMARKS.md). It says nothing about the parallel speed: that is
``mobile-engine bench-zoo`` on a quiet machine.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from mobile_engine.errors import EngineError


def cpu_ms(run, runs: int) -> float:
    """Median CPU milliseconds of the calling thread over ``runs`` calls of ``run``."""
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        run()
        times.append(time.thread_time() - t0)
    return float(np.median(times)) * 1e3


def _peer(model: str):
    """A one-thread session of the peer engine: LiteRT for a ``.tflite``, else onnxruntime."""
    if str(model).endswith(".tflite"):
        from mobile_engine.bench_litert import LitertSession, import_litert
        return LitertSession(import_litert(), str(model), 1)
    from mobile_engine.bench import _ort_session, import_onnxruntime
    return _ort_session(import_onnxruntime(), str(model), 1, False)


def compare(model, feeds: dict | None = None, shapes: dict | None = None,
            runs: int = 7) -> dict:
    """{engine_ms, peer_ms, ratio, outputs_ok} of ``model`` on ``feeds`` (None: random values
    in [0, 1) for every input), one thread each, runs alternating (after one untimed run of
    each, whose outputs are checked against the peer's: ``bench_zoo.check_outputs``)."""
    import mobile_engine as me
    from mobile_engine.bench_zoo import check_outputs
    sess = me.Session(me.compile(str(model), input_shapes=shapes), threads=1)
    if feeds is None:
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.random(i.shape, dtype=np.float32) for i in sess.get_inputs()}
    peer = _peer(model)
    names = [o.name for o in sess.get_outputs()]
    theirs = dict(zip([o.name for o in peer.get_outputs()], peer.run(None, feeds)))
    if set(names) <= set(theirs):
        theirs = [theirs[n] for n in names]
    else:                                   # renamed on import: the model's order
        theirs = list(theirs.values())
    outputs_ok = all(r["ok"] for r in check_outputs(names, sess.run(None, feeds), theirs))
    ours, others = [], []
    for _ in range(runs):
        ours.append(cpu_ms(lambda: sess.run(None, feeds), 1))
        others.append(cpu_ms(lambda: peer.run(None, feeds), 1))
    e, o = float(np.median(ours)), float(np.median(others))
    return {"engine_ms": e, "peer_ms": o, "ratio": e / o, "outputs_ok": outputs_ok}


def main(argv=None) -> int:
    from mobile_engine import zoo, zoo_real
    from mobile_engine.bench_zoo import _input_name
    p = argparse.ArgumentParser(prog="python -m mobile_engine.bench_cpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="models of the real set (default: all)")
    p.add_argument("--runs", type=int, default=7, help="timed runs per engine (default 7)")
    args = p.parse_args(argv)
    ratios = []
    for name in args.models or list(zoo_real.MODELS):
        try:
            if name in zoo.TFLITE_MODELS:
                path, peer, feeds, shapes = zoo.model_path(name), "litert", None, None
            else:
                path, peer = zoo_real.model_file(name), "onnxruntime"
                iname = _input_name(path)
                feeds = {iname: zoo_real.test_input(name)[0]}
                shapes = {iname: zoo_real.spec(name).shape}
            r = compare(path, feeds, shapes, args.runs)
        except EngineError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        if r["outputs_ok"]:
            ratios.append(r["ratio"])
        print(f"{name:<28} engine {r['engine_ms']:8.2f} ms  {peer} {r['peer_ms']:8.2f} ms  "
              f"ratio {r['ratio']:.2f}"
              + ("" if r["outputs_ok"] else f"  (outputs differ from {peer}: the ratio means "
                                            f"nothing)"), flush=True)
    if ratios:
        print(f"geometric mean over the {len(ratios)} models whose outputs matched: "
              f"{math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
