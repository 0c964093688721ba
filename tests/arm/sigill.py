"""The negative check of ``make test-arm``: the emulator enforces the instruction set.

Run inside the emulator by tests/arm/run.py. Compiles a plain int8 dot product (each step cast
to int32, so LLVM keeps 32-bit lanes and, for a core with dotprod, emits ``sdot``), prints
whether its machine code contains ``sdot``/``udot``, then runs it and checks the result against
numpy. run.py runs it three ways:

- on an emulated Cortex-A72 with ``NUMBA_CPU_NAME=cortex-a76`` (code compiled for a Pi 5 on a
  Pi 4): must die with SIGILL after printing ``dot instructions: yes``;
- the same code on an emulated Cortex-A76: must run and match numpy (the code is right; only
  the core lacks the instruction);
- on the Cortex-A72 without overrides, as the engine runs (Numba compiles for the CPU it runs
  on): must run, match numpy and contain no dot instruction.
"""
from __future__ import annotations

import re
import sys

import numba
import numpy as np


@numba.njit(error_model="numpy")
def dot_i8(a, b):
    s = np.int32(0)
    for i in range(a.size):
        s = np.int32(s + np.int32(a[i]) * np.int32(b[i]))   # int32 steps: no int64 promotion
    return s


def main() -> int:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, 4096, dtype=np.int8)
    b = rng.integers(-128, 128, 4096, dtype=np.int8)
    dot_i8.compile("(int8[::1], int8[::1])")
    asm = dot_i8.inspect_asm(dot_i8.signatures[0])
    has_dot = bool(re.search(r"^\s+[su]dot\s", asm, re.M))
    print(f"compiled for: {numba.config.CPU_NAME or 'host'} "
          f"{numba.config.CPU_FEATURES or ''}".rstrip(), flush=True)
    print(f"dot instructions: {'yes' if has_dot else 'no'}", flush=True)
    got = int(dot_i8(a, b))
    want = int(np.dot(a.astype(np.int64), b.astype(np.int64)))
    print(f"result: {got} (numpy {want})", flush=True)
    return 0 if got == want else 1


if __name__ == "__main__":
    sys.exit(main())
