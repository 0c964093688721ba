"""`mobile-engine bench-zoo`: every model of the real set (``zoo_real``) compiled at a fixed shape,
checked against onnxruntime and timed against it.

For each model: fetch it if missing (sha256-checked), compile the fp32 plan once, run it and
onnxruntime on the same photo (astronaut.png, resized and normalised as the model's users do) and
check every output: max |ours - theirs| <= ``TOLERANCE`` x (max - min) of onnxruntime's output.
Then ``bench.run_bench`` times the plan against onnxruntime on that feed, alternating run by run in
this process with the same thread count (onnxruntime's threads not spinning, a short sleep before
each run, medians of ``runs``), and reports engine / onnxruntime per model and the geometric mean
over the models that ran and matched (the OCR models read a picture of printed text instead,
``zoo_real.test_input``). ``int8=True`` also calibrates on eight other zoo photos,
compiles an int8 plan (the OCR models: four photos and four pictures of text other than the test
one) and times it the same way: its speedup over the engine's fp32 plan is the
ratio of the two p50s (each measured alternately with onnxruntime), its quality the PSNR of its
outputs against onnxruntime's.

JSON (``schema_version`` 1, times in milliseconds)::

    kind "mobile-engine-bench-zoo", schema_version, created, threads, runs, tolerance,
    machine {...} (mobile_engine.machine), load_before, load_after [1, 5, 15 min],
    models [{name, file, sha256, input, shape, status: "ok" | "mismatch" | "refused",
             error, outputs [{name, shape, max_abs_diff, range, ok}],
             fp32: bench JSON (bench.py) | null, ratio, int8: bench JSON | null,
             int8_speedup, int8_psnr_db}],
    geomean_ratio (over status "ok"), geomean_int8_speedup
"""
from __future__ import annotations

import datetime
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from mobile_engine import zoo, zoo_real
from mobile_engine.errors import EngineError, InputError

KIND = "mobile-engine-bench-zoo"
SCHEMA_VERSION = 1
# NOTE: issue 14's criterion: every output within 1e-3 of its range (onnxruntime as the oracle).
TOLERANCE = 1e-3
CALIBRATION_PHOTOS = ("rocket.jpg", "coffee.png", "chelsea.png", "camera.png", "horse.png",
                      "brick.png", "grass.png", "gravel.png")


ABS_FLOOR = 1e-6


def check_outputs(names, ours, theirs, tolerance: float = TOLERANCE) -> list[dict]:
    """Per output: max |ours - theirs|, the range of theirs and whether it is within
    ``tolerance`` of that range (a constant output: of its largest |value|), or within 1e-6
    (float32 noise on an output that is constant near zero, e.g. a saturated sigmoid)."""
    rows = []
    for name, a, b in zip(names, ours, theirs):
        b = np.asarray(b, np.float64)
        if np.shape(a) != b.shape:
            rows.append({"name": name, "shape": list(np.shape(a)), "max_abs_diff": None,
                         "range": None, "ok": False})
            continue
        span = float(b.max() - b.min()) if b.size else 0.0
        scale = span or float(np.abs(b).max(initial=0.0)) or 1e-6
        diff = float(np.abs(np.asarray(a, np.float64) - b).max(initial=0.0))
        rows.append({"name": name, "shape": list(b.shape), "max_abs_diff": diff, "range": span,
                     "ok": bool(diff <= max(tolerance * scale, ABS_FLOOR))})  # NaN: never ok
    return rows


def geomean(values) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _feed(name: str, input_name: str, photo: str) -> dict:
    return {input_name: zoo_real.photo_input(name, photo=photo)}


def _input_name(path: Path) -> str:
    import onnx
    return zoo_real.input_name(onnx.load(str(path), load_external_data=False))


