"""``mobile-engine bench-start``: fresh processes, time and CPU time to the first output."""
from __future__ import annotations

from mobile_engine import bench_start
from tests.bundle_probe import tiny_plan


def test_bench_start_times_fresh_processes(tmp_path, capsys):
    from mobile_engine.cli import main
    plan = tiny_plan(tmp_path / "tiny.mplan")
    res = bench_start.run(plan, threads=1, runs=2, say=lambda msg: None)
    assert len(res["runs"]) == 2 and res["bundle"] is None
    assert set(res["stages"]) == set(bench_start.STAGES)
    # the child's own CPU time, interpreter start included: on one thread never past the wall
    # time the parent measured (plus its clock's slack)
    assert all(0 < r["cpu_first_output"] <= r["first_output"] + 0.05 for r in res["runs"])
    assert "CPU time to the first output" in bench_start.format_result(res)
    assert main(["bench-start", str(plan), "--runs", "1", "--threads", "1"]) == 0
    assert "first output after" in capsys.readouterr().out
