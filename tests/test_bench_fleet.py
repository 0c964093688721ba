"""`mobile-engine bench MODEL --cluster ...`: the same benchmark on every chosen Dask worker (here
two worker processes of a LocalCluster on 127.0.0.1 stand for two boards), one at a time unless
--all-at-once; each board's JSON is the bench schema (read back by `bench-report`'s own loader)
and the table has one row per board."""
import logging

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import mobile_engine as me  # noqa: E402
from mobile_engine.bench_report import load_reports  # noqa: E402
from mobile_engine.cli import main  # noqa: E402
from mobile_engine.ir import GraphBuilder, Op  # noqa: E402


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    b = GraphBuilder("fleet")
    x = b.input("x", (1, 16, 16, 3))
    w = np.random.default_rng(1).normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    y = b.node(Op.CONV2D, x, b.const(w), b.const(np.zeros(4, np.float32)), pads=(1, 1, 1, 1))
    path = tmp_path_factory.mktemp("fleet") / "tiny.mplan"
    me.compile(b.build(b.node(Op.RELU, y))).save(path)
    return path


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as c, \
            distributed.Client(c, set_as_default=False) as client:
        yield c, client


def _bench(plan, address, *extra):
    return main(["bench", str(plan), "--cluster", address, "--runs", "3", "--warmup", "0",
                 *extra])


def _spans(task_stream) -> list[tuple[float, float]]:
    return sorted((min(s["start"] for s in t["startstops"]), max(s["stop"] for s in
                   t["startstops"])) for t in task_stream.data if "bench_on_worker" in t["key"])


@pytest.mark.parametrize("together", [False, True])
def test_every_board_benchmarks_and_reports(plan, cluster, tmp_path, capsys, together):
    c, client = cluster
    names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
    table = tmp_path / "boards.md"
    with distributed.get_task_stream(client) as stream:
        assert _bench(plan, c.scheduler_address, "--json-dir", str(tmp_path), "--report",
                      str(table), *(["--all-at-once"] if together else [])) == 0
    reports = load_reports([tmp_path / f"{n}.json" for n in names])     # the schema holds
    assert [d["label"] for _, d in reports] == names
    assert all(d["runs"] == 3 and len(d["results"]) == 1 and d["model"] == str(plan)
               for _, d in reports)
    rows = [line for line in table.read_text().splitlines() if line.startswith("| tiny")]
    assert len(rows) == 2
    spans = _spans(stream)
    assert len(spans) == 2
    if not together:
        assert spans[0][1] <= spans[1][0], spans                # one board after the other
    out = capsys.readouterr().out
    assert all(f"== {n} ==" in out for n in names)


def test_chosen_workers_only(plan, cluster, tmp_path):
    c, client = cluster
    name = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())[0]
    assert _bench(plan, c.scheduler_address, "--workers", name, "--json-dir", str(tmp_path),
                  "--report", str(tmp_path / "t.md")) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{name}.json"]


@pytest.mark.parametrize("extra, message", [
    (["--workers", "nosuchboard"], "--workers nosuchboard: no such worker"),
    (["--label", "pi4"], "--label does not go with --cluster"),
    (["--json", "x.json"], "--json does not go with --cluster"),
])
def test_fleet_errors_are_one_line(plan, cluster, capsys, extra, message):
    c, _ = cluster
    assert _bench(plan, c.scheduler_address, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_fleet_options_need_a_cluster(plan, capsys):
    assert main(["bench", str(plan), "--workers", "pi4"]) == 2
    assert "--workers needs --cluster" in capsys.readouterr().err
