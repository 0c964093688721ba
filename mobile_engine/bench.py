"""`mobile-engine bench`: latency of a plan, measured alternately with a peer in one process.

For every thread count the model is loaded again (an ``.mplan`` is read; an ``.onnx`` is compiled),
bound, run once (Numba compiles the kernels or loads them from its on-disk cache), warmed up, then
timed ``runs`` times. With ``compare="onnxruntime"`` the peer gets the same model, the same input
and the same thread count, and the two engines take turns run by run, so machine noise falls on
both; the ratio is ours / theirs (below 1: mobile-engine is faster). A per-step profile (steps
called one by one, medians) follows the timed runs.

JSON schema (``schema_version`` 1; times in milliseconds, sizes in bytes unless the name says MB)::

    schema_version   int     1; readers refuse other versions
    kind             str     "mobile-engine-bench"
    created          str     ISO 8601 time of the run (UTC)
    label            str|null  --label, e.g. "pi4"; bench-report shows it as the machine
    model            str     the path given to bench (.onnx or .mplan)
    source           str|null  the ONNX model the plan came from (the peer runs this file)
    inputs           [{name, shape, dtype}]   the shapes benchmarked (after --shape)
    plan             {steps, gflop, arena_bytes, weight_bytes}
    runs             int     timed runs per engine and thread count
    warmup           int     untimed runs after the first run
    machine          {...}   mobile_engine.machine: cpu, board, arch, isa[], cores, threads[],
                             governor, freq_mhz, temp_c, loadavg, versions, threading_layer,
                             warnings[]
    results          [ one block per thread count:
      threads        int
      load_ms        float   read the .mplan (or compile the .onnx into a plan)
      bind_ms        float   Session(): arena, views, binding every step to its kernel
      jit            {ms, cache, hits, misses, kernels, cache_enabled}
                             ms: time under Numba's compiler lock during the first run (compiling,
                             or loading machine code from the cache); cache: "cold" (compiled),
                             "warm" (all loaded from the cache), "mixed", or "in-process" (already
                             compiled earlier in this process, e.g. by a previous thread block);
                             hits/misses: deltas of dispatcher.stats over the plan's kernels
      init_ms        float   load_ms + bind_ms + jit.ms: everything before the first frame
      first_run_ms   float   the first run minus the JIT time (cold caches, first touch of the
                             arena); init_ms + first_run_ms is the time to the first output
      latency_ms     {min, mean, p50, p90, p99, max}   over the timed runs
      throughput_fps float   1000 / latency_ms.mean (one stream, frames one after another)
      peak_rss_mb    float   peak resident memory of the process so far, taken before the peer is
                             created (includes the compiler when MODEL is .onnx, and earlier blocks)
      arena_bytes    int     activation arena of one Session
      weight_bytes   int     packed weights (mapped from the plan file)
      profile_runs   int
      ops            [{name, kernel, ms, percent, flops, gflops}]  per step, in run order; ms is
                             the median of profile_runs; gflops only for conv and GEMM kernels
                             (else null)
      ops_total_ms   float   sum of ops[].ms (compare with latency_ms.p50: the rest is overhead)
      threading_layer str|null  numba.threading_layer() after this block (null: no parallel
                             kernel ran in this process)
      compare        {} or {"onnxruntime": {version, init_ms, first_run_ms, min, mean, p50, p90,
                             p99, max, ratio, max_abs_diff, spinning}}
                             ratio = latency_ms.p50 / onnxruntime p50; max_abs_diff over all outputs
                             (null if the outputs' names or shapes differ); spinning: whether the
                             peer's pool threads spin between runs (off by default)
      warnings       [str]   why this block's numbers may not be trusted (p50 far above the
                             minimum; outputs that differ from the peer's)
    ]
"""
from __future__ import annotations

import datetime
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mobile_engine.errors import EngineError, InputError

