"""Starting the engine without a frozen window.

The first start of a new engine build compiles every kernel on the plan's first run (tens of
seconds; later starts load them from Numba's cache). ``KernelProgress`` turns the first run's
steps into progress (which kernel, how many left) for the terminal and the loading screen;
``start`` makes the stylizer in a thread while the window shows that progress and answers keys,
so 'q' (or closing the window) quits at any time.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Callable

from demo_style_transfer.display import loading_screen

QUIT_KEYS = (ord("q"), 27)          # q, Esc
_pending: list[threading.Thread] = []


class Cancelled(BaseException):
    """The user quit while the engine was starting (a BaseException, like KeyboardInterrupt:
    no fallback path may catch it)."""


class KernelProgress:
    """``progress(done, kernels)`` after each step of a plan's first run (``kernels``: the kernel
    id of every step): a terminal line per kernel that starts after a slow one (on a terminal,
    one line redrawn in place) and the state of the loading screen. Raises ``Cancelled`` once
    ``cancel`` is set."""

    def __init__(self, log: Callable[[str], None], cancel: threading.Event | None = None,
                 stream=None, clock=time.perf_counter) -> None:
        self.log, self.cancel, self.clock = log, cancel or threading.Event(), clock
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.fraction: float | None = None
        self.text = ""
        self._t0 = self._last = None

    def __call__(self, done: int, kernels: list[str]) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        now = self.clock()
        if self._t0 is None:
            self._t0 = self._last = now
        distinct = list(dict.fromkeys(kernels))
        total = len(kernels)
        self.fraction = done / max(total, 1)
        if done >= total:
            self.text = f"kernels ready: {len(distinct)} kernels, {total} steps in " \
                        f"{now - self._t0:.1f} s"
            if self.tty:
                self.stream.write("\r\033[K")
            self.log("  " + self.text)
            return
        kernel = kernels[done]
        k = distinct.index(kernel) + 1
        seen = len(set(kernels[:done]))
        self.text = (f"kernel {kernel} ({seen} of {len(distinct)} ready, step {done + 1}/"
                     f"{total}; compiled once, then loaded from Numba's cache)")
        if self.tty:
            self.stream.write(f"\r\033[K  kernels {seen}/{len(distinct)}: {kernel}")
            self.stream.flush()
        elif done == 0 or (kernel not in kernels[:done] and now - self._last > 1.0):
            self._last = now
            self.log(f"  kernels: {seen}/{len(distinct)} ready, next {kernel} (#{k}, step "
                     f"{done + 1}/{total})")


def start(make: Callable[[Callable, KernelProgress], object], window, log: Callable[[str], None],
          size_wh: tuple[int, int]):
    """``make(log, progress)`` (the stylizer and its warm-up); with a window in a thread while the
    window shows the log and the kernels' progress. Returns make's result, or None when the user
    quit (the thread is left to die with the process: ``pending``)."""
    lines: list[str] = []

    def tee(text: str) -> None:
        lines.append(text)
        log(text)

    progress = KernelProgress(tee)
    if window is None:
        return make(log, progress)
    box: list = []

    def target():
        try:
            box.append((make(tee, progress), None))
        except BaseException as exc:    # NOTE: handed to the main thread, which raises it
            box.append((None, exc))

    thread = threading.Thread(target=target, name="engine-start", daemon=True)
    thread.start()
    try:
        while not box:
            thread.join(0.05)
            if box:
                break
            shown = lines + ([progress.text] if progress.text else [])
            window.show(loading_screen(size_wh, shown, progress.fraction))
            if any(k in QUIT_KEYS for k in window.poll(0, 30)):
                progress.cancel.set()
                _pending.append(thread)
                return None
    except KeyboardInterrupt:
        progress.cancel.set()
        _pending.append(thread)
        raise
    result, exc = box[0]
    if exc is not None:
        raise exc
    return result


def pending() -> bool:
    """A start thread is still compiling after the user quit (``__main__`` then exits at once)."""
    return any(t.is_alive() for t in _pending)
