"""A tiny plan and a probe for kernel bundles (tests/test_kernel_bundle.py, tests/arm/run.py).

``python -m tests.bundle_probe PLAN THREADS`` loads PLAN in this fresh interpreter, runs it once
and prints one JSON line: the kernels Numba compiled (``numba:compile`` events fire only when a
kernel really compiles, not when it loads from a cache), how many came from a bundle, the bundle
used, the output and the warnings. The plan (``tiny_plan``) is a 2x2 max pool then a global
average pool: two kernels that compile in about a second (tens of seconds emulated).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

SHAPE = (1, 8, 8, 4)


def feed() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 7


def reference() -> np.ndarray:
    """The plan's output in numpy: 2x2 max pool (stride 2), then the mean over H and W."""
    pooled = feed().reshape(1, 4, 2, 4, 2, 4).max(axis=(2, 4))
    return pooled.mean(axis=(1, 2)).ravel()


def tiny_plan(path: Path) -> Path:
    import mobile_engine as me
    from mobile_engine.ir import GraphBuilder, Op
    b = GraphBuilder("bundle")
    x = b.input("x", SHAPE)
    y = b.node(Op.MAX_POOL, x, kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0))
    return me.compile(b.build(b.node(Op.GLOBAL_AVG_POOL, y))).save(path)


def main(plan: str, threads: int) -> None:
    import numba.core.event as ev
    compiled = []

    class Count(ev.Listener):
        def on_start(self, event):
            compiled.append(event.data["dispatcher"].py_func.__name__)

        def on_end(self, event):
            pass

    ev.register("numba:compile", Count())
    import mobile_engine as me
    from kernels import cache_bundle
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sess = me.Session(plan, threads=threads)
    (out,) = sess.run(None, {"x": feed()})
    print(json.dumps({"compiled": compiled, "loaded": cache_bundle.LOADED["count"],
                      "runtime_loaded": cache_bundle.LOADED["runtime"],
                      "bundle": sess.kernel_bundle, "out": out.ravel().tolist(),
                      "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