SCHEMA_VERSION = 1
KIND = "mobile-engine-bench"
# Kernels whose flops are worth a GFLOP/s figure (the rest are memory-bound).
FLOP_KERNELS = ("conv", "gemm", "matmul")
# NOTE: on a quiet machine p50 stays within ~10-20% of the minimum; beyond this the runs were
# disturbed (other processes, frequency changes, thermal throttling).
SPREAD_WARN = 1.5
# Outputs further apart than this (relative to the peer's largest |output|, at least 1) mean the
# two engines do not compute the same thing, so the ratio means nothing.
DIFF_WARN = 1e-2

TOP_FIELDS = ("schema_version", "kind", "created", "label", "model", "source", "inputs", "plan",
              "runs", "warmup", "machine", "results")
RESULT_FIELDS = ("threads", "load_ms", "bind_ms", "jit", "init_ms", "first_run_ms", "latency_ms",
                 "throughput_fps", "peak_rss_mb", "arena_bytes", "weight_bytes", "profile_runs",
                 "ops", "ops_total_ms", "threading_layer", "compare", "warnings")
LATENCY_FIELDS = ("min", "mean", "p50", "p90", "p99", "max")


def make_feeds(inputs: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic feeds: floats uniform in [0, 1) (images, style weights), ints zero."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in inputs:
        if i["dtype"] == "float32":
            feeds[i["name"]] = rng.random(i["shape"], dtype=np.float32)
        else:
            feeds[i["name"]] = np.zeros(i["shape"], i["dtype"])
    return feeds


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """min, mean, p50, p90, p99, max of a list of times."""
    if len(ms) == 0:
        raise InputError("no timed runs: --runs must be at least 1")
    a = np.asarray(ms, np.float64)
    return {"min": float(a.min()), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class Progress:
    """A plain-text progress bar on stderr, redrawn in place (no tqdm).

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


# --- the peer ------------------------------------------------------------------------------------
def import_onnxruntime():
    """onnxruntime, or an EngineError that says how to get it."""
    try:
        import onnxruntime
    except ImportError:
        raise EngineError("--compare onnxruntime: onnxruntime is not installed in this Python "
                          f"({sys.executable}); install it with `pip install onnxruntime`, or "
                          "run without --compare to measure mobile-engine alone") from None
    return onnxruntime


def _ort_session(ort, model_path: str, threads: int, spinning: bool):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # NOTE: spinning pool threads would keep cores busy into our turn of the alternation.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def _peer_source(plan, model: Path) -> str:
    """The ONNX file the peer runs: the model itself, or the plan's source if it is unchanged."""
    if model.suffix != ".mplan":
        return str(model)
    prov = plan.manifest.get("provenance", {})
    source = prov.get("source")
    if not source or not Path(source).is_file():
        raise EngineError(f"--compare onnxruntime: {model} was compiled from {source!r}, which is "
                          f"not on disk here; bench the .onnx model instead")
    want = prov.get("source_sha256")
    if want:
        from mobile_engine.zoo import sha256
        if sha256(Path(source)) != want:
            raise EngineError(f"--compare onnxruntime: {source} changed since {model} was "
                              f"compiled (sha256 differs); recompile the plan")
    return source


# --- our engine ----------------------------------------------------------------------------------
def _load_plan(model: Path, shapes: dict):
    import mobile_engine as me
    from mobile_engine.plan import Plan
    if not model.is_file():
        raise InputError(f"{model}: no such file (give an .onnx model or a .mplan plan)")
    if model.suffix != ".mplan":
        return me.compile(str(model), input_shapes=shapes or None)
    plan = Plan.load(model)
    for i in plan.inputs:
        if i["name"] in shapes and tuple(shapes[i["name"]]) != tuple(i["shape"]):
            raise InputError(f"--shape {i['name']}={'x'.join(map(str, shapes[i['name']]))}: "
                             f"{model} was compiled for {i['name']} {i['shape']}; recompile it "
                             f"with that --shape or bench the .onnx model")
    unknown = set(shapes) - {i["name"] for i in plan.inputs}
    if unknown:
        raise InputError(f"--shape {sorted(unknown)[0]}: {model} has no such input; inputs: "
                         f"{', '.join(i['name'] for i in plan.inputs)}")
    return plan


def _dispatchers(sess) -> list:
    """The distinct Numba dispatchers the session's steps call."""
    seen = {}
    for _, _, fn in sess.bound_kernels():
        if hasattr(fn, "stats"):
            seen.setdefault(id(fn), fn)
    return list(seen.values())


def _cache_counts(dispatchers) -> tuple[int, int]:
    hits = sum(sum(d.stats.cache_hits.values()) for d in dispatchers)
    misses = sum(sum(d.stats.cache_misses.values()) for d in dispatchers)
    return hits, misses


def _first_run(sess, feeds) -> tuple[float, dict]:
    """Run once; split the wall time into JIT (under Numba's compiler lock) and the rest."""
    import numba.core.event as ev

    from kernels.config import CACHE
    disp = _dispatchers(sess)
    h0, m0 = _cache_counts(disp)
    jit_s = []
    with ev.install_timer("numba:compiler_lock", jit_s.append):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        wall_ms = (time.perf_counter() - t0) * 1e3
    h1, m1 = _cache_counts(disp)
    hits, misses = h1 - h0, m1 - m0
    jit_ms = min(sum(jit_s) * 1e3, wall_ms)
    cache = ("mixed" if hits and misses else "cold" if misses else "warm" if hits
             else "in-process")
    return wall_ms - jit_ms, {"ms": jit_ms, "cache": cache, "hits": hits, "misses": misses,
                              "kernels": len(disp), "cache_enabled": bool(CACHE)}


def _ops(profile: list[dict]) -> tuple[list[dict], float]:
    total = sum(p["ms"] for p in profile)
    ops = []
    for p in profile:
        flop_kernel = any(k in p["kernel"] for k in FLOP_KERNELS)
        gflops = p["flops"] / p["ms"] / 1e6 if flop_kernel and p["flops"] and p["ms"] > 0 else None
        ops.append({"name": p["name"], "kernel": p["kernel"], "ms": p["ms"],
                    "percent": 100.0 * p["ms"] / total if total > 0 else 0.0,
                    "flops": int(p["flops"]), "gflops": gflops})
    return ops, total


def _max_abs_diff(ours: list, names: list[str], theirs: list, their_names: list[str]):
    """(largest |ours - theirs| over all outputs, largest |theirs|), or (None, None) when the
    outputs' names or shapes differ."""
    by_name = dict(zip(their_names, theirs))
    worst = scale = 0.0
    for name, a in zip(names, ours):
        b = by_name.get(name)
        if b is None or np.shape(a) != np.shape(b):
            return None, None
        if a.size:
            worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))))
            scale = max(scale, float(np.max(np.abs(b))))
    return worst, scale


