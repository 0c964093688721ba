"""``threads`` reaches the binders: a Session with one thread binds only serial kernels and never
enters a parallel region; with two threads the big steps bind their parallel variants.

The serial-or-parallel choice is ``kernels.config.use_parallel`` alone. Two independent checks:
the Numba dispatchers each bound call reaches (the function, its arguments and the closures of
composite steps) are compiled without ``parallel=True``; and a fresh interpreter that loads a plan
and runs frames at ``threads=1`` never initialises Numba's threading layer (any ``prange`` launch
does, so ``numba.threading_layer()`` still raises), while one at ``threads=2`` does.
"""
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import mobile_engine as me
from kernels import config
from tests import onnx_nets


def dispatchers(obj, seen=None) -> list:
    """Every Numba dispatcher ``obj`` calls: itself, the items of tuples/lists (args), and the
    closure cells of Python functions (composite steps: conv + norm, packed-B GEMM, ...)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, CPUDispatcher):
        return [obj]
    found = []
    if isinstance(obj, (tuple, list)):
        for item in obj:
            found += dispatchers(item, seen)
    elif callable(obj) and getattr(obj, "__closure__", None):
        for cell in obj.__closure__:
            try:
                found += dispatchers(cell.cell_contents, seen)
            except ValueError:               # an empty cell
                pass
    return found


def parallel_steps(sess) -> dict[str, list[bool]]:
    """step name -> parallel flag of every dispatcher its bound call reaches."""
    return {name: [bool(d.targetoptions.get("parallel")) for d in dispatchers((fn, args))]
            for (name, _, fn), (_, args) in zip(sess.bound_kernels(), sess._calls)}


@pytest.fixture(scope="module")
def plans():
    """fp32 plans of every test net (convs of four kinds, pools, resize, concat, GEMM,
    reductions, norms) and int8 plans of two (int8 convs, norms, quantize/add steps)."""
    out = {}
    for name, net in onnx_nets.NETS.items():
        model = net().SerializeToString()
        out[name] = me.compile(model)
        if name in ("johnson_like", "mobilenet_like"):
            feeds = [onnx_nets.random_feeds(net(), seed=s) for s in range(2)]
            out[f"{name}_int8"] = me.compile(model, quantize="int8", calibration=feeds)
    return out


def test_use_parallel_is_the_one_decision():
    big = config.PARALLEL_MIN_WORK
    assert config.use_parallel(big, 2, 2)
    assert not config.use_parallel(big, 2, 1)            # one thread: always serial
    assert not config.use_parallel(big - 1, 2, 2)        # too little work for a launch
    assert not config.use_parallel(big, 1, 2)            # one task cannot be split
    assert config.use_parallel(big) == (numba.config.NUMBA_NUM_THREADS >= 2)


def test_one_thread_binds_only_serial_kernels(plans):
    for name, plan in plans.items():
        steps = parallel_steps(me.Session(plan, threads=1))
        assert any(steps.values()), f"{name}: no dispatcher found (the walk is broken)"
        bad = [step for step, flags in steps.items() if any(flags)]
        assert not bad, f"{name}: threads=1 binds parallel kernels in {bad}"


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_two_threads_bind_parallel_kernels_for_big_steps_with_the_same_results(plans,
                                                                               monkeypatch):
    # the test nets are small: their convs' MACs counted 1:1 as work (not 1/MAC_WORK) make
    # them big enough for the parallel variants, whose results this compares
    monkeypatch.setattr(config, "MAC_WORK", 1)
    for name, plan in plans.items():
        sess1, sess2 = me.Session(plan, threads=1), me.Session(plan, threads=2)
        steps = parallel_steps(sess2)
        # every conv net has convs of more than PARALLEL_MIN_WORK multiply-adds (the
        # classifier's GEMMs and reductions are smaller)
        assert name == "classifier_head" or any(any(f) for f in steps.values()), \
            f"{name}: nothing parallel"
        feeds = {i["name"]: np.random.default_rng(0).random(i["shape"], dtype=np.float32)
                 for i in plan.inputs}
        for a, b in zip(sess1.run(None, feeds), sess2.run(None, feeds)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)


_RUN = textwrap.dedent("""
    import sys
    import numba
    import numpy as np
    import mobile_engine as me
    sess = me.Session(sys.argv[1], threads=int(sys.argv[2]))
    feeds = {i.name: np.random.default_rng(0).random(i.shape, dtype=np.float32)
             for i in sess.get_inputs()}
    for _ in range(2):
        sess.run(None, feeds)
    try:
        print(numba.threading_layer())
    except ValueError:
        print("none")
""")


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_one_thread_enters_no_parallel_region(plans, tmp_path):
    """A fresh process: after frames at threads=1 Numba's threading layer was never started (a
    parallel launch starts it, as the threads=2 run shows: the check can fail)."""
    for name in ("unet_like", "johnson_like_int8"):
        path = tmp_path / f"{name}.mplan"
        plans[name].save(path)
        layer = {}
        for threads in (1, 2):
            done = subprocess.run([sys.executable, "-c", _RUN, str(path), str(threads)],
                                  capture_output=True, text=True, timeout=600,
                                  cwd=Path(__file__).resolve().parents[1])
            assert done.returncode == 0, done.stderr[-2000:]
            layer[threads] = done.stdout.strip().splitlines()[-1]
        assert layer[1] == "none", f"{name}: threads=1 started threading layer {layer[1]!r}"
        assert layer[2] != "none", f"{name}: threads=2 ran no parallel kernel"
