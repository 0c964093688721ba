"""The `mobile-engine` command: compile, run, inspect, bench, bench-report, video, zoo.

Every error ends in one line on stderr and a non-zero exit (2 for an engine error or bad input,
1 for a file the system refuses): no tracebacks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mobile_engine.errors import EngineError, InputError
from mobile_engine.images import load_image, require_image_input, save_image
from mobile_engine.progress import progress_callback


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``image=1x3x480x640`` -> ("image", (1, 3, 480, 640))."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"--shape {text!r}: expected NAME=DIMxDIMx..., "
                                         f"e.g. image=1x3x480x640")
    return name, shape


def parse_set(text: str) -> tuple[str, str]:
    """``style_weights=7:1`` -> ("style_weights", "7:1")."""
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected NAME=VALUES, e.g. "
                                         f"style_weights=7:1")
    return name, values


def check_set_names(sets: dict, names: list[str]) -> None:
    """--set for an input the model does not have is an error, not silently ignored."""
    unknown = sorted(set(sets) - set(names))
    if unknown:
        raise InputError(f"--set {unknown[0]}=...: the model has no input {unknown[0]!r}; "
                         f"inputs: {', '.join(names)}")


def parse_values(text: str, size: int, name: str) -> np.ndarray:
    """``0.5,0.5,0`` (all values) or ``3:0.5,19:0.5`` (index:value pairs, others zero)."""
    out = np.zeros(size, np.float32)
    try:
        parts = [p for p in text.split(",") if p]
        if parts and all(":" in p for p in parts):
            for p in parts:
                i, v = p.split(":")
                out[int(i)] = float(v)
        else:
            values = [float(p) for p in parts]
            if len(values) == 1:
                out[:] = values[0]
            elif len(values) == size:
                out[:] = values
            else:
                raise ValueError(f"{len(values)} values for {size} elements")
    except (ValueError, IndexError) as exc:
        raise InputError(f"--set {name}={text}: {exc}; give {size} comma-separated values, one "
                         f"value for all, or INDEX:VALUE pairs") from None
    return out


def check_output_path(path: str, option: str) -> Path:
    """Fail before the work: ``path``'s folder must exist (one line naming the option)."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{option} {path}: the folder {parent} does not exist")
    if out.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file name")
    return out


def cmd_compile(args) -> int:
    import mobile_engine as me
    out = check_output_path(args.output, "-o")
    shapes = dict(args.shape or [])
    kw = quantize_options(args, shapes)
    from mobile_engine import bundle_build
    from mobile_engine.targets import resolve
    target = resolve(args.target).name
    if args.kernels:
        bundle_build.check_target(target)
        bundle_build.check_ready(target)
    plan = me.compile(args.model, input_shapes=shapes, disable_passes=args.disable_pass or (),
                      target=target, **kw)
    plan.save(out)
    print(f"wrote {out} ({out.stat().st_size} bytes): {len(plan.steps)} steps, arena "
          f"{mib(plan.arena_bytes)}, weights {mib(plan.weight_bytes)}")
    if args.kernels:
        bundle_build.build(out, target)
    if args.report:
        print(format_passes(plan.manifest["passes"]))
    quant = plan.manifest["provenance"].get("quantization")
    if quant:
        print(f"int8: {quant['summary']}")
        if "report" in quant:
            from quantize.report import format_report
            print(format_report(quant["report"], layers=args.report))
            path = report_path(out)
            path.write_text(json.dumps(quant["report"], indent=1) + "\n")
            print(f"wrote {path} (the quality report)")
    return 0


def _image_files(folder: str) -> list[Path]:
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in exts)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(sorted(exts))})")
    return files