def _check(plan_path: Path, model: Path, feeds: dict, threads: int) -> list[dict]:
    import mobile_engine as me
    from mobile_engine.bench import _ort_session, import_onnxruntime
    ours = me.Session(str(plan_path), threads=threads).run(None, feeds)
    peer = _ort_session(import_onnxruntime(), str(model), threads, False)
    theirs = peer.run([o.name for o in peer.get_outputs()], feeds)
    names = [o.name for o in peer.get_outputs()]
    return check_outputs(names, ours, theirs)


def bench_model(name: str, threads: int, runs: int, int8: bool = False,
                profile_runs: int | None = None, progress: bool | None = None,
                log=print) -> dict:
    """One model's row (see the module docstring); an EngineError becomes status "refused"."""
    from mobile_engine.bench import compile_once, run_bench
    spec = zoo_real.spec(name)
    row = {"name": name, "file": None, "sha256": spec.sha256, "input": None,
           "shape": list(spec.shape), "status": "refused", "error": None, "outputs": [],
           "fp32": None, "ratio": None, "int8": None, "int8_speedup": None,
           "int8_psnr_db": None}
    try:
        path = zoo_real.model_file(name)
        row["file"] = str(path)
        iname = row["input"] = _input_name(path)
        shapes = {iname: spec.shape}
        arr, what = zoo_real.test_input(name)
        x = {iname: arr}
        mean, std = spec.norm
        given = {iname: (arr, f"{what} at {spec.shape[3]}x{spec.shape[2]}, (x - {list(mean)}) "
                              f"/ {list(std)}")}
        with tempfile.TemporaryDirectory(prefix="mobile-engine-zoo-") as tmp:
            plan_path, _ = compile_once(path, shapes, {}, Path(tmp))
            row["outputs"] = _check(plan_path, path, x, threads)
            row["status"] = "ok" if all(o["ok"] for o in row["outputs"]) else "mismatch"
            report = run_bench(plan_path, threads=threads, runs=runs, compare="onnxruntime",
                               profile_runs=profile_runs, progress=progress, peer_model=path,
                               feeds=given)
        row["fp32"] = report.as_dict()
        row["ratio"] = report.results[0]["compare"]["onnxruntime"]["ratio"]
        if int8:
            def options():
                photos = CALIBRATION_PHOTOS if spec.kind != "ocr" else \
                    CALIBRATION_PHOTOS[:4] + tuple(f"{zoo_real.TEXT}:{k}" for k in range(1, 5))
                calib = [_feed(name, iname, p) for p in photos]
                return {"quantize": "int8", "calibration": calib}
            r8 = run_bench(path, shapes, threads=threads, runs=runs, compare="onnxruntime",
                           profile_runs=profile_runs, progress=progress, peer_model=path,
                           feeds=given, compile_options=options)
            row["int8"] = r8.as_dict()
            row["int8_speedup"] = (report.results[0]["latency_ms"]["p50"] /
                                   r8.results[0]["latency_ms"]["p50"])
            row["int8_psnr_db"] = r8.results[0]["compare"]["onnxruntime"]["psnr_db"]
    except EngineError as exc:
        row["error"] = " ".join(str(exc).split())
        if row["status"] != "mismatch":
            row["status"] = "refused"
    return row


