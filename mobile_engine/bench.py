"""`mobile-engine bench`: latency of a plan, measured alternately with a peer in one process.

For every thread count the model is loaded again (an ``.mplan`` is read; an ``.onnx`` is compiled;
an ``.onnx`` with ``compile_options`` for int8 is calibrated and compiled once, saved to a temporary
``.mplan`` and read from there), bound, run once (Numba compiles the kernels or loads them from its
on-disk cache), warmed up, then timed ``runs`` times. With ``compare="onnxruntime"`` the peer runs
an ONNX model (``peer_model``, else the model itself or the plan's source) on the same feeds with
the same thread count; with ``compare="litert"`` LiteRT's Interpreter runs a ``.tflite`` model
likewise (``bench_litert.py``). The two engines take turns run by run, so machine noise falls on
both; the ratio is ours / theirs (below 1: mobile-engine is faster). A per-step profile (steps called one
by one, medians) follows the timed runs.

Feeds: float inputs uniform in [0, 1) (seed 0), int inputs zero, except those given (e.g. a photo
preprocessed like ``run --input``); int8 agreement on random noise says little.

Agreement with the peer, over every output: the largest |ours - theirs| and the PSNR in dB,
``10 log10(peak^2 / mean((ours - theirs)^2))`` with ``peak`` the range (max - min) of the peer's
output (its largest |value| if constant, 1 if all zero); with several outputs the lowest PSNR.
When both engines compute in fp32 the outputs must agree to ``DIFF_WARN`` of the peer's largest
|output|; when either side is int8 they cannot, and the criterion is a PSNR of ``PSNR_WARN`` dB.

JSON schema (``schema_version`` 2; times in milliseconds, sizes in bytes unless the name says MB;
readers also take version 1 files, which lack precision, compile_ms, feeds, peer and psnr_db)::

    schema_version   int     2; readers refuse versions other than 1 and 2
    kind             str     "mobile-engine-bench"
    created          str     ISO 8601 time of the run (UTC)
    label            str|null  --label, e.g. "pi4"; bench-report shows it as the machine
    model            str     the path given to bench (.onnx or .mplan)
    source           str|null  the ONNX model the plan came from
    precision        str     "fp32", or "int8" when the plan has int8 kernels (compiled with
                             --int8, or an imported QDQ model)
    compile_ms       float|null  the in-process int8 calibration + compile (once, before the
                             thread blocks); null otherwise
    import_ms        float   importing the engine (Numba, the kernel modules, the binders) in
                             this process before anything else does (0 when already imported,
                             e.g. by an earlier bench in the same process): a fresh process's
                             time to its first output is import_ms + the first block's init_ms +
                             first_run_ms
    inputs           [{name, shape, dtype}]   the shapes benchmarked (after --shape)
    feeds            {name: str}   how each input was filled ("uniform random [0, 1), seed 0",
                             "image PATH ...", "--set NAME=VALUES", ...)
    peer             null or {engine: "onnxruntime" | "litert", model: path, sha256,
                             precision}: the file the peer ran; precision "int8" when it holds
                             QuantizeLinear / DequantizeLinear / QLinear* / *Integer nodes (ONNX)
                             or computes on 8-bit tensors (TFLite)
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
      compare        {} or {PEER: {version, init_ms, first_run_ms, min, mean, p50, p90,
                             p99, max, ratio, max_abs_diff, psnr_db, spinning}}, PEER
                             "onnxruntime" or "litert";
                             ratio = latency_ms.p50 / the peer's p50; max_abs_diff and psnr_db
                             (see Agreement above) over all outputs, null if the outputs' shapes
                             differ; psnr_db also null when the outputs are identical; spinning:
                             whether the peer's pool threads spin between runs (off by default)
      warnings       [str]   why this block's numbers may not be trusted (p50 far above the
                             minimum; outputs that disagree with the peer's)
    ]
"""
from __future__ import annotations

import datetime
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mobile_engine.bench_peer import (Peer, _check_peer_io, _ort_session,  # noqa: F401
                                      _peer_source, import_onnxruntime, plan_precision)
from mobile_engine.bench_schema import (KIND, SCHEMA_VERSION, by_kernel, format_ops,  # noqa: F401
                                        format_result, validate_report)
from mobile_engine.errors import InputError
from mobile_engine.progress import Progress