def bench_threads(model: Path, shapes: dict, threads: int, runs: int, warmup: int = 2,
                  profile_runs: int = 10, peer=None, progress: bool | None = None):
    """One result block (see the module docstring) for one thread count, and the plan it ran.

    ``peer`` is None or ``(onnxruntime module, spinning)``.
    """
    import mobile_engine as me
    t0 = time.perf_counter()
    plan = _load_plan(model, shapes)
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    sess = me.Session(plan, threads=threads)
    bind_ms = (time.perf_counter() - t0) * 1e3
    feeds = make_feeds(plan.inputs)
    first_ms, jit = _first_run(sess, feeds)
    rss = peak_rss_mb()

    compare = {}
    peer_sess = None
    if peer is not None:
        ort, spinning = peer
        t0 = time.perf_counter()
        peer_sess = _ort_session(ort, _peer_source(plan, model), threads, spinning)
        peer_init = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        theirs_out = peer_sess.run(None, feeds)
        peer_first = (time.perf_counter() - t0) * 1e3
        diff, scale = _max_abs_diff(sess.run(None, feeds), [o["name"] for o in plan.outputs],
                                    theirs_out, [o.name for o in peer_sess.get_outputs()])
    for _ in range(warmup):
        sess.run(None, feeds)
        if peer_sess is not None:
            peer_sess.run(None, feeds)

    ours, theirs = [], []
    bar = Progress(runs, f"bench {model.name} threads={threads}", progress)
    for r in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ours.append((time.perf_counter() - t0) * 1e3)
        if peer_sess is not None:
            t0 = time.perf_counter()
            peer_sess.run(None, feeds)
            theirs.append((time.perf_counter() - t0) * 1e3)
        bar.update(r + 1)
    bar.close()
    lat = percentiles(ours)
    if peer_sess is not None:
        p = percentiles(theirs)
        compare["onnxruntime"] = {"version": ort.__version__, "init_ms": peer_init,
                                  "first_run_ms": peer_first, **p, "ratio": lat["p50"] / p["p50"],
                                  "max_abs_diff": diff, "spinning": spinning}
    ops, ops_total = _ops(sess.profile(feeds, runs=profile_runs))
    from mobile_engine.machine import threading_layer
    warnings = []
    if lat["p50"] > SPREAD_WARN * lat["min"]:
        warnings.append(f"unsteady timings: p50 {lat['p50']:.3f} ms is "
                        f"{lat['p50'] / lat['min']:.1f}x the minimum {lat['min']:.3f} ms; the "
                        f"machine was disturbed (busy, clock changes, heat): rerun when quiet")
    if peer_sess is not None and diff is not None and diff > DIFF_WARN * max(1.0, scale):
        warnings.append(f"outputs differ from onnxruntime by up to {diff:.3g} (largest |output| "
                        f"{scale:.3g}): the two engines do not compute the same thing, so the "
                        f"ratio means nothing")
    block = {"threads": threads, "load_ms": load_ms, "bind_ms": bind_ms, "jit": jit,
             "init_ms": load_ms + bind_ms + jit["ms"], "first_run_ms": first_ms,
             "latency_ms": lat, "throughput_fps": 1e3 / lat["mean"], "peak_rss_mb": rss,
             "arena_bytes": plan.arena_bytes, "weight_bytes": plan.weight_bytes,
             "profile_runs": profile_runs, "ops": ops, "ops_total_ms": ops_total,
             "threading_layer": threading_layer(), "compare": compare, "warnings": warnings}
    return block, plan