def run(models=None, threads: int = 2, runs: int = 8, int8: bool = False,
        profile_runs: int | None = None, progress: bool | None = None, log=print) -> dict:
    """Benchmark ``models`` (default: the whole set); the JSON document of the module docstring.
    ``log`` gets a line per model as it finishes."""
    names = list(models or zoo_real.MODELS)
    for n in names:
        zoo_real.spec(n)                                   # unknown names fail before any work
    if runs < 8:
        raise InputError(f"--runs {runs}: medians need at least 8 runs per engine")
    if not zoo_real.ready() or not all((zoo.home() / "images" / p).exists()
                                       for p in ("astronaut.png", *CALIBRATION_PHOTOS)):
        zoo.fetch(what=("images",), log=log)
        zoo_real.fetch_real(log)
    from mobile_engine.bench import import_engine, import_onnxruntime
    from mobile_engine.machine import machine_facts
    # NOTE: the Caffe2 light nets carry an unused initializer onnxruntime warns about on load
    import_onnxruntime().set_default_logger_severity(3)
    import_engine()
    facts = machine_facts([threads])
    doc = {"kind": KIND, "schema_version": SCHEMA_VERSION,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "threads": threads, "runs": runs, "tolerance": TOLERANCE, "machine": facts,
           "load_before": list(os.getloadavg()), "models": []}
    for n in names:
        t0 = time.perf_counter()
        row = bench_model(n, threads, runs, int8, profile_runs, progress, log)
        doc["models"].append(row)
        log(row_line(row) + f"   ({time.perf_counter() - t0:.0f} s)")
    doc["load_after"] = list(os.getloadavg())
    ok = [r for r in doc["models"] if r["status"] == "ok"]
    doc["geomean_ratio"] = geomean(r["ratio"] for r in ok)
    doc["geomean_int8_speedup"] = geomean(r["int8_speedup"] for r in ok) if int8 else None
    return doc


# --- text -----------------------------------------------------------------------------------------
HEADER = (f"{'model':<13} {'input':<14} {'GFLOP':>6} {'engine ms':>10} {'ort ms':>8} "
          f"{'ratio':>6} {'diff/range':>10}")


def row_line(r: dict) -> str:
    shape = "x".join(map(str, r["shape"][1:]))
    if r["fp32"] is None:
        return f"{r['name']:<13} {shape:<14} {r['status'].upper()}: {r['error']}"
    res = r["fp32"]["results"][0]
    ort = res["compare"]["onnxruntime"]
    rel = [o["max_abs_diff"] / (o["range"] or 1e-6) for o in r["outputs"]
           if o["max_abs_diff"] is not None]
    worst = f"{max(rel):.1e}" if rel else "n/a"
    line = (f"{r['name']:<13} {shape:<14} {r['fp32']['plan']['gflop']:6.2f} "
            f"{res['latency_ms']['p50']:10.2f} {ort['p50']:8.2f} {r['ratio']:6.2f} {worst:>10}")
    if r["status"] != "ok":
        line += f"  {r['status'].upper()}"
    if r["int8"] is not None:
        psnr = r["int8_psnr_db"]
        line += (f"   int8 {r['int8']['results'][0]['latency_ms']['p50']:.2f} ms, "
                 f"{r['int8_speedup']:.2f}x fp32, PSNR "
                 f"{'identical' if psnr is None else f'{psnr:.1f} dB'}")
    return line


def text(doc: dict, profile: bool = False) -> str:
    from mobile_engine.bench import format_ops
    from mobile_engine.machine import describe
    load = lambda v: ", ".join(f"{x:.2f}" for x in v)             # noqa: E731
    lines = [describe(doc["machine"]),
             f"threads {doc['threads']}, medians of {doc['runs']} runs alternating with "
             f"onnxruntime (not spinning); load average before {load(doc['load_before'])}, "
             f"after {load(doc['load_after'])}",
             f"outputs checked against onnxruntime: max |diff| <= {doc['tolerance']:g} x range",
             "", HEADER]
    lines += [row_line(r) for r in doc["models"]]
    g = doc["geomean_ratio"]
    n_ok = sum(r["status"] == "ok" for r in doc["models"])
    lines.append(f"geometric mean engine/onnxruntime over {n_ok} models: "
                 f"{'n/a' if g is None else f'{g:.3f}'}")
    if doc.get("geomean_int8_speedup"):
        lines.append(f"geometric mean int8 speedup over the engine's fp32: "
                     f"{doc['geomean_int8_speedup']:.2f}x")
    if profile:
        for r in doc["models"]:
            for kind in ("fp32", "int8"):
                if r[kind] is not None:
                    lines += ["", f"{r['name']} ({kind}):"] + format_ops(r[kind]["results"][0])
    return "\n".join(lines)
