"""Session: load a plan, bind every step to its kernel once, run frames.

The surface follows onnxruntime's ``InferenceSession`` (``run``, ``get_inputs``, ``get_outputs``,
``providers=``, ``sess_options=``), so switching is one line; ``close()`` or ``with Session(...)``
releases the arena.

Thread contract: a Session owns one arena, so one ``run`` at a time; a second thread that calls
``run`` while another is inside it gets an ``EngineError`` at once (never a wrong answer). For
parallel work create one Session per thread: sessions over one Plan share its mapped weights.
"""
from __future__ import annotations

import numbers
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numba
import numpy as np

from mobile_engine.errors import EngineError, InputError, PlanFormatError, PlanTargetWarning
from mobile_engine.limits import check_arena
from mobile_engine.plan.format import ALIGN
from mobile_engine.plan.plan import Plan, as_plan
from mobile_engine.runtime import bundle, tiles
from mobile_engine.runtime.binders import BINDERS


@dataclass(frozen=True)
class NodeArg:
    """onnxruntime-style description of an input or output."""
    name: str
    shape: tuple[int, ...]
    type: str


_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)", "int32": "tensor(int32)",
              "uint8": "tensor(uint8)", "int8": "tensor(int8)", "bool": "tensor(bool)"}


CPU_PROVIDER = "CPUExecutionProvider"


@dataclass
class SessionOptions:
    """onnxruntime-style options; only ``intra_op_num_threads`` means something here (0: all the
    CPUs Numba may use). An ``onnxruntime.SessionOptions`` is accepted as well."""
    intra_op_num_threads: int = 0


def _check_providers(providers) -> None:
    """Only the CPU: onnxruntime's ``["CPUExecutionProvider"]`` (names or (name, options))."""
    if providers is None:
        return
    if isinstance(providers, str):
        providers = [providers]
    for p in providers:
        name = p[0] if isinstance(p, (tuple, list)) and p else p
        if name != CPU_PROVIDER:
            raise EngineError(f"providers: {name!r} is not available; mobile-engine runs on the "
                              f"CPU only: providers=[{CPU_PROVIDER!r}] (or leave it out)")


def _check_threads(threads, max_threads: int) -> int:
    if threads is None:
        return max_threads
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise EngineError(f"threads={threads!r}: must be an integer between 1 and {max_threads}")
    if not 1 <= threads <= max_threads:
        why = (f"must be between 1 and {max_threads} (the CPUs Numba may use; "
               f"NUMBA_NUM_THREADS sets it)")
        raise EngineError(f"threads={threads}: {why}", cli=f"--threads {threads}: {why}")
    return int(threads)


