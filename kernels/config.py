"""All Numba policy in one place: flags, threading layer, parallel threshold, ISA facts.

Kernels import ``jit`` / ``pjit`` from here instead of calling ``numba.njit`` themselves.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
import warnings

import numba
from numba import config as numba_config
from numba.core.caching import CacheImpl, InTreeCacheLocator, UserProvidedCacheLocator

from kernels import cache_bundle


def _preload_tbb() -> None:
    """Load the ``tbb`` wheel's ``libtbb.so.12`` (installed into the environment's ``lib/``,
    which is not on the loader's path) globally, so that Numba's tbb layer, which links it by
    name, finds it."""
    path = os.path.join(sys.prefix, "lib", "libtbb.so.12")
    if os.path.exists(path):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass


# NOTE: tbb first: it starts a parallel region in ~1.6 us, the calling thread takes part and
# idle threads steal the tasks of a thread another process holds off its core; libgomp (omp)
# takes ~9 us with passive waiting and divides the tasks up front, so a loaded machine makes the
# whole region wait for the descheduled thread (Zen 4, 2 cores, load 2: bench-zoo's geometric
# mean over 8 real nets 0.834 with tbb, 0.910 with omp, alternating with onnxruntime). tbb's
# idle workers spin ~0.5 ms after a region before they sleep (bench's 2 ms pause outlasts it).
# Numba's default workqueue layer costs 100-170 us per launch (DESIGN.md). Without the tbb
# wheel (no aarch64 build) omp runs.
_preload_tbb()
if os.environ.get("NUMBA_THREADING_LAYER") is None:
    numba_config.THREADING_LAYER = "default"
    numba_config.THREADING_LAYER_PRIORITY = ["tbb", "omp", "workqueue"]
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
# launch costs tens of microseconds. Read only by ``use_parallel`` (and block-count heuristics).
PARALLEL_MIN_WORK = 1 << 16
# Multiply-adds per unit of work: a conv's or GEMM's MACs count 1/MAC_WORK of an output element
# of a memory-bound step. NOTE: measured on one Zen 4 thread, PP-OCR's direction classifier's
# convs do ~33 MACs per ns; counted 1:1, a conv of 65536 MACs (2 us of work) started a
# parallel region (omp: ~9 us to launch and join, measured alone), and the classifier took
# 2.3 ms on two threads against 0.9 ms on one.
MAC_WORK = 32


def use_parallel(work: int, tasks: int = 2, threads: int | None = None) -> bool:
    """The one serial-or-parallel decision: every binder and every whole-array entry point asks
    it, none decides on its own. True (run the ``pjit`` variant) when the session runs at least
    two threads, the step's ``work`` (output elements; MACs // ``MAC_WORK`` for convs and
    GEMMs; taps for pools) pays for a parallel launch (``PARALLEL_MIN_WORK``) and it splits into at
    least two ``tasks``. ``threads`` None: all of Numba's threads (``NUMBA_NUM_THREADS``), as a
    Session made without ``threads``.

    NOTE: with ``threads=1`` the answer is always False, so a one-thread Session binds only
    serial (``jit``) dispatchers and never enters a parallel region: under ``set_num_threads(1)``
    a ``prange`` kernel would still pay a parallel launch per call."""
    if threads is None:
        threads = numba_config.NUMBA_NUM_THREADS
    return threads >= 2 and tasks >= 2 and work >= PARALLEL_MIN_WORK


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


# --- the kernel cache's validity ------------------------------------------------------------
# Numba keys a function's cached machine code on its own source file only, but a kernel also
# contains the code of the jit functions it calls from other files (activation.py, intrinsics.py
# ...), linked in at compile time: edit one of those and the cached kernels would run the old
# code. So the stamp of every function defined in kernels/ covers all of kernels/*.py.
KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def _package_stamp() -> bytes:
    h = hashlib.sha256()
    for name in sorted(os.listdir(KERNELS_DIR)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(KERNELS_DIR, name), "rb") as f:
                h.update(f.read())
    return h.digest()


PACKAGE_STAMP = _package_stamp()


def _stamped(base):
    class Locator(base):
        """``base`` for functions defined in kernels/: the stamp also covers the package."""

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != KERNELS_DIR:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return (super().get_source_stamp(), PACKAGE_STAMP)

    Locator.__name__ = f"Kernels{base.__name__}"
    return Locator


CacheImpl._locator_classes[:0] = [_stamped(UserProvidedCacheLocator),
                                  _stamped(InTreeCacheLocator)]
FLAGS = dict(cache=CACHE, nogil=True, error_model="numpy", boundscheck=False, fastmath=FASTMATH)


def _decorator(**flags):
    """``numba.njit(**flags)``, whose dispatchers cache through ``cache_bundle.KernelCache``
    (a verified kernel bundle first, then Numba's cache) when ``flags["cache"]``."""
    cache = flags.pop("cache", False)
    deco = numba.njit(cache=False, **flags)
    return (lambda fn: cache_bundle.serve(deco(fn))) if cache else deco


def jit(fn=None, **extra):
    """Serial kernel: ``@jit``."""
    deco = _decorator(**{**FLAGS, **extra})
    return deco if fn is None else deco(fn)


def pjit(fn=None, **extra):
    """Parallel kernel (``prange`` loops): ``@pjit``."""
    deco = _decorator(parallel=True, **{**FLAGS, **extra})
    return deco if fn is None else deco(fn)


def has_avx512(features: set[str] | None = None) -> bool:
    """x86 AVX-512F in what Numba compiles for (the host's, or NUMBA_CPU_FEATURES), or in
    ``features`` (LLVM's "+avx512f" spelling: a compile target's, mobile_engine/targets.py)."""
    return "+avx512f" in (compile_features() if features is None else features)


def vector_registers(features: set[str] | None = None) -> tuple[int, int]:
    """(32-bit lanes per vector register, vector registers) of the code Numba compiles, or of a
    CPU with LLVM ``features`` ("+neon" marks aarch64): AVX-512 16 x 32, AVX/AVX2 8 x 16,
    aarch64 NEON 4 x 32, otherwise (SSE) 4 x 16."""
    if is_aarch64() if features is None else "+neon" in features:
        return 4, 32
    if has_avx512(features):
        return 16, 32
    return (8, 16) if "+avx" in (compile_features() if features is None else features) \
        else (4, 16)


def fit_rows(rows: int, row_lanes: int, registers: tuple[int, int] | None = None) -> int:
    """The rows of a conv kernel's register tile on this machine (or on a CPU with
    ``registers``, ``vector_registers(features)``): ``rows`` (chosen for AVX-512's 32 zmm
    registers) or fewer, so that the accumulators (``row_lanes`` 32-bit lanes per row), one
    row's weight vectors and two scratch registers fit the register file.

    NOTE: a tile that does not fit spills accumulators to the stack in the inner loop:
    compiled for AVX2 here, the 128->128 3x3 conv ran 1.57x faster with 6 rows than 16 for
    16 channels, 1.16x with 2 rows than 8 for 32, and the 9x9 32->3 pixel-lane conv 1.56x
    with 16-pixel tiles than 64 (f32_conv2d_pix.machine_tile); NEON's 32 q registers hold a
    quarter of AVX-512's lanes (tests/arm shows the spills per loop).
    """
    lanes, count = registers or vector_registers()
    per_row = -(-row_lanes // lanes)
    return max(1, min(rows, (count - per_row - 2) // per_row))


def has_avx512_vnni(features: set[str] | None = None) -> bool:
    """x86 AVX-512 VNNI (``vpdpbusd`` on zmm) in what Numba compiles for (or in ``features``):
    the qu8 conv kernels' fast variant. NOTE: the compile target's, not the host's: with
    NUMBA_CPU_FEATURES naming an older x86 the vnni kernels would not compile."""
    feats = compile_features() if features is None else features
    return "+avx512vnni" in feats and "+avx512bw" in feats


# --- aarch64 ISA facts ------------------------------------------------------------------------
# NOTE: LLVM's host feature list on aarch64 Linux is built from a few /proc/cpuinfo flags and
# never names dotprod (seen: "+aes,+crc,+fp-armv8,+lse,+neon,-rand,+sha2,-sve" on a Cortex-A76),
# so "what the CPU reports" is read from the kernel's hwcaps instead, the bits /proc/cpuinfo's
# "Features" line is printed from.
_AT_HWCAP, _AT_HWCAP2 = 16, 26
_HWCAP_ASIMDDP = 1 << 20        # Linux arch/arm64 uapi hwcap.h: dot product (asimddp)
_HWCAP2_I8MM = 1 << 13          # usdot/smmla (i8mm)


def is_aarch64() -> bool:
    import platform
    return platform.machine().lower() in ("aarch64", "arm64")


def _reported_aarch64() -> set[str]:
    """The dot-product features the OS says this aarch64 CPU has: {"dotprod", "i8mm"} subsets
    (Linux: getauxval hwcaps; macOS: the hw.optional.arm sysctls)."""
    import ctypes
    import sys
    found = set()
    if sys.platform.startswith("linux"):
        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        if getauxval(_AT_HWCAP) & _HWCAP_ASIMDDP:
            found.add("dotprod")
        if getauxval(_AT_HWCAP2) & _HWCAP2_I8MM:
            found.add("i8mm")
    elif sys.platform == "darwin":
        lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
        for name, feat in (("hw.optional.arm.FEAT_DotProd", "dotprod"),
                           ("hw.optional.arm.FEAT_I8MM", "i8mm")):
            val, size = ctypes.c_int(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_int))
            if lib.sysctlbyname(name.encode(), ctypes.byref(val), ctypes.byref(size), None, 0) == 0 \
                    and val.value:
                found.add(feat)
    return found


@functools.lru_cache(maxsize=1)
def _host_features() -> str:
    """LLVM's host feature list, asked once: every fit_rows asks for the features, and LLVM took
    0.67 ms per answer (19 answers, 12.7 ms, while multistyle26's Session bound; load 3)."""
    import llvmlite.binding as llvm
    return llvm.get_host_cpu_features().flatten()


def _complete_host_features() -> None:
    """On aarch64, add what the CPU reports and LLVM's host list omits (``+dotprod``,
    ``+i8mm``) to the features Numba compiles for, so a dot-product kernel compiles on any core
    that has the instructions, whatever CPU name LLVM gives it. A user's NUMBA_CPU_NAME or
    NUMBA_CPU_FEATURES wins: then nothing is changed."""
    if not is_aarch64() or numba_config.CPU_FEATURES is not None or numba_config.CPU_NAME:
        return
    try:
        reported = _reported_aarch64()
    except (OSError, AttributeError):        # no getauxval/sysctlbyname: keep LLVM's list
        return
    feats = [f for f in _host_features().split(",") if f]
    missing = [f for f in sorted(reported) if f"+{f}" not in feats]
    if missing:
        feats = [f for f in feats if f.lstrip("+-") not in missing] + [f"+{f}" for f in missing]
        numba_config.CPU_FEATURES = ",".join(feats)


_complete_host_features()


def compile_features() -> set[str]:
    """The target features Numba compiles kernels for ("+neon", "+dotprod", ...)."""
    feats = numba_config.CPU_FEATURES
    if feats is None:
        feats = _host_features()
    return {f for f in feats.split(",") if f}


def has_dotprod(features: set[str] | None = None) -> bool:
    """aarch64 dot product instructions (``sdot``/``udot``, Armv8.2 FEAT_DotProd) in what
    Numba compiles for: the CPU reports them (hwcaps, added by ``_complete_host_features``) or
    NUMBA_CPU_FEATURES names them; or in an aarch64 target's ``features``. Selects the ``sdot``
    qu8 kernels."""
    if features is not None:
        return "+neon" in features and "+dotprod" in features
    return is_aarch64() and "+dotprod" in compile_features()
