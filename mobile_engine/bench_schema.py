"""The bench JSON document: its schema (fields, versions, validation) and its terminal lines
(``mobile-engine bench`` prints them; ``bench-report`` reads the documents back)."""
from __future__ import annotations

from mobile_engine.errors import InputError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
KIND = "mobile-engine-bench"
TOP_FIELDS = ("schema_version", "kind", "created", "label", "model", "source", "precision",
              "compile_ms", "import_ms", "inputs", "feeds", "peer", "plan", "runs", "warmup",
              "machine", "results")
# Fields version 1 documents lack; readers fill them with these values.
V1_DEFAULTS = {"precision": None, "compile_ms": None, "import_ms": None, "feeds": None,
               "peer": None}
RESULT_FIELDS = ("threads", "load_ms", "bind_ms", "jit", "init_ms", "first_run_ms", "latency_ms",
                 "throughput_fps", "peak_rss_mb", "arena_bytes", "weight_bytes", "profile_runs",
                 "ops", "ops_total_ms", "threading_layer", "compare", "warnings")
LATENCY_FIELDS = ("min", "mean", "p50", "p90", "p99", "max")


def format_result(r: dict, runs: int, profile: bool = False,
                  import_ms: float | None = None) -> list[str]:
    """The terminal lines of one thread block (``import_ms``: the first block's, to show the
    start of a fresh process)."""
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
    if import_ms is not None:
        lines.insert(2, f"  start of a fresh process: import {import_ms:.1f} + init "
                        f"{r['init_ms']:.1f} + first run {r['first_run_ms']:.1f} = "
                        f"{import_ms + r['init_ms'] + r['first_run_ms']:.1f} ms")
    for name, c in r["compare"].items():
        speed = "faster" if c["ratio"] < 1 else "slower"
        diff = "n/a" if c["max_abs_diff"] is None else f"{c['max_abs_diff']:.2g}"
        if c["max_abs_diff"] is not None and "psnr_db" in c:         # not in version 1
            psnr = c["psnr_db"]
            diff += ", identical" if psnr is None else f", PSNR {psnr:.1f} dB"
        lines.append(f"  {name:<13}  p50 {c['p50']:.3f} ms  p90 {c['p90']:.3f}  p99 "
                     f"{c['p99']:.3f}  min {c['min']:.3f}  (v{c['version']}, init "
                     f"{c['init_ms']:.1f} ms, first run {c['first_run_ms']:.2f} ms)")
        lines.append(f"  ratio mobile-engine/{name} {c['ratio']:.3f} (mobile-engine is "
                     f"{speed}), outputs max |diff| {diff}")
    # NOTE: MiB as everywhere else (peak_rss_mb is KiB / 1024 already)
    lines.append(f"  memory: peak RSS {r['peak_rss_mb']:.1f} MiB, arena "
                 f"{r['arena_bytes'] / 2**20:.2f} MiB, weights "
                 f"{r['weight_bytes'] / 2**20:.2f} MiB; "
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


def validate_report(data, where: str = "bench JSON") -> dict:
    """Check a loaded bench JSON document against this schema; InputError names the field."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise InputError(f"{where}: not a mobile-engine bench result (no kind={KIND!r}); write "
                         f"one with `mobile-engine bench MODEL --json FILE`")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise InputError(f"{where}: schema_version {version!r}; this mobile-engine reads "
                         f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    if version == 1:                       # fields version 2 added: unknown in older files
        for key, value in V1_DEFAULTS.items():
            data.setdefault(key, value)
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
