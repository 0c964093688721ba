"""pytest plugin for the emulated aarch64 runs (``-p tests.arm.plugin``, tests/arm/run.py).

1. Remembers every Numba dispatcher compiled in this process, so the instruction check
   (``test_instructions.py``, run last) inspects the very machine code the plan and the kernel
   tests ran, without compiling anything twice. ``inspect_asm()`` only works for code compiled
   in this process, not for code loaded from Numba's cache: run.py gives every run an empty
   ``NUMBA_CACHE_DIR``.
2. A compile budget for the kernel tests. An emulated compile takes 10-60 s, so each test file
   of tests/kernels may compile at most ``ARM_COMPILE_BUDGET`` (JSON ``{file name: n}``) new
   kernel variants; a test that needs one more is skipped ("compile budget") when its kernel
   starts compiling, before it checks anything. Tests that reuse kernels already compiled (by
   the multistyle26 plan, which runs first, or by earlier tests) always run, so the run covers
   the plan's kernels at every edge shape of the tables, plus a few more variants per family.
   Deterministic: the same tests run every time. run.py prints how many ran and were skipped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numba.core.event as ev
import pytest

COMPILED: dict[int, object] = {}      # id(dispatcher) -> dispatcher, in compile order
COMPILED_IN: dict[int, str] = {}      # id(dispatcher) -> the test that first compiled it
PLAN_KERNELS: dict[int, set[str]] = {}   # id(dispatcher) -> kernel ids of the plan's steps
BUDGET: dict[str, int] = json.loads(os.environ.get("ARM_COMPILE_BUDGET") or "{}")
SPENT: dict[str, list[str]] = {}      # file -> kernels compiled for it
_state = {"file": None, "test": None, "depth": 0}


class _Recorder(ev.Listener):
    def on_start(self, event):
        _state["depth"] += 1
        f = _state["file"]
        if _state["depth"] != 1 or f is None or f not in BUDGET:
            return
        disp = (event.data or {}).get("dispatcher")
        spent = SPENT.setdefault(f, [])
        if len(spent) >= BUDGET[f]:
            name = getattr(getattr(disp, "py_func", None), "__name__", "?")
            pytest.skip(f"compile budget: {f} already compiled {len(spent)} kernel variants "
                        f"under emulation ({', '.join(spent)}); {name} would be one more")
        spent.append(getattr(getattr(disp, "py_func", None), "__name__", "?"))

    def on_end(self, event):
        _state["depth"] -= 1
        disp = (event.data or {}).get("dispatcher")
        if disp is not None:
            COMPILED.setdefault(id(disp), disp)
            COMPILED_IN.setdefault(id(disp), _state["test"] or "")


ev.register("numba:compile", _Recorder())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _state["file"] = Path(str(item.fspath)).name
    _state["test"] = item.nodeid
    try:
        yield
    finally:
        _state["file"] = _state["test"] = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _state["test"] = item.nodeid          # module fixtures (the plan) compile in setup
    try:
        yield
    finally:
        _state["test"] = None


OUTCOMES: dict[str, dict[str, int]] = {}    # file -> {"passed": n, "failed": n, "budget": n}


def pytest_runtest_logreport(report):
    f = Path(report.nodeid.split("::")[0]).name
    if f not in BUDGET or (report.when != "call" and not report.skipped):
        return
    kind = "budget" if report.skipped and "compile budget" in str(report.longrepr) else \
        report.outcome
    counts = OUTCOMES.setdefault(f, {})
    counts[kind] = counts.get(kind, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if BUDGET:
        terminalreporter.write_line(
            "kernel tests per file (ran, skipped for the compile budget; variants compiled / "
            "budget): " + "; ".join(
                f"{f}: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
                f"{c.get('budget', 0)} skipped ({len(SPENT.get(f, []))}/{BUDGET[f]}: "
                f"{', '.join(SPENT.get(f, [])) or '-'})" for f, c in OUTCOMES.items()))
