"""``python -m mobile_engine.runtime.warm PLAN``: compile every kernel of a plan in this process.

The kernel-bundle builder (``mobile_engine/bundle_build.py``) runs it on the target (this
machine, or an emulated ARM core) with an empty ``NUMBA_CACHE_DIR``: a Session on 1 thread and
one on 2 threads (the serial and the parallel variants a device may bind) each run a frame of
zeros, so Numba's cache then holds the machine code of every kernel the plan calls, and writes
Numba's runtime (NRT) compiled for the same target beside them
(``kernels.cache_bundle.save_runtime``). Prints the process's bundle environment
(``runtime.bundle.environment``) as one JSON line.
"""
from __future__ import annotations

import json
import sys

from pathlib import Path

import numba
import numpy as np
from numba.core.registry import cpu_target

from kernels import cache_bundle

from mobile_engine.plan.plan import Plan
from mobile_engine.runtime import bundle
from mobile_engine.runtime.session import Session


def main(argv: list[str]) -> int:
    plan = Plan.load(argv[0])
    feeds = {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in plan.inputs}
    for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
        with Session(plan, threads=threads) as sess:
            sess.run(None, feeds)
    if not numba.config.CACHE_DIR:
        raise SystemExit("NUMBA_CACHE_DIR is not set: the kernels' cache files cannot be found")
    folder = Path(numba.config.CACHE_DIR) / "kernels_runtime"
    folder.mkdir(parents=True, exist_ok=True)
    cache_bundle.save_runtime(folder / cache_bundle.RUNTIME_FILE, cpu_target.target_context)
    print(json.dumps(bundle.environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