def _arena(nbytes: int) -> np.ndarray:
    raw = np.zeros(nbytes + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


class Session:
    """Run a compiled plan.

    Parameters
    ----------
    plan : Plan or path to a ``.mplan`` file
    threads : int
        Worker threads for parallel kernels (1 = strictly single-threaded: every step binds
        its serial variant, ``kernels.config.use_parallel``, and no parallel region starts;
        default: all the CPUs Numba may use).
    providers : onnxruntime's execution providers: only ``["CPUExecutionProvider"]``
    sess_options : ``SessionOptions`` (or onnxruntime's): ``intra_op_num_threads`` sets
        ``threads``; may also be the second positional argument, as in onnxruntime
    """

    def __init__(self, plan, threads: int | None = None, *, providers=None,
                 sess_options=None) -> None:
        if threads is not None and hasattr(threads, "intra_op_num_threads"):
            threads, sess_options = None, threads      # Session(path, options), as onnxruntime
        _check_providers(providers)
        option_threads = getattr(sess_options, "intra_op_num_threads", 0) or None
        if option_threads is not None and threads is not None and option_threads != threads:
            raise EngineError(f"threads={threads} and sess_options.intra_op_num_threads="
                              f"{option_threads} disagree: give one")
        self._closed = False
        self.plan: Plan = as_plan(plan)
        self.threads = _check_threads(threads if threads is not None else option_threads,
                                      numba.config.NUMBA_NUM_THREADS)
        m = self.plan.manifest
        check_arena(m["arena_bytes"], str(self.plan.path or "plan"))
        # the plan's precompiled kernels (NAME.kernels/), when they fit this machine: checked
        # before the first kernel binds, so binding loads them instead of compiling
        self.kernel_bundle: str | None = bundle.use(self.plan)
        # a plan compiled for another CPU (compile --target) runs here with the tiles refit
        self.target_note: str | None = tiles.refit_note(self.plan)
        if self.target_note:
            warnings.warn(self.target_note, PlanTargetWarning, stacklevel=2)
        self._arena = _arena(m["arena_bytes"])
        self._views = {name: self._view(t) for name, t in m["tensors"].items()}
        self._inputs = [NodeArg(i["name"], tuple(i["shape"]), i["dtype"]) for i in m["inputs"]]
        self._outputs = [NodeArg(o["name"], tuple(o["shape"]), o["dtype"]) for o in m["outputs"]]
        self._output_source = {o["name"]: (self.plan.blobs[o["blob"]] if "blob" in o
                                           else self._views[o["name"]]) for o in m["outputs"]}
        # what a frame checks and copies, prepared once: after the kernels have run, the
        # interpreter's own data is out of the caches and every Python operation costs
        # microseconds (face detection, one Zen 4 thread, after its 1.2 ms of kernels: the
        # checks and the 196 KB input copy took 67 us, 20 us this way)
        self._input_names = frozenset(a.name for a in self._inputs)
        self._feed_plan = [(a.name, a.shape, np.dtype(a.type), self._views[a.name])
                           for a in self._inputs]
        self._all_outputs = list(self._output_source.values())
        self._calls = []
        self._step_names = []
        for step in m["steps"]:
            self._calls.append(self._bind(step))
            self._step_names.append((step["name"], step["kernel"]))
        self._lock = threading.Lock()

    def _view(self, t: dict) -> np.ndarray:
        return self._arena[t["offset"]:t["offset"] + t["nbytes"]].view(t["dtype"]).reshape(t["shape"])

    def _bind(self, step: dict):
        weights = {k: self.plan.blobs[i] for k, i in step["weights"].items()}
        ins = [self._views[n] for n in step["inputs"]]
        outs = [self._views[n] for n in step["outputs"] + step.get("scratch", [])]
        binder = BINDERS.get(step["kernel"])
        if binder is None:
            raise PlanFormatError(f"{self.plan.path or 'plan'}: step {step['name']!r}: unknown "
                                  f"kernel {step['kernel']!r} (plan from a newer engine?)")
        try:
            return binder(step["params"], weights, ins, outs, self.threads)
        except EngineError:
            raise
        except (KeyError, ValueError, TypeError, IndexError, ArithmeticError, MemoryError) as exc:
            where = self.plan.path or "plan"
            raise PlanFormatError(f"{where}: step {step['name']!r} (kernel {step['kernel']!r}) "
                                  f"does not fit its kernel: {exc}") from None

    # --- onnxruntime-compatible surface --------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        """The plan's inputs: ``.name``, ``.shape`` (a tuple) and ``.type`` (onnxruntime's
        ``"tensor(float)"`` style), in the model's order."""
        return [NodeArg(a.name, a.shape, _ORT_TYPES[a.type]) for a in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        """The plan's outputs, as ``get_inputs``."""
        return [NodeArg(a.name, a.shape, _ORT_TYPES[a.type]) for a in self._outputs]

    def get_providers(self) -> list[str]:
        """``["CPUExecutionProvider"]``: mobile-engine runs on the CPU."""
        return [CPU_PROVIDER]

    def close(self) -> None:
        """Release the arena and the bound kernels; ``run`` then raises. Closing twice is fine."""
        if not self._lock.acquire(blocking=False):
            raise EngineError("Session.close called while a run is in progress")
        try:
            self._closed = True
            self._calls, self._views, self._output_source = [], {}, {}
            self._feed_plan, self._all_outputs = [], []
            self._arena = np.zeros(0, np.uint8)
        finally:
            self._lock.release()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.threads} threads"
        return f"<Session {self.plan.path or 'in-memory plan'}: {state}>"

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        """Run one inference; ``output_names`` None means all outputs, in the model's order.
        The returned arrays belong to the caller (copies out of the arena)."""
        if output_names is None:
            self._check_open()
            sources = self._all_outputs
        else:
            sources = [self._output(n) for n in output_names]
        with self._frame(feeds):
            return [src.copy() for src in sources]

    def run_into(self, feeds: dict, outputs: dict[str, np.ndarray]) -> None:
        """Run one inference writing each named output into the caller's array: nothing is
        allocated (for video loops). Arrays must have the output's shape and dtype."""
        pairs = []
        for name, out in outputs.items():
            src = self._output(name)
            if not isinstance(out, np.ndarray) or out.shape != src.shape or out.dtype != src.dtype:
                raise InputError(f"output buffer {name!r}: expected {src.dtype} {list(src.shape)}, "
                                 f"got {getattr(out, 'dtype', type(out).__name__)} "
                                 f"{list(getattr(out, 'shape', ()))}")
            pairs.append((out, src))
        with self._frame(feeds):
            for out, src in pairs:
                np.copyto(out, src)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("this Session is closed (close() or the end of its `with` block)")

    def _output(self, name: str) -> np.ndarray:
        self._check_open()
        src = self._output_source.get(name)
        if src is None:
            raise InputError(f"unknown output {name!r}; outputs: "
                             f"{', '.join(o.name for o in self._outputs)}")
        return src

    @contextmanager
    def _frame(self, feeds: dict):
        """Hold the session, copy the feeds in, call every kernel; outputs are read inside."""
        if not self._lock.acquire(blocking=False):
            raise EngineError("Session.run called from two threads at once; a Session runs one "
                              "frame at a time: create one Session per thread")
        try:
            self._check_open()
            self._feed(feeds)
            self._use_threads()
            for fn, args in self._calls:
                fn(*args)
            yield
        finally:
            self._lock.release()

    def _use_threads(self) -> None:
        """Numba's thread count for this thread's parallel kernels; with one thread every bound
        kernel is serial, so the threading layer is not even started."""
        if self.threads > 1:
            numba.set_num_threads(self.threads)

    def _feed(self, feeds: dict) -> None:
        if type(feeds) is dict and feeds.keys() == self._input_names:
            for name, shape, dtype, view in self._feed_plan:
                x = feeds[name]
                if type(x) is not np.ndarray or x.shape != shape or x.dtype != dtype:
                    break
                np.copyto(view, x)
            else:
                return
        self._feed_checked(feeds)           # a mismatch: the checks below name it

    def _feed_checked(self, feeds: dict) -> None:
        if not isinstance(feeds, dict):
            raise InputError(f"feeds must be a dict of input name -> array, got "
                             f"{type(feeds).__name__}")
        unknown = set(feeds) - {a.name for a in self._inputs}
        if unknown:
            raise InputError(f"unknown input {sorted(unknown)[0]!r}; inputs: "
                             f"{', '.join(a.name for a in self._inputs)}")
        for a in self._inputs:
            if a.name not in feeds:
                raise InputError(f"input {a.name!r} is missing: expected {a.type} {list(a.shape)}")
            x = feeds[a.name]
            if not isinstance(x, np.ndarray):
                x = np.asarray(x)
            if x.shape != a.shape:
                raise InputError(f"input {a.name!r}: expected shape {list(a.shape)}, got "
                                 f"{list(x.shape)}")
            if x.dtype.name != a.type:
                raise InputError(f"input {a.name!r}: expected dtype {a.type}, got {x.dtype.name}")
            np.copyto(self._views[a.name], x)

    def run_observed(self, feeds: dict, callback) -> None:
        """Run once, calling ``callback(step_index, step_outputs)`` after each step.

        ``step_outputs`` are the step's output arrays: views of the arena, valid only during the
        callback (later steps reuse the memory); copy what you keep. Calibration and the
        quantization report read intermediate tensors this way (names: ``plan.steps[i]``).
        """
        if not self._lock.acquire(blocking=False):
            raise EngineError("Session.run_observed called while the session is running")
        try:
            self._check_open()
            self._feed(feeds)
            self._use_threads()
            for i, ((fn, args), step) in enumerate(zip(self._calls, self.plan.steps)):
                fn(*args)
                callback(i, [self._views[n] for n in step["outputs"]])
        finally:
            self._lock.release()

    def bound_kernels(self) -> list[tuple[str, str, object]]:
        """(step name, kernel id, the function each run calls) for every step, in order."""
        return [(name, kernel, fn) for (name, kernel), (fn, _) in zip(self._step_names,
                                                                     self._calls)]

    # --- profiling -----------------------------------------------------------------------------
    def profile(self, feeds: dict, runs: int = 10) -> list[dict]:
        """Median milliseconds per step over ``runs`` runs (kernels called one by one)."""
        self.run(None, feeds)
        times = np.zeros((runs, len(self._calls)))
        with self._lock:
            self._use_threads()
            for r in range(runs):
                for i, (fn, args) in enumerate(self._calls):
                    t0 = time.perf_counter()
                    fn(*args)
                    times[r, i] = time.perf_counter() - t0
        med = np.median(times, axis=0) * 1e3
        steps = self.plan.steps
        return [{"name": name, "kernel": kernel, "ms": float(ms), "flops": steps[i]["flops"]}
                for i, ((name, kernel), ms) in enumerate(zip(self._step_names, med))]
