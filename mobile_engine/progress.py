"""Progress on a terminal only: a bar redrawn in place on stderr when it is a terminal, nothing
in logs and pipes (no carriage-return lines in CI output). One class for every long step of the
command line (calibration, bench runs, downloads); the demo's kernel progress is in
demo_style_transfer/startup.py.
"""
from __future__ import annotations

import sys
import time


class Progress:
    """A plain-text progress bar on stderr, redrawn in place.

    ``enabled=None`` draws only on a terminal and only once the work has run for ``delay`` seconds,
    so short benchmarks and logs stay clean; ``True`` always draws, ``False`` never.
    """

    def __init__(self, total: int, label: str, enabled: bool | None = None, stream=None,
                 delay: float = 1.0, width: int = 30) -> None:
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = sys.stderr if stream is None else stream
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = tty if enabled is None else enabled
        self.delay = delay if enabled is None else 0.0
        self.t0 = time.perf_counter()
        self._last = -1.0
        self._drawn = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.t0
        if elapsed < self.delay or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        fill = int(self.width * done / self.total)
        self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] "
                          f"{done}/{self.total} {elapsed:.1f} s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_callback(label: str, enabled: bool | None = None):
    """``progress(done, total)`` drawing a ``Progress`` bar (for ``me.compile(progress=...)``)."""
    bar: list[Progress] = []

    def show(done: int, total: int) -> None:
        if not bar:
            bar.append(Progress(total, label, enabled))
        bar[0].update(done)
        if done >= total:
            bar[0].close()
    return show