def _image_feeds(model, shapes: dict, folder: str, sets: dict) -> list[dict]:
    """One feed per image of ``folder``: the image input (mobile_engine/images.py); other
    inputs from ``--set NAME=VALUES`` or ``NAME=onehot`` (image k gets a one-hot vector, the
    hot index spread over the inputs' entries)."""
    from mobile_engine.compiler import import_model
    graph = import_model(model, shapes)
    check_set_names(sets, list(graph.inputs))
    files = _image_files(folder)
    image = require_image_input([(n, graph.tensors[n].shape, graph.tensors[n].dtype.value)
                                 for n in graph.inputs], "--calib")
    feeds = []
    for k, f in enumerate(files):
        feed = {}
        for name in graph.inputs:
            t = graph.tensors[name]
            if name == image.name:
                feed[name] = load_image(str(f), image)
            elif name in sets and sets[name] == "onehot":
                size = int(np.prod(t.shape))
                v = np.zeros(size, np.float32)
                v[(k * size // len(files)) % size] = 1
                feed[name] = v.reshape(t.shape).astype(t.dtype.np)
            elif name in sets:
                size = int(np.prod(t.shape))
                feed[name] = parse_values(sets[name], size, name).reshape(t.shape) \
                    .astype(t.dtype.np)
            else:
                raise InputError(f"input {name!r} ({t.dtype.value} {list(t.shape)}) needs a "
                                 f"value for calibration: --set {name}=V1,V2,... or "
                                 f"--set {name}=onehot")
        feeds.append(feed)
    return feeds


def mib(nbytes: int) -> str:
    """Byte counts in one unit everywhere (compile, inspect, load errors): MiB."""
    return f"{nbytes / 2**20:.2f} MiB"


def quantize_options(args, shapes: dict) -> dict:
    """``me.compile`` keywords for the int8 options of `compile` and `bench` (calibration runs
    here); {} without --int8."""
    if args.int8:
        return _int8_options(args, shapes)
    if (args.calib or args.validate or args.min_psnr is not None or args.quant_table
            or args.keep_float):
        raise InputError("--calib, --validate, --quant-table, --keep-float and --min-psnr need "
                         "--int8")
    return {}


def _int8_options(args, shapes: dict) -> dict:
    from quantize.table import QuantTable
    sets = dict(args.set or [])
    kw = {"quantize": "int8", "keep_float": args.keep_float or (), "min_psnr": args.min_psnr}
    validation = None
    if args.validate:
        validation = _image_feeds(args.model, shapes, args.validate, sets)
    if args.calib:
        feeds = _image_feeds(args.model, shapes, args.calib, sets)
        if validation is None:
            feeds, validation = hold_out(feeds)
            print(f"validating on {len(validation)} of the {len(feeds) + len(validation)} "
                  f"--calib images, held out of calibration (--validate DIR to choose)"
                  if validation else "one --calib image: nothing held out for validation "
                  "(--validate DIR)")
        from mobile_engine.compiler import calibrate_model
        table = calibrate_model(args.model, shapes, feeds, disable_passes=args.disable_pass or (),
                                progress=progress_callback(f"calibrating on {len(feeds)} images",
                                                           getattr(args, "progress", None)))
        if args.quant_table:
            table.save(args.quant_table)
            print(f"wrote {args.quant_table} (quant table, {len(table.tensors)} tensors)")
        kw.update(quant_table=table, calibration=feeds)
    elif args.quant_table:
        kw["quant_table"] = QuantTable.load(args.quant_table)
    else:
        raise InputError("--int8 needs --calib DIR (a folder of representative images) or "
                         "--quant-table FILE")
    if validation:
        kw["validation"] = validation
    elif args.min_psnr is not None and not args.calib:
        raise InputError("--min-psnr needs images: --calib DIR or --validate DIR")
    return kw


def hold_out(feeds: list) -> tuple[list, list]:
    """(calibration, validation): every 4th feed held out (one of 2 or 3; none of 1)."""
    n = len(feeds)
    held = set(range(3, n, 4)) if n >= 4 else {n - 1} if n >= 2 else set()
    return ([f for k, f in enumerate(feeds) if k not in held],
            [f for k, f in enumerate(feeds) if k in held])


def report_path(plan_path: Path) -> Path:
    """Where `compile` writes the quality report: beside the plan, NAME.quality.json."""
    return plan_path.with_name(plan_path.stem + ".quality.json")


def format_passes(passes: list[dict]) -> str:
    lines = ["passes:"]
    for p in passes:
        changed = p.get("rewrites", 0)
        delta = ", ".join(f"{op} {n:+d}" for op, n in sorted(p.get("delta", {}).items()) if n)
        lines.append(f"  {p['name']:<22} {changed:4d} rewrites  {delta}")
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from mobile_engine.plan import Plan
    plan = Plan.load(args.plan)
    m = plan.manifest
    print(f"plan {args.plan}: format {'.'.join(map(str, m['format']))}")
    for key in ("inputs", "outputs"):
        for io in m[key]:
            print(f"  {key[:-1]:<6} {io['name']}: {io['dtype']} {io['shape']}")
    print(f"  arena {mib(plan.arena_bytes)}, weights {mib(plan.weight_bytes)}, "
          f"{len(plan.steps)} steps, {sum(s['flops'] for s in plan.steps) / 1e9:.3f} GFLOP")
    print("provenance: " + json.dumps(m["provenance"]))
    from mobile_engine.bundle_build import describe
    from mobile_engine.plan.describe import step_lines, target_line
    print(target_line(plan))
    if "target" in m:
        from mobile_engine.runtime.tiles import refit_note
        print(f"  on this machine: {refit_note(plan) or 'the same tiles (it fits the target)'}")
    print(describe(plan))
    print(format_passes(m["passes"]))
    print("steps (each operand's origin: a graph input, a step, or a weight):")
    print("\n".join(step_lines(plan)))
    return 0


def _given_inputs(plan, image: str | None, sets: dict) -> dict[str, tuple[np.ndarray, str]]:
    """{input name: (array, how it was made)} for the inputs the command line gives: ``image``
    for the plan's image input (mobile_engine/images.py), ``sets`` {NAME: VALUES} for others."""
    given = {}
    check_set_names(sets, [i["name"] for i in plan.inputs])
    img = require_image_input([(i["name"], i["shape"], i["dtype"]) for i in plan.inputs],
                              "--input") if image else None
    for i in plan.inputs:
        name, shape = i["name"], i["shape"]
        if img is not None and name == img.name:
            given[name] = (load_image(image, img), f"image {image} {img.describe()}")
        elif name in sets:
            values = parse_values(sets[name], int(np.prod(shape)), name)
            given[name] = (values.reshape(shape).astype(i["dtype"]), f"--set {name}={sets[name]}")
    return given


def _feeds_from_args(plan, args) -> dict:
    given = _given_inputs(plan, args.input, dict(args.set or []))
    from mobile_engine.images import image_input
    img = image_input([(i["name"], i["shape"], i["dtype"]) for i in plan.inputs])
    for i in plan.inputs:
        if i["name"] not in given:
            dims = "x".join(map(str, i["shape"]))
            if img is not None and i["name"] == img.name:
                raise InputError(f"input {i['name']!r} ({i['dtype']} {dims}) is the image: "
                                 f"--input IMAGE")
            raise InputError(f"input {i['name']!r} ({i['dtype']} {dims}) needs a value: "
                             f"--set {i['name']}=V1,V2,... (all values), --set {i['name']}=V "
                             f"(one for all) or INDEX:VALUE pairs")
    return {name: a for name, (a, _) in given.items()}


def _output_kind(path: str) -> str:
    """"npy" or "image" for `run --output` by its extension; InputError for any other."""
    from PIL import Image
    ext = Path(path).suffix.lower()
    if ext == ".npy":
        return "npy"
    if ext in Image.registered_extensions():
        return "image"
    raise InputError(f"--output {path}: unknown extension {ext or '(none)'!r}; give .npy (the "
                     f"array) or a picture (.png, .jpg, ...)")


def cmd_run(args) -> int:
    import time

    import mobile_engine as me
    kind = None
    if args.output:
        check_output_path(args.output, "--output")
        kind = _output_kind(args.output)
    from mobile_engine.progress import Progress
    sess = me.Session(args.plan, threads=args.threads)
    feeds = _feeds_from_args(sess.plan, args)
    # NOTE: the first run compiles each kernel (once per engine build; later processes load it
    # from Numba's cache): a bar on a terminal says so when it takes a while, and the timed run
    # is the second
    bar = Progress(len(sess.plan.steps), "first run: kernels (compiled once, then cached)",
                   args.progress)
    t0 = time.perf_counter()
    sess.run_observed(feeds, lambda i, _outs: bar.update(i + 1))
    bar.close()
    first_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    outs = sess.run(None, feeds)
    ms = (time.perf_counter() - t0) * 1e3
    timing = f"first run {first_ms:.1f} ms, then {ms:.1f} ms"
    out = outs[0]
    if args.output:
        name = sess.get_outputs()[0].name
        if kind == "npy":
            np.save(args.output, out)
        elif not save_image(out, args.output):
            raise InputError(f"--output {args.output}: output {name!r} "
                             f"({'x'.join(map(str, out.shape))}) is not a 3-channel image; "
                             f"write it as .npy")
        print(f"wrote {args.output} ({timing})")
    else:
        print(f"{sess.get_outputs()[0].name}: shape {out.shape}, min {out.min():.4g}, "
              f"max {out.max():.4g} ({timing})")
    return 0


def _bench_feeds(args):
    """bench's given feeds (a callable on the plan, see ``bench.run_bench``), or None: --input for
    the image input, --set for others; ``NAME=onehot`` (calibration's one-hot per image) feeds
    the one-hot vector of index 0, the first calibration image's."""
    sets = {k: "0:1" if v == "onehot" else v
            for k, v in (args.set or [])}
    if not args.input and not sets:
        return None
    return lambda plan: _given_inputs(plan, args.input, sets)


def cmd_bench(args) -> int:
    if args.cluster:
        return _bench_fleet(args)
    fleet_only = [o for o, v in (("--workers", args.workers), ("--all-at-once", args.all_at_once),
                                 ("--json-dir", args.json_dir), ("--report", args.report)) if v]
    if fleet_only:
        raise InputError(f"{fleet_only[0]} needs --cluster tcp://HOST:8786 (a fleet of boards)")
    from mobile_engine.bench import run_bench
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_output_path(path, option)       # before minutes of benchmarking
    shapes = dict(args.shape or [])
    if args.int8:       # calibrated and compiled inside run_bench, which times it
        compile_options = lambda: quantize_options(args, shapes)
    else:
        compile_options = quantize_options(args, shapes) or None      # refuses --calib alone
    report = run_bench(args.model, shapes=shapes, threads=args.threads, runs=args.runs,
                       compare=args.compare, warmup=args.warmup,
                       profile_runs=args.profile_runs, label=args.label, progress=args.progress,
                       peer_model=args.peer_model, feeds=_bench_feeds(args),
                       compile_options=compile_options)
    print(report.text(profile=args.profile))      # NOTE: holds every WARNING, once
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        from mobile_engine.bench_report import plot_ops
        print(f"wrote {plot_ops(report.as_dict(), args.plot)}")
    return 0


def _bench_fleet(args) -> int:
    from mobile_engine.cluster.fleet import run_fleet_command
    if args.report:
        check_output_path(args.report, "--report")
    if args.json_dir and not Path(args.json_dir).is_dir():
        raise InputError(f"--json-dir {args.json_dir}: no such folder")
    return run_fleet_command(args)


def cmd_bench_start(args) -> int:
    from mobile_engine import bench_start
    from mobile_engine.bundle_build import HOST, check_target
    core = None if args.core in (None, HOST) else check_target(args.core)
    res = bench_start.run(args.plan, args.threads, args.runs, args.cold, core,
                          say=lambda msg: print(msg, file=sys.stderr))
    print(bench_start.format_result(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


def cmd_bench_zoo(args) -> int:
    from mobile_engine import bench_zoo
    if args.json:
        check_output_path(args.json, "--json")          # before minutes of benchmarking
    models = [m for group in args.models or [] for m in group.split(",") if m]
    doc = bench_zoo.run(models, threads=args.threads, runs=args.runs, int8=args.int8,
                        progress=args.progress)
    print(bench_zoo.text(doc, profile=args.profile))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def cmd_bench_report(args) -> int:
    from mobile_engine.bench_report import load_reports, markdown
    if args.output:
        check_output_path(args.output, "-o")
    text = markdown(load_reports(args.files))
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def cmd_video(args) -> int:
    from mobile_engine.video.command import run
    check_output_path(args.output, "-o")
    return run(args)


def cmd_zoo(args) -> int:
    from mobile_engine import zoo
    if args.action == "fetch":
        from mobile_engine import zoo_real
        zoo_real.fetch_all(progress=args.progress)
    else:
        print(zoo.home())
    return 0


def add_int8_arguments(p: argparse.ArgumentParser, set_help: str) -> None:
    """The int8 options of `compile`; `bench` takes the same ones (see ``quantize_options``)."""
    p.add_argument("--int8", action="store_true",
                   help="int8 weights, uint8 activations (calibrated on --calib images)")
    p.add_argument("--calib", metavar="DIR", help="folder of representative images (e.g. 8)")
    p.add_argument("--validate", "--eval", metavar="DIR",
                   help="held-out images for the quality report (default: every 4th --calib "
                        "image, then not calibrated on)")
    p.add_argument("--min-psnr", type=float, metavar="DB",
                   help="keep the costliest layers in float until the worst output's PSNR "
                        "against the float plan (relative to its range) reaches DB")
    p.add_argument("--quant-table", metavar="FILE",
                   help="with --calib: write the calibrated ranges there; alone: read them")
    p.add_argument("--keep-float", action="append", metavar="NODE",
                   help="leave this conv in float (repeatable)")
    p.add_argument("--set", action="append", type=parse_set, metavar="NAME=VALUES", help=set_help)


def add_progress_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=f"progress bar for {what} on stderr (default: only on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    from mobile_engine import __version__
    p = argparse.ArgumentParser(prog="mobile-engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mobile-engine {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile an ONNX model into a .mplan plan")
    c.add_argument("model", help="the .onnx model")
    c.add_argument("-o", "--output", required=True, metavar="OUT.mplan",
                   help="the plan file to write (its folder must exist)")
    c.add_argument("--shape", action="append", type=parse_shape, metavar="NAME=DIMS",
                   help="fix an input's shape, e.g. image=1x3x480x640 (repeatable)")
    c.add_argument("--report", action="store_true", help="say what each graph pass changed")
    c.add_argument("--disable-pass", action="append", metavar="NAME",
                   help="skip a graph pass by name (repeatable)")
    c.add_argument("--target", default="host", metavar="TARGET",
                   help="the CPU the plan is for: host (this machine, the default), an ARM "
                        "core (cortex-a53, cortex-a72, cortex-a76, cortex-a710, ...) or an x86 "
                        "level (x86-64-v3, x86-64-v4, sapphirerapids, znver4, znver5): recorded "
                        "in the plan with the tile each step runs as there (`inspect`); the "
                        "plan runs on any CPU. --kernels: host or a core the emulator of `make "
                        "test-arm` runs (cortex-a53, cortex-a72, cortex-a76)")
    c.add_argument("--kernels", action="store_true",
                   help="also write OUT.kernels/ beside the plan: every kernel it uses, "
                        "compiled for TARGET, so the first start there loads instead of compiling")
    add_int8_arguments(c, "other inputs during calibration: values as for `run`, or onehot")
    add_progress_argument(c, "calibration")
    c.set_defaults(fn=cmd_compile)

    r = sub.add_parser("run", help="run a plan on an image")
    r.add_argument("plan", help="the .mplan plan")
    r.add_argument("--input", metavar="IMAGE",
                   help="an image for the plan's [1,3,H,W] input (resized, 0..1)")
    r.add_argument("--output", metavar="FILE",
                   help="where to write the first output: .npy (the array) or a picture "
                        "(.png, .jpg, ...: a 3-channel image output)")
    r.add_argument("--set", action="append", type=parse_set, metavar="NAME=VALUES",
                   help="other inputs: all values, one value, or INDEX:VALUE pairs")
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="worker threads (default: all the CPUs Numba may use)")
    add_progress_argument(r, "the first run's kernels")
    r.set_defaults(fn=cmd_run)

    i = sub.add_parser("inspect", help="show a plan's steps, kernels, passes, memory, provenance")
    i.add_argument("plan", help="the .mplan plan")
    i.set_defaults(fn=cmd_inspect)

    b = sub.add_parser("bench", help="latency, init, memory and per-op profile of a model or "
                       "plan, optionally vs onnxruntime or LiteRT")
    b.add_argument("model", help="an .onnx or .tflite model, or a .mplan plan")
    b.add_argument("--shape", action="append", type=parse_shape, metavar="NAME=DIMS",
                   help="fix an .onnx model's input shape, e.g. image=1x3x256x256 (repeatable)")
    b.add_argument("--threads", type=int, nargs="+", default=[1], metavar="N",
                   help="thread counts, one result block each (default 1); counts above the "
                        "CPUs Numba may use are skipped with a warning")
    b.add_argument("--runs", type=int, default=20, help="timed runs per block (default 20)")
    b.add_argument("--warmup", type=int, default=2, help="untimed runs after the first (default 2)")
    b.add_argument("--compare", choices=["onnxruntime", "litert"], default=None,
                   help="run the peer alternately on the same model, input and threads "
                        "(litert: LiteRT's Interpreter on a .tflite model)")
    b.add_argument("--peer-model", metavar="MODEL",
                   help="the model the peer runs (default: the model, or the plan's "
                        "source), e.g. the fp32 model of an int8 plan; same input names")
    b.add_argument("--input", metavar="IMAGE",
                   help="a photo for the image input (resized, 0..1, as `run --input`) instead "
                        "of random data")
    add_int8_arguments(b, "other inputs' values as for `run` (default random); with --int8 "
                          "also for calibration, where onehot gives each image a one-hot vector "
                          "(the timed feeds then take index 0)")
    b.set_defaults(disable_pass=None)
    b.add_argument("--profile", action="store_true", help="print the per-op table")
    b.add_argument("--profile-runs", type=int, default=None, metavar="N",
                   help="runs of the per-op profile (default min(runs, 10))")
    b.add_argument("--json", help="write the results as JSON (schema: mobile_engine/bench.py)")
    b.add_argument("--plot", metavar="PNG", help="draw the per-op times as a bar chart")
    b.add_argument("--label", help="a name for this machine in bench-report, e.g. pi4")
    add_progress_argument(b, "long runs")
    f = b.add_argument_group("a fleet of boards (Dask: `dask scheduler`, `dask worker` on each)")
    f.add_argument("--cluster", metavar="tcp://HOST:8786",
                   help="run the benchmark on the workers of this Dask scheduler")
    f.add_argument("--workers", nargs="+", metavar="NAME",
                   help="the boards, by worker name or address (default: every worker)")
    f.add_argument("--all-at-once", action="store_true",
                   help="all boards together (default: one board at a time)")
    f.add_argument("--json-dir", metavar="DIR", help="write each board's JSON as DIR/NAME.json")
    f.add_argument("--report", metavar="FILE.md",
                   help="write the bench-report table (default: print it)")
    b.set_defaults(fn=cmd_bench)

    bs = sub.add_parser("bench-start", help="time to a plan's first output in fresh processes "
                                             "(start-up: imports, kernel loads, first frame)")
    bs.add_argument("plan", help="the .mplan plan (its kernel bundle is used when it fits)")
    bs.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    bs.add_argument("--runs", type=int, default=5, help="fresh processes (default 5; medians)")
    bs.add_argument("--cold", action="store_true",
                    help="an empty Numba kernel cache in every process (a device's first start)")
    bs.add_argument("--core", metavar="CORE",
                    help="run on an emulated ARM core (make test-arm's set-up), e.g. cortex-a76")
    bs.add_argument("--json", help="write the results as JSON")
    bs.set_defaults(fn=cmd_bench_start)

    bz = sub.add_parser("bench-zoo", help="every real model of the zoo: check against "
                        "onnxruntime, engine/onnxruntime ratio per model and geometric mean")
    bz.add_argument("--models", nargs="+", metavar="NAME",
                    help="models of the set (default all; names or comma lists): "
                         "resnet50, densenet121, ..., yolov8n")
    bz.add_argument("--threads", type=int, default=2, help="threads of both engines (default 2)")
    bz.add_argument("--runs", type=int, default=8, help="timed runs per engine (default 8)")
    bz.add_argument("--int8", action="store_true",
                    help="also an int8 plan calibrated on 8 zoo photos: speedup vs fp32")
    bz.add_argument("--profile", action="store_true", help="per-op table of every plan")
    bz.add_argument("--json", help="write the results as JSON (schema: mobile_engine/bench_zoo.py)")
    add_progress_argument(bz, "long runs")
    bz.set_defaults(fn=cmd_bench_zoo)

    br = sub.add_parser("bench-report", help="one markdown table from several bench JSON files")
    br.add_argument("files", nargs="+", metavar="JSON", help="files of `bench --json`")
    br.add_argument("-o", "--output", help="the markdown file (default: print)")
    br.set_defaults(fn=cmd_bench_report)

    from mobile_engine.video.command import add_arguments as add_video_arguments
    v = sub.add_parser("video", help="a video file through a style, an effect or a plan, on "
                       "local workers or a Dask cluster; audio and timing kept")
    add_video_arguments(v)
    add_progress_argument(v, "the frames (with an ETA)")
    v.set_defaults(fn=cmd_video)

    z = sub.add_parser("zoo", help="fetch the real models and data (sha256-checked)")
    z.add_argument("action", choices=["fetch", "where"],
                   help="fetch: download what is missing; where: print the cache folder")
    add_progress_argument(z, "downloads")
    z.set_defaults(fn=cmd_zoo)
    return p


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings (a newer plan, an unwritable kernel cache) as one CLI line each."""
    print(f"mobile-engine: warning: {one_line(message)}", file=sys.stderr)


def main(argv=None) -> int:
    import warnings
    args = build_parser().parse_args(argv)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return args.fn(args)
    except EngineError as exc:
        message = getattr(exc, "cli_message", None) or str(exc)
        print(f"mobile-engine: error: {type(exc).__name__}: {one_line(message)}", file=sys.stderr)
        return 2
    except BrokenPipeError:          # `mobile-engine inspect plan | head` (before OSError)
        sys.stderr.close()
        return 0
    except OSError as exc:           # a file the system refuses (permissions, disk full, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"mobile-engine: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mobile-engine: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
