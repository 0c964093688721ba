"""The binder registry: kernel id -> binder.

A binder ``bind(params, weights, inputs, outputs, threads=None)`` gets a loaded step's params,
its weight arrays (read-only views of the plan file), its input and output arrays (views of the
arena, in the IR's physical shapes) and the session's thread count, checks that they fit the
kernel (``runtime/validate.py``: an edited plan must not send a kernel out of bounds) and returns
the ``(function, args)`` pair that ``Session.run`` calls on every frame with no further work.
It picks the serial or the parallel variant with ``kernels.config.use_parallel(work, tasks,
threads)`` and nothing else (``threads`` None: all of Numba's threads; 1: always serial).
"""
from __future__ import annotations

from typing import Callable

Binder = Callable[..., tuple[Callable, tuple]]

BINDERS: dict[str, Binder] = {}


def binds(*kernel_ids: str):
    """Register the decorated binder for ``kernel_ids``."""
    def register(fn: Binder) -> Binder:
        for k in kernel_ids:
            BINDERS[k] = fn
        return fn
    return register
