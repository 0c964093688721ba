"""The engine's environment: an unusable Numba cache directory degrades to in-memory compilation
with one warning; the threading layer is chosen explicitly (tbb where its wheel is installed,
else omp)."""
import os
import subprocess
import sys

import numpy as np

import mobile_engine as me
from mobile_engine.ir import GraphBuilder, Op

SCRIPT = """
import numpy as np
import mobile_engine as me
from mobile_engine.ir import GraphBuilder, Op
b = GraphBuilder("one_relu")
y = b.node(Op.RELU, b.input("x", (1, 4, 4, 3)))
sess = me.Session(me.compile(b.build(y)))
x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 4, 4, 3)
print("ok", bool((sess.run(None, {"x": x})[0] == np.maximum(x, 0)).all()))
"""


def test_unwritable_cache_dir_warns_once_and_still_runs():
    env = {**os.environ, "NUMBA_CACHE_DIR": "/dev/null/no-such-dir", "PYTHONWARNINGS": "always"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ok True" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "kernel cache" in line]
    assert len(warnings) == 1 and "compile in memory" in warnings[0], proc.stderr[-2000:]


def test_threading_layer_is_tbb_where_installed_else_omp():
    import numba
    b = GraphBuilder("big_relu")
    y = b.node(Op.RELU, b.input("x", (1, 256, 256, 8)))     # big enough for the parallel variant
    x = np.random.default_rng(0).standard_normal((1, 256, 256, 8)).astype(np.float32)
    me.Session(me.compile(b.build(y)), threads=2).run(None, {"x": x})
    tbb = os.path.exists(os.path.join(sys.prefix, "lib", "libtbb.so.12"))
    assert numba.threading_layer() == ("tbb" if tbb else "omp")