@dataclass
class BenchReport:
    """Everything one ``bench`` run measured; ``as_dict()`` is the JSON document."""
    model: str
    source: str | None
    inputs: list[dict]
    plan: dict
    runs: int
    warmup: int
    machine: dict
    results: list[dict] = field(default_factory=list)
    label: str | None = None
    created: str = ""

    def as_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": KIND, "created": self.created,
                "label": self.label, "model": self.model, "source": self.source,
                "inputs": self.inputs, "plan": self.plan, "runs": self.runs,
                "warmup": self.warmup, "machine": self.machine, "results": self.results}

    @classmethod
    def from_dict(cls, data: dict, where: str = "bench JSON") -> "BenchReport":
        validate_report(data, where)
        return cls(data["model"], data["source"], data["inputs"], data["plan"], data["runs"],
                   data["warmup"], data["machine"], data["results"], data["label"],
                   data["created"])

    def text(self, profile: bool = False) -> str:
        from mobile_engine.machine import describe
        ins = ", ".join(f"{i['name']} {i['dtype']}[{'x'.join(map(str, i['shape']))}]"
                        for i in self.inputs)
        p = self.plan
        lines = [describe(self.machine),
                 f"model {self.model}: {ins}",
                 f"  plan: {p['steps']} steps, {p['gflop']:.3f} GFLOP, arena "
                 f"{p['arena_bytes'] / 1e6:.2f} MB, weights {p['weight_bytes'] / 1e6:.2f} MB"]
        for r in self.results:
            lines += [""] + format_result(r, self.runs, profile)
        return "\n".join(lines)


