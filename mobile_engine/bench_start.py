"""Start-up time: a plan's first output in fresh processes (``mobile-engine bench-start``).

Each run is a new interpreter (``python -c CHILD``) that imports
the engine, makes a Session, runs one frame of zeros and then a second one; the parent takes the
time from spawning it to the first output (interpreter start included), the child its CPU time
until then (every thread's, interpreter start included: steadier than wall time on a shared
machine) and its own stages: numpy, ``import mobile_engine``, Numba (imported by the Session's kernels), the Session
(plan, bundle check, binding), the first run (kernel loads from the bundle or Numba's cache,
Numba's registries on the first load, the arena's first touch, the frame) and a second run (the
frame alone). ``cold``: every process gets its own empty ``NUMBA_CACHE_DIR``, as the first start
on a new device: kernels come from the plan's bundle when it fits, else they compile.
``core``: the processes run on an emulated ARM core (``mobile_engine/emulator.py``); emulated
times are only ever compared with each other, never quoted as a device's speed.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("numpy", "import mobile_engine", "numba", "Session", "first run", "second run")


# The child: a script of its own (``python -c``), so that nothing is imported before its clock.
CHILD = """
import sys, time
t = [time.perf_counter()]
import numpy as np
t.append(time.perf_counter())
import mobile_engine as me
t.append(time.perf_counter())
import numba
t.append(time.perf_counter())
import json
import numba.core.event as ev
compiled = []
class Count(ev.Listener):
    def on_start(self, event):
        compiled.append(1)
    def on_end(self, event):
        pass
ev.register("numba:compile", Count())
sess = me.Session(sys.argv[1], threads=int(sys.argv[2]))
t.append(time.perf_counter())
feeds = {i["name"]: np.zeros(i["shape"], i["dtype"]) for i in sess.plan.inputs}
sess.run(None, feeds)
first_wall, first_cpu = time.time(), time.process_time()
t.append(time.perf_counter())
sess.run(None, feeds)
t.append(time.perf_counter())
stages = {name: t[i + 1] - t[i] for i, name in enumerate(%r)}
print(json.dumps({"first_output_wall": first_wall, "cpu_first_output": first_cpu,
                  "stages": stages,
                  "compiled": len(compiled), "bundle": sess.kernel_bundle}))
""" % (STAGES,)


def run(plan: str, threads: int = 2, runs: int = 5, cold: bool = False, core: str | None = None,
        say=print) -> dict:
    """``runs`` fresh processes; medians of the time to the first output and of each stage."""
    plan = str(Path(plan).resolve())
    args = ["-c", CHILD, plan, str(threads)]
    if core:
        from mobile_engine import emulator
        emu = emulator.Emulator(emulator.arm_home(), core)
        emu.prepare()
        argv, env, cwd = emu.argv(*args), emu.env(), emulator.REPO
    else:
        argv, env, cwd = [sys.executable, *args], dict(os.environ), None
    rows = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="me-start-") as cache:
            if cold:
                env["NUMBA_CACHE_DIR"] = cache
            t0 = time.time()
            p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                               timeout=7200)
        if p.returncode != 0:
            raise RuntimeError(f"start-up run {i + 1} failed: {p.stderr.strip()[-2000:]}")
        row = json.loads(p.stdout.strip().splitlines()[-1])
        row["first_output"] = row.pop("first_output_wall") - t0
        rows.append(row)
        say(f"run {i + 1}: first output after {row['first_output']:.3f} s "
            f"({row['compiled']} kernels compiled)")
    med = {name: statistics.median(r["stages"][name] for r in rows) for name in STAGES}
    return {"plan": plan, "threads": threads, "cold": cold, "core": core, "runs": rows,
            "first_output": statistics.median(r["first_output"] for r in rows),
            "cpu_first_output": statistics.median(r["cpu_first_output"] for r in rows),
            "init": statistics.median(r["first_output"] - r["stages"]["second run"]
                                      for r in rows),
            "stages": med, "compiled": [r["compiled"] for r in rows],
            "bundle": rows[0]["bundle"]}


def format_result(res: dict) -> str:
    stages = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in res["stages"].items())
    where = f"emulated {res['core']}" if res["core"] else "this machine"
    return (f"{Path(res['plan']).name} on {where}, {res['threads']} threads, "
            f"{'empty' if res['cold'] else 'warm'} kernel cache, bundle "
            f"{'used' if res['bundle'] else 'not used'}: first output after "
            f"{res['first_output']:.3f} s (median of {len(res['runs'])} fresh processes; init "
            f"= first output - one frame: {res['init']:.3f} s; CPU time to the first output, "
            f"all threads: {res['cpu_first_output']:.3f} s; kernels compiled per process: "
            f"{res['compiled']})\n  median stages (ms): {stages}")
