"""One benchmark on a fleet of boards: the same ``bench`` (mobile_engine/bench.py) run by the Dask
worker of each chosen board, one board at a time (so a board's run is never disturbed by the
model going out to another, or by another's traffic) or all at once when asked. The model file
travels to a board only when its turn comes; the board compiles it and its kernels for its own
CPU, exactly as ``mobile-engine bench`` there would. Each board's JSON (the bench schema,
unchanged) comes back to the client, which makes the ``bench-report`` table.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mobile_engine.errors import EngineError


@dataclass
class BoardResult:
    name: str
    report: dict | None          # the bench JSON document
    error: str = ""              # one line when the board failed


def bench_on_worker(model_name: str, model_bytes: bytes, options: dict) -> dict:
    """The task on a board: the model written to a temporary folder under its own name (the
    importer goes by its suffix), ``run_bench`` with ``options``, its JSON document; the label
    defaults to the worker's name."""
    from distributed import get_worker

    from mobile_engine.bench import run_bench
    options = dict(options)
    options["label"] = options.get("label") or str(get_worker().name)
    with tempfile.TemporaryDirectory(prefix="mobile-engine-fleet-") as tmp:
        path = Path(tmp) / model_name
        path.write_bytes(model_bytes)
        return run_bench(path, **options).as_dict()


def bench_fleet(client, workers: dict[str, str], model: str | Path, options: dict,
                together: bool = False,
                log: Callable[[str], None] = print) -> list[BoardResult]:
    """``run_bench(model, **options)`` on each worker of ``workers`` ({address: name}), in that
    order, one at a time unless ``together``. A board's failure is reported and the others go
    on."""
    model = Path(model)
    data = model.read_bytes()
    results = []

    def submit(address):
        return client.submit(bench_on_worker, model.name, data, options, workers=[address],
                             allow_other_workers=False, pure=False)

    pending = {address: submit(address) for address in workers} if together else {}
    for k, (address, name) in enumerate(workers.items(), 1):
        log(f"{name} ({address}): benchmarking{'' if together else ' alone'} "
            f"({k}/{len(workers)}) ...")
        future = pending.pop(address) if together else submit(address)
        results.append(_board_result(name, future, model))
    return results


def _board_result(name: str, future, model: Path) -> BoardResult:
    """The board's document, naming the model as the user gave it (not the board's copy)."""
    try:
        report = future.result()
    except Exception as exc:        # NOTE: one board's failure must not stop the fleet
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        kind = "" if isinstance(exc, EngineError) else f"{type(exc).__name__}: "
        return BoardResult(name, None, f"{kind}{text}")
    report["model"] = str(model)
    return BoardResult(name, report)


# NOTE: bench options that name files or values on this machine; a board has neither
LOCAL_ONLY = ("int8", "calib", "validate", "quant_table", "keep_float", "min_psnr", "input",
              "set", "plot", "json", "label", "peer_model")


def run_fleet_command(args) -> int:
    """``mobile-engine bench MODEL --cluster ADDRESS [--workers NAME...] [--all-at-once]``:
    each board's report, then the bench-report table (``--report FILE.md`` to write it) and
    each board's JSON (``--json-dir DIR``: DIR/NAME.json). Exit 2 if any board failed."""
    import json
    import sys

    from mobile_engine.bench import BenchReport
    from mobile_engine.bench_report import markdown
    from mobile_engine.cluster.connect import choose_workers, cluster_client
    from mobile_engine.errors import InputError
    given = [f"--{o.replace('_', '-')}" for o in LOCAL_ONLY if getattr(args, o, None)]
    if given:
        raise InputError(f"{given[0]} does not go with --cluster: a board has only the model "
                         f"(per-board JSON: --json-dir DIR)")
    if not Path(args.model).is_file():
        raise InputError(f"{args.model}: no such file (give an .onnx or .tflite model or a "
                         f".mplan plan)")
    options = {"shapes": dict(args.shape or []), "threads": args.threads, "runs": args.runs,
               "compare": args.compare, "warmup": args.warmup,
               "profile_runs": args.profile_runs, "progress": False}
    with cluster_client(args.cluster) as client:
        workers = choose_workers(client, args.workers)
        boards = bench_fleet(client, workers, args.model, options, args.all_at_once)
    done = [b for b in boards if b.report is not None]
    for b in done:
        print(f"\n== {b.name} ==\n{BenchReport.from_dict(b.report, b.name).text(args.profile)}")
        if args.json_dir:
            path = Path(args.json_dir) / f"{b.name}.json"
            path.write_text(json.dumps(b.report, indent=2) + "\n")
            print(f"wrote {path}")
    if done:
        table = markdown([(f"{b.name}.json", b.report) for b in done])
        if args.report:
            Path(args.report).write_text(table)
            print(f"\nwrote {args.report}")
        else:
            print("\n" + table, end="")
    for b in boards:
        if b.report is None:
            print(f"mobile-engine: error: {b.name}: {b.error}", file=sys.stderr)
    return 0 if len(done) == len(boards) else 2