def format_result(r: dict, runs: int, profile: bool = False) -> list[str]:
    """The terminal lines of one thread block."""
    lat, jit = r["latency_ms"], r["jit"]
    lines = [
        f"threads {r['threads']}: {runs} timed runs",
        f"  init {r['init_ms']:.1f} ms (load {r['load_ms']:.1f} + bind {r['bind_ms']:.1f} + "
        f"jit {jit['ms']:.1f}; kernel cache {jit['cache']}: {jit['hits']} loaded, "
        f"{jit['misses']} compiled, {jit['kernels']} kernels), "
        f"first run {r['first_run_ms']:.2f} ms",
        f"  mobile-engine  p50 {lat['p50']:.3f} ms  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
        f"min {lat['min']:.3f}  mean {lat['mean']:.3f}  max {lat['max']:.3f}  "
        f"({r['throughput_fps']:.1f} /s)",
    ]
    for name, c in r["compare"].items():
        speed = "faster" if c["ratio"] < 1 else "slower"
        diff = "n/a" if c["max_abs_diff"] is None else f"{c['max_abs_diff']:.2g}"
        lines.append(f"  {name:<13}  p50 {c['p50']:.3f} ms  p90 {c['p90']:.3f}  p99 "
                     f"{c['p99']:.3f}  min {c['min']:.3f}  (v{c['version']}, init "
                     f"{c['init_ms']:.1f} ms, first run {c['first_run_ms']:.2f} ms)")
        lines.append(f"  ratio mobile-engine/{name} {c['ratio']:.3f} (mobile-engine is "
                     f"{speed}), outputs max |diff| {diff}")
    lines.append(f"  memory: peak RSS {r['peak_rss_mb']:.1f} MB, arena "
                 f"{r['arena_bytes'] / 1e6:.2f} MB, weights {r['weight_bytes'] / 1e6:.2f} MB; "
                 f"threading layer {r['threading_layer'] or 'not started'}")
    lines += [f"  WARNING: {w}" for w in r["warnings"]]
    if profile:
        lines += format_ops(r)
    return lines


def format_ops(r: dict) -> list[str]:
    """The per-op table of one thread block."""
    ops = r["ops"]
    w_name = min(max([len(o["name"]) for o in ops] + [2]), 40)
    w_kern = max([len(o["kernel"]) for o in ops] + [6])
    lines = [f"  per-op profile (median of {r['profile_runs']} runs, steps called one by one):",
             f"    {'op':<{w_name}}  {'kernel':<{w_kern}}  {'ms':>8}  {'%':>5}  {'GFLOP/s':>8}"]
    for o in ops:
        gf = "" if o["gflops"] is None else f"{o['gflops']:.1f}"
        lines.append(f"    {o['name'][:w_name]:<{w_name}}  {o['kernel']:<{w_kern}}  "
                     f"{o['ms']:8.3f}  {o['percent']:5.1f}  {gf:>8}")
    lines.append(f"    {'total of steps':<{w_name}}  {'':<{w_kern}}  {r['ops_total_ms']:8.3f}  "
                 f"{100.0 if ops else 0.0:5.1f}   (whole-run p50 {r['latency_ms']['p50']:.3f} ms)")
    lines.append("  by kernel:")
    for kernel, (count, ms, pct) in sorted(by_kernel(ops).items(), key=lambda kv: -kv[1][1]):
        lines.append(f"    {kernel:<{w_kern}}  {count:4d} x  {ms:8.3f} ms  {pct:5.1f}%")
    return lines


def by_kernel(ops: list[dict]) -> dict[str, tuple[int, float, float]]:
    """kernel id -> (steps, total ms, total percent)."""
    out: dict[str, tuple[int, float, float]] = {}
    for o in ops:
        n, ms, pct = out.get(o["kernel"], (0, 0.0, 0.0))
        out[o["kernel"]] = (n + 1, ms + o["ms"], pct + o["percent"])
    return out


