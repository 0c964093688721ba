"""``mobile-engine bench-start``: fresh processes, time and CPU time to the first output."""
from __future__ import annotations

import os

from mobile_engine import bench_start
from tests.bundle_probe import tiny_plan


def test_bench_start_times_fresh_processes(tmp_path, capsys):
    from mobile_engine.cli import main
    plan = tiny_plan(tmp_path / "tiny.mplan")
    res = bench_start.run(plan, threads=1, runs=2, say=lambda msg: None)
    assert len(res["runs"]) == 2 and res["bundle"] is None
    assert set(res["stages"]) == set(bench_start.STAGES)
    # the child's own CPU time, interpreter start and imports included (tens of ms at least),
    # at most the wall time the parent measured on every usable core
    cores = len(os.sched_getaffinity(0))
    assert all(0.02 < r["cpu_first_output"] <= r["first_output"] * cores + 0.05
               for r in res["runs"]), res["runs"]
    assert "CPU time to the first output" in bench_start.format_result(res)
    assert main(["bench-start", str(plan), "--runs", "1", "--threads", "1"]) == 0
    assert "first output after" in capsys.readouterr().out