# Kernels whose flops are worth a GFLOP/s figure (the rest are memory-bound).
FLOP_KERNELS = ("conv", "gemm", "matmul")
# NOTE: on a quiet machine p50 stays within ~10-20% of the minimum; beyond this the runs were
# disturbed (other processes, frequency changes, thermal throttling).
SPREAD_WARN = 1.5
# Outputs further apart than this (relative to the peer's largest |output|, at least 1) mean the
# two engines do not compute the same thing, so the ratio means nothing.
DIFF_WARN = 1e-2
# NOTE: int8 against fp32 is judged by PSNR: a faithful int8 multistyle26 gives 31-46 dB on photos
# (DESIGN.md); below 30 dB the picture visibly changes, so the two engines do not compute the same
# thing. Random noise as input gives lower figures than photos: bench int8 on a photo (--input).
PSNR_WARN = 30.0
PEERS = (None, "onnxruntime", "litert")
# NOTE: a short sleep before each timed run lets the other engine's pool threads go idle first.
PAUSE_S = 0.002



def make_feeds(inputs: list[dict], seed: int = 0,
               given: dict[str, tuple[np.ndarray, str]] | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(feeds, how each was made): the ``given`` {name: (array, description)} as they are (checked
    against the input's shape and dtype), other floats uniform in [0, 1), other ints zero."""
    given = dict(given or {})
    unknown = set(given) - {i["name"] for i in inputs}
    if unknown:
        raise InputError(f"feed {sorted(unknown)[0]!r}: the plan has no such input; inputs: "
                         f"{', '.join(i['name'] for i in inputs)}")
    rng = np.random.default_rng(seed)
    feeds, described = {}, {}
    for i in inputs:
        name = i["name"]
        if name in given:
            a, described[name] = given[name]
            if list(np.shape(a)) != list(i["shape"]) or np.asarray(a).dtype != np.dtype(i["dtype"]):
                raise InputError(f"feed {name!r}: {np.asarray(a).dtype} {list(np.shape(a))}, the "
                                 f"plan expects {i['dtype']} {list(i['shape'])}")
            feeds[name] = np.ascontiguousarray(a)
        elif i["dtype"] == "float32":
            feeds[name] = rng.random(i["shape"], dtype=np.float32)
            described[name] = f"uniform random [0, 1), seed {seed}"
        else:
            feeds[name] = np.zeros(i["shape"], i["dtype"])
            described[name] = "zeros"
    return feeds, described


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


# --- our engine ----------------------------------------------------------------------------------
def import_engine() -> float:
    """Import what loading and running a plan needs (Numba, every kernel module, the binders);
    the milliseconds it took (about 0 once imported). Done first, and timed, because the machine
    facts import the engine too, which would otherwise hide this part of a process's start."""
    import importlib
    t0 = time.perf_counter()
    for module in ("mobile_engine.planning.families", "mobile_engine.runtime.session"):
        importlib.import_module(module)          # Numba, the kernels, the binders, Session
    return (time.perf_counter() - t0) * 1e3


def _load_plan(model: Path, shapes: dict):
    import mobile_engine as me
    from mobile_engine.plan import Plan
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


def agreement(ours: list, names: list[str], theirs: list, their_names: list[str]) -> dict | None:
    """How close our outputs are to the peer's (the reference), over all outputs.

    Returns ``{"max_abs_diff": largest |ours - theirs|, "max_abs_ref": largest |theirs|,
    "psnr_db": the lowest per-output PSNR}`` (the module docstring defines it; None when the
    outputs are identical), or None when an output is missing on the peer's side or the shapes
    differ.
    """
    by_name = dict(zip(their_names, theirs))
    diffs, scales, psnrs = [0.0], [0.0], []
    for name, a in zip(names, ours):
        b = by_name.get(name)
        if b is None or np.shape(a) != np.shape(b):
            return None
        if not np.size(a):
            continue
        ref = np.asarray(b, np.float64)
        d = np.asarray(a, np.float64) - ref
        diffs.append(float(np.max(np.abs(d))))
        hi, lo = float(ref.max()), float(ref.min())
        scales.append(max(abs(hi), abs(lo)))
        peak = (hi - lo) or max(abs(hi), abs(lo)) or 1.0        # constant, or all-zero output
        mse = float(np.mean(d * d))
        if mse != 0:                                             # NaN stays NaN
            psnrs.append(10 * math.log10(peak * peak / mse) if mse > 0 else math.nan)
    # np.max, unlike max(), propagates a NaN
    return {"max_abs_diff": float(np.max(diffs)), "max_abs_ref": float(np.max(scales)),
            "psnr_db": float(np.min(psnrs)) if psnrs else None}


def disagreement(agree: dict | None, precision: str, peer_precision: str,
                 peer: str = "onnxruntime") -> str | None:
    """The warning when our outputs are not the peer's computation (None when they are): fp32
    against fp32 by max |diff| (DIFF_WARN of the largest |output|, at least 1), anything with int8
    by PSNR (below PSNR_WARN dB)."""
    if agree is None:
        return (f"outputs cannot be compared with {peer}'s (shapes differ): the ratio may "
                "compare different work")
    diff, scale, psnr = agree["max_abs_diff"], agree["max_abs_ref"], agree["psnr_db"]
    if math.isnan(diff) or (psnr is not None and math.isnan(psnr)):
        return f"outputs differ from {peer}: NaN in the outputs, so the ratio means nothing"
    if "int8" in (precision, peer_precision):
        if psnr is not None and psnr < PSNR_WARN:
            return (f"outputs differ from {peer}: PSNR {psnr:.1f} dB (max |diff| "
                    f"{diff:.3g}) is below {PSNR_WARN:g} dB for an {precision} plan against an "
                    f"{peer_precision} model: the two engines do not compute the same picture, "
                    f"so the ratio means nothing (on random feeds int8 PSNR is low anyway: "
                    f"bench on a photo with --input)")
        return None
    if diff > DIFF_WARN * max(1.0, scale):
        return (f"outputs differ from {peer} by up to {diff:.3g} (largest |output| "
                f"{scale:.3g}): the two engines do not compute the same thing, so the ratio "
                f"means nothing")
    return None


def bench_threads(model: Path, shapes: dict, threads: int, runs: int, warmup: int = 2,
                  profile_runs: int = 10, peer: Peer | None = None, progress: bool | None = None,
                  given=None):
    """One result block (see the module docstring) for one thread count: (block, plan, how each
    feed was made).

    ``given`` fills some inputs: None, {name: (array, description)}, or a callable taking the
    plan and returning that (e.g. a photo resized to the plan's image input); the rest are random.
    """
    import mobile_engine as me
    t0 = time.perf_counter()
    plan = _load_plan(model, shapes)
    load_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    sess = me.Session(plan, threads=threads)
    bind_ms = (time.perf_counter() - t0) * 1e3
    feeds, described = make_feeds(plan.inputs, given=given(plan) if callable(given) else given)
    first_ms, jit = _first_run(sess, feeds)
    rss = peak_rss_mb()
    precision = plan_precision(plan)

    compare = {}
    peer_sess = None
    if peer is not None:
        t0 = time.perf_counter()
        peer_sess = peer.session(threads)
        peer_init = (time.perf_counter() - t0) * 1e3
        _check_peer_io(plan, peer_sess, peer.model)
        t0 = time.perf_counter()
        theirs_out = peer_sess.run(None, feeds)
        peer_first = (time.perf_counter() - t0) * 1e3
        agree = agreement(sess.run(None, feeds), [o["name"] for o in plan.outputs], theirs_out,
                          [o.name for o in peer_sess.get_outputs()])
    for _ in range(warmup):
        sess.run(None, feeds)
        if peer_sess is not None:
            peer_sess.run(None, feeds)

    ours, theirs = [], []
    bar = Progress(runs, f"bench {model.name} threads={threads}", progress)
    for r in range(runs):
        time.sleep(PAUSE_S)
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ours.append((time.perf_counter() - t0) * 1e3)
        if peer_sess is not None:
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            peer_sess.run(None, feeds)
            theirs.append((time.perf_counter() - t0) * 1e3)
        bar.update(r + 1)
    bar.close()
    lat = percentiles(ours)
    warnings = []
    if peer_sess is not None:
        p = percentiles(theirs)
        compare[peer.engine] = {
            "version": peer.version, "init_ms": peer_init, "first_run_ms": peer_first,
            **p, "ratio": lat["p50"] / p["p50"],
            "max_abs_diff": None if agree is None else agree["max_abs_diff"],
            "psnr_db": None if agree is None else agree["psnr_db"], "spinning": peer.spinning}
    ops, ops_total = _ops(sess.profile(feeds, runs=profile_runs))
    from mobile_engine.machine import threading_layer
    if lat["p50"] > SPREAD_WARN * lat["min"]:
        warnings.append(f"unsteady timings: p50 {lat['p50']:.3f} ms is "
                        f"{lat['p50'] / lat['min']:.1f}x the minimum {lat['min']:.3f} ms; the "
                        f"machine was disturbed (busy, clock changes, heat): rerun when quiet")
    if peer_sess is not None:
        w = disagreement(agree, precision, peer.precision, peer.engine)
        warnings += [w] if w else []
    block = {"threads": threads, "load_ms": load_ms, "bind_ms": bind_ms, "jit": jit,
             "init_ms": load_ms + bind_ms + jit["ms"], "first_run_ms": first_ms,
             "latency_ms": lat, "throughput_fps": 1e3 / lat["mean"], "peak_rss_mb": rss,
             "arena_bytes": plan.arena_bytes, "weight_bytes": plan.weight_bytes,
             "profile_runs": profile_runs, "ops": ops, "ops_total_ms": ops_total,
             "threading_layer": threading_layer(), "compare": compare, "warnings": warnings}
    return block, plan, described


def compile_once(model: Path, shapes: dict, options, folder: Path) -> tuple[Path, float]:
    """Compile ``model`` with ``options`` (``me.compile`` keywords, or a callable returning them,
    e.g. the CLI's calibration for --int8) and save the plan in ``folder``: (its path, the
    milliseconds options + compile took)."""
    import mobile_engine as me
    t0 = time.perf_counter()
    kw = dict(options() if callable(options) else options)
    plan = me.compile(str(model), input_shapes=shapes or None, **kw)
    ms = (time.perf_counter() - t0) * 1e3
    precision = kw.get("quantize") or "fp32"
    return Path(plan.save(folder / f"{model.stem}.{precision}.mplan")), ms


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
    precision: str | None = None
    compile_ms: float | None = None
    feeds: dict | None = None
    peer: dict | None = None
    import_ms: float | None = None

    def as_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": KIND, "created": self.created,
                "label": self.label, "model": self.model, "source": self.source,
                "precision": self.precision, "compile_ms": self.compile_ms,
                "import_ms": self.import_ms, "inputs": self.inputs, "feeds": self.feeds, "peer": self.peer, "plan": self.plan,
                "runs": self.runs, "warmup": self.warmup, "machine": self.machine,
                "results": self.results}

    @classmethod
    def from_dict(cls, data: dict, where: str = "bench JSON") -> "BenchReport":
        validate_report(data, where)
        return cls(data["model"], data["source"], data["inputs"], data["plan"], data["runs"],
                   data["warmup"], data["machine"], data["results"], data["label"],
                   data["created"], data["precision"], data["compile_ms"], data["feeds"],
                   data["peer"], data["import_ms"])

    def text(self, profile: bool = False) -> str:
        from mobile_engine.machine import describe
        ins = ", ".join(f"{i['name']} {i['dtype']}[{'x'.join(map(str, i['shape']))}]"
                        for i in self.inputs)
        p = self.plan
        compiled = ("" if self.compile_ms is None
                    else f", compiled in-process in {self.compile_ms / 1e3:.1f} s")
        lines = [describe(self.machine),
                 f"model {self.model}: {ins}",
                 f"  plan: {self.precision or 'n/a'}, {p['steps']} steps, {p['gflop']:.3f} GFLOP, "
                 f"arena {p['arena_bytes'] / 2**20:.2f} MiB, weights "
                 f"{p['weight_bytes'] / 2**20:.2f} MiB"
                 f"{compiled}"]
        if self.feeds:
            lines.append("  feeds: " + "; ".join(f"{k}: {v}" for k, v in self.feeds.items()))
        if self.peer:
            lines.append(f"  peer: {self.peer['engine']} on {self.peer['model']} "
                         f"({self.peer['precision']}, sha256 {self.peer['sha256'][:12]})")
        for k, r in enumerate(self.results):
            lines += [""] + format_result(r, self.runs, profile,
                                          self.import_ms if k == 0 else None)
        return "\n".join(lines)


def run_bench(model: str | Path, shapes: dict | None = None, threads: int | Sequence[int] = 1,
              runs: int = 20, compare: str | None = None, warmup: int = 2,
              profile_runs: int | None = None, label: str | None = None,
              progress: bool | None = None, peer_spinning: bool = False,
              log: Callable[[str], None] | None = None, peer_model: str | Path | None = None,
              feeds=None, compile_options=None) -> BenchReport:
    """Benchmark a model or plan for one or several thread counts.

    Parameters
    ----------
    model : an ``.onnx`` model (compiled for every thread block, or once with
        ``compile_options``) or a ``.mplan`` plan
    shapes : {input name: shape} for the model's symbolic dimensions (must match a plan's shapes)
    threads : one thread count or several; one result block each, in the order given
    runs : timed runs per engine and block
    compare : None, "onnxruntime" (an ONNX model) or "litert" (a .tflite model): the peer runs
        alternately with us, same feeds and threads
    warmup : untimed runs after the first run
    profile_runs : runs of the per-step profile (default min(runs, 10))
    progress : progress bar on stderr: None = only on a terminal for long runs
    peer_spinning : let onnxruntime's pool threads spin between runs (its default; off here so
        they do not eat into our turn)
    log : called with a line after each block (e.g. ``print``); None for silence
    peer_model : the file the peer runs (default: ``model`` itself, or the plan's source),
        e.g. the fp32 model an int8 plan was compiled from; it must take the plan's inputs
    feeds : some inputs' values: {name: (array, description)} or a callable taking the plan and
        returning that; the other inputs are random (``make_feeds``)
    compile_options : ``me.compile`` keywords (or a callable returning them, e.g. one that
        calibrates) for an ``.onnx`` model, e.g. ``{"quantize": "int8", "calibration": feeds}``:
        the model is compiled once (``compile_ms``) and every block loads that plan
    """
    model = Path(model)
    thread_list = [threads] if isinstance(threads, int) else list(threads)
    if not thread_list:
        raise InputError("--threads: give at least one thread count")
    if runs < 1:
        raise InputError(f"--runs {runs}: must be at least 1")
    if compare not in PEERS:
        raise InputError(f"--compare {compare!r}: the peers are 'onnxruntime' and 'litert'")
    if peer_model is not None and compare is None:
        raise InputError("--peer-model needs --compare onnxruntime or --compare litert")
    if compile_options is not None and model.suffix == ".mplan":
        raise InputError(f"--int8: {model} is a plan, compiled already; give the .onnx model, or "
                         f"bench the plan with --compare onnxruntime --peer-model MODEL.onnx")
    if not model.is_file():
        raise InputError(f"{model}: no such file (give an .onnx model or a .mplan plan)")
    if compare == "litert":
        from mobile_engine.bench_litert import import_litert
        module = import_litert()
    else:
        module = import_onnxruntime() if compare == "onnxruntime" else None
    import_ms = import_engine()           # before numba and machine_facts import any of it
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    bad = [t for t in thread_list if t < 1]
    if bad:
        raise InputError(f"--threads {bad[0]}: must be at least 1")
    # NOTE: the README's board command asks for 1 2 4 everywhere: run what this machine can
    skipped = [t for t in thread_list if t > top]
    thread_list = [t for t in thread_list if t <= top]
    if not thread_list:
        raise InputError(f"--threads {' '.join(map(str, skipped))}: this machine lets Numba use "
                         f"at most {top} threads (its CPUs; NUMBA_NUM_THREADS sets it)")
    peer = None
    if module is not None:
        from mobile_engine.plan import Plan
        source = peer_model or _peer_source(Plan.load(model) if model.suffix == ".mplan"
                                            else None, model)
        if compare == "litert":
            from mobile_engine.bench_litert import LitertPeer
            peer = LitertPeer.open(module, str(source))
        else:
            peer = Peer.open(module, peer_spinning, str(source))

    from mobile_engine.machine import machine_facts
    facts = machine_facts(thread_list)        # before our own load lands in the load average
    if skipped:
        facts["warnings"].append(
            f"--threads {', '.join(map(str, skipped))} skipped: Numba may use at most {top} "
            f"threads here (the CPUs; NUMBA_NUM_THREADS sets it)")
        if log is not None:
            log(f"note: {facts['warnings'][-1]}")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    results = []
    shapes = dict(shapes or {})
    with tempfile.TemporaryDirectory(prefix="mobile-engine-bench-") as tmp:
        bench_model, compile_ms = model, None
        if compile_options is not None:
            bench_model, compile_ms = compile_once(model, shapes, compile_options, Path(tmp))
        for t in thread_list:
            block, plan, described = bench_threads(bench_model, shapes, t, runs, warmup,
                                                   profile_runs or min(runs, 10), peer, progress,
                                                   feeds)
            results.append(block)
            if log is not None:
                log(f"threads {t}: p50 {results[-1]['latency_ms']['p50']:.3f} ms")
    facts["threading_layer"] = next((r["threading_layer"] for r in reversed(results)
                                     if r["threading_layer"]), None)
    source = str(model) if model.suffix != ".mplan" else plan.manifest["provenance"].get("source")
    info = {"steps": len(plan.steps), "gflop": sum(s["flops"] for s in plan.steps) / 1e9,
            "arena_bytes": plan.arena_bytes, "weight_bytes": plan.weight_bytes}
    return BenchReport(str(model), source, [dict(i) for i in plan.inputs], info, runs, warmup,
                       facts, results, label, created, plan_precision(plan), compile_ms,
                       described, None if peer is None else peer.describe(), import_ms)
