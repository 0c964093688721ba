"""Thread contract: sessions over one plan run in parallel threads with results identical to a
serial run; one session entered from two threads at once refuses with a clear error."""
import threading

import numpy as np
import pytest

import mobile_engine as me
from tests import onnx_nets


@pytest.fixture(scope="module")
def plan():
    return me.compile(onnx_nets.johnson_like())


def _feeds(plan, seed):
    rng = np.random.default_rng(seed)
    return {i["name"]: rng.random(i["shape"], dtype=np.float32) for i in plan.inputs}


def test_two_sessions_in_two_threads_match_serial_bit_for_bit(plan):
    feeds = [_feeds(plan, s) for s in range(6)]
    serial = [me.Session(plan, threads=1).run(None, f)[0] for f in feeds]
    results: dict[tuple[int, int], np.ndarray] = {}

    def worker(k):
        sess = me.Session(plan, threads=1)          # shares the plan's weights, own arena
        for _ in range(3):
            for i, f in enumerate(feeds):
                results[(k, i)] = sess.run(None, f)[0]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (k, i), out in results.items():
        np.testing.assert_array_equal(out, serial[i], err_msg=f"thread {k}, input {i}")


def test_one_session_from_two_threads_refuses_or_is_safe(plan):
    sess = me.Session(plan, threads=1)
    feeds = [_feeds(plan, s) for s in range(4)]
    expected = [me.Session(plan, threads=1).run(None, f)[0] for f in feeds]
    errors, wrong = [], []

    def worker():
        for _ in range(20):
            for f, e in zip(feeds, expected):
                try:
                    (out,) = sess.run(None, f)
                except me.EngineError as exc:
                    errors.append(str(exc))
                    continue
                if not np.array_equal(out, e):
                    wrong.append(1)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, "a concurrent run returned a wrong answer"
    assert all("one Session per thread" in e for e in errors)


def test_outputs_are_owned_by_the_caller(plan):
    """Outputs are copies: the next run does not overwrite what the last one returned."""
    sess = me.Session(plan)
    a = sess.run(None, _feeds(plan, 0))[0]
    keep = a.copy()
    sess.run(None, _feeds(plan, 1))
    np.testing.assert_array_equal(a, keep)


def test_run_into_writes_the_callers_buffers(plan):
    sess = me.Session(plan)
    feeds = _feeds(plan, 3)
    (expected,) = sess.run(None, feeds)
    out = sess.get_outputs()[0]
    buf = np.empty(out.shape, np.float32)
    sess.run_into(feeds, {out.name: buf})
    np.testing.assert_array_equal(buf, expected)
    with pytest.raises(me.InputError, match="expected float32"):
        sess.run_into(feeds, {out.name: np.empty(out.shape, np.float64)})