def run_bench(model: str | Path, shapes: dict | None = None, threads: int | Sequence[int] = 1,
              runs: int = 20, compare: str | None = None, warmup: int = 2,
              profile_runs: int | None = None, label: str | None = None,
              progress: bool | None = None, peer_spinning: bool = False,
              log: Callable[[str], None] | None = None) -> BenchReport:
    """Benchmark a model or plan for one or several thread counts.

    Parameters
    ----------
    model : an ``.onnx`` model (compiled for every thread block) or a ``.mplan`` plan
    shapes : {input name: shape} for the model's symbolic dimensions (must match a plan's shapes)
    threads : one thread count or several; one result block each, in the order given
    runs : timed runs per engine and block
    compare : None or "onnxruntime" (the peer runs alternately with us, same input and threads)
    warmup : untimed runs after the first run
    profile_runs : runs of the per-step profile (default min(runs, 10))
    progress : progress bar on stderr: None = only on a terminal for long runs
    peer_spinning : let onnxruntime's pool threads spin between runs (its default; off here so
        they do not eat into our turn)
    log : called with a line after each block (e.g. ``print``); None for silence
    """
    model = Path(model)
    thread_list = [threads] if isinstance(threads, int) else list(threads)
    if not thread_list:
        raise InputError("--threads: give at least one thread count")
    if runs < 1:
        raise InputError(f"--runs {runs}: must be at least 1")
    if compare not in (None, "onnxruntime"):
        raise InputError(f"--compare {compare!r}: the only peer is 'onnxruntime'")
    peer = (import_onnxruntime(), peer_spinning) if compare == "onnxruntime" else None
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    bad = [t for t in thread_list if not 1 <= t <= top]
    if bad:
        raise InputError(f"--threads {bad[0]}: must be between 1 and {top} (NUMBA_NUM_THREADS)")

    from mobile_engine.machine import machine_facts
    facts = machine_facts(thread_list)        # before our own load lands in the load average
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = []
    for t in thread_list:
        block, plan = bench_threads(model, dict(shapes or {}), t, runs, warmup,
                                    profile_runs or min(runs, 10), peer, progress)
        results.append(block)
        if log is not None:
            log(f"threads {t}: p50 {results[-1]['latency_ms']['p50']:.3f} ms")
    facts["threading_layer"] = next((r["threading_layer"] for r in reversed(results)
                                     if r["threading_layer"]), None)
    source = str(model) if model.suffix != ".mplan" else plan.manifest["provenance"].get("source")
    info = {"steps": len(plan.steps), "gflop": sum(s["flops"] for s in plan.steps) / 1e9,
            "arena_bytes": plan.arena_bytes, "weight_bytes": plan.weight_bytes}
    return BenchReport(str(model), source, [dict(i) for i in plan.inputs], info, runs, warmup,
                       facts, results, label, created)


def validate_report(data, where: str = "bench JSON") -> dict:
    """Check a loaded bench JSON document against this schema; InputError names the field."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise InputError(f"{where}: not a mobile-engine bench result (no kind={KIND!r}); write "
                         f"one with `mobile-engine bench MODEL --json FILE`")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InputError(f"{where}: schema_version {version!r}; this mobile-engine reads "
                         f"version {SCHEMA_VERSION}")
    for key in TOP_FIELDS:
        if key not in data:
            raise InputError(f"{where}: missing field {key!r}")
    if not isinstance(data["results"], list) or not data["results"]:
        raise InputError(f"{where}: 'results' must be a non-empty list of thread blocks")
    for i, r in enumerate(data["results"]):
        for key in RESULT_FIELDS:
            if key not in r:
                raise InputError(f"{where}: results[{i}] misses field {key!r}")
        for key in LATENCY_FIELDS:
            if not isinstance(r["latency_ms"].get(key), (int, float)):
                raise InputError(f"{where}: results[{i}].latency_ms.{key} is not a number")
    return data
