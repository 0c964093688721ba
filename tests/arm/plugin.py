"""pytest plugin for the emulated aarch64 runs (``-p tests.arm.plugin``): remembers every Numba
dispatcher compiled in this process, so the instruction check (``test_emulated.py``) inspects the
very machine code the kernel tests and the plan ran, without compiling anything twice.

Numba's ``inspect_asm()`` only works for code compiled in this process, not for code loaded
from its cache; ``tests/arm/run.py`` points ``NUMBA_CACHE_DIR`` at an empty directory per run.
"""
from __future__ import annotations

import numba.core.event as ev

COMPILED: dict[int, object] = {}      # id(dispatcher) -> dispatcher, in compile order


class _Recorder(ev.Listener):
    def on_start(self, event):
        pass

    def on_end(self, event):
        disp = (event.data or {}).get("dispatcher")
        if disp is not None:
            COMPILED.setdefault(id(disp), disp)


ev.register("numba:compile", _Recorder())
