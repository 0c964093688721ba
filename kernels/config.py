"""All Numba policy in one place: flags, threading layer, parallel threshold, ISA facts.

Kernels import ``jit`` / ``pjit`` from here instead of calling ``numba.njit`` themselves.
"""
from __future__ import annotations

import os
import warnings

import numba
from numba import config as numba_config

# NOTE: omp starts a parallel region in ~25-40 us; numba's default workqueue layer costs
# 100-170 us per launch on these machines (DESIGN.md), and tbb is not always loadable.
if os.environ.get("NUMBA_THREADING_LAYER") is None:
    numba_config.THREADING_LAYER = "omp"
# NOTE: OpenMP workers that spin at the barrier between parallel regions eat the CPU time that
# the other worker (descheduled by another process) needs to reach it: measured on the shared
# 2-core machine (load 5), multistyle26 480x640 on 2 threads took 300 ms per frame with libgomp's
# default spinning and 68-144 ms with OMP_WAIT_POLICY=PASSIVE (CPU time 190 -> 70 ms). Set
# before libgomp loads (the first parallel kernel); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# contract: fused multiply-add; reassoc/nsz/arcp: vectorised reductions. No nnan/ninf, so NaN
# and Inf propagate as in onnxruntime.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}
# Below this many output elements (or MACs for convs) a kernel runs its serial variant: a parallel
# launch costs tens of microseconds.
PARALLEL_MIN_WORK = 1 << 16


def _cache_usable() -> bool:
    """A read-only or missing cache directory degrades to in-memory compilation, once warned."""
    cache_dir = numba_config.CACHE_DIR or os.path.join(os.path.dirname(__file__), "__pycache__")
    try:
        os.makedirs(cache_dir, exist_ok=True)
        probe = os.path.join(cache_dir, f".write-probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
        return True
    except OSError as exc:
        warnings.warn(f"Numba kernel cache {cache_dir!r} is not writable ({exc}); kernels will "
                      f"compile in memory on every start", RuntimeWarning, stacklevel=2)
        return False


CACHE = _cache_usable()
FLAGS = dict(cache=CACHE, nogil=True, error_model="numpy", boundscheck=False, fastmath=FASTMATH)


def jit(fn=None, **extra):
    """Serial kernel: ``@jit``."""
    deco = numba.njit(**{**FLAGS, **extra})
    return deco if fn is None else deco(fn)


def pjit(fn=None, **extra):
    """Parallel kernel (``prange`` loops): ``@pjit``."""
    deco = numba.njit(parallel=True, **{**FLAGS, **extra})
    return deco if fn is None else deco(fn)


def has_avx512() -> bool:
    import llvmlite.binding as llvm
    return "+avx512f" in llvm.get_host_cpu_features().flatten()


def has_avx512_vnni() -> bool:
    """x86 AVX-512 VNNI (``vpdpbusd`` on zmm): the qu8 conv kernels' fast variant."""
    import llvmlite.binding as llvm
    feats = llvm.get_host_cpu_features().flatten()
    return "+avx512vnni" in feats and "+avx512bw" in feats


def has_dotprod() -> bool:
    """aarch64 dot product instructions (``sdot``/``udot``, Armv8.2 FEAT_DotProd)."""
    import llvmlite.binding as llvm
    return "+dotprod" in llvm.get_host_cpu_features().flatten()
