"""Pictures and tables of saved bench results: the cross-board markdown table and the per-op chart.

``mobile-engine bench-report pi4.json pi5.json laptop.json -o boards.md`` reads bench JSON files
(schema in ``mobile_engine.bench``) and writes one markdown table with a row per file and thread
count, then a short list of the machines (CPU, ISA, governor, warnings) so a reader can judge them.
``plot_ops`` draws the per-op profile of a report as a horizontal bar chart PNG with PIL (no
matplotlib).
"""
from __future__ import annotations

import json
from pathlib import Path

from mobile_engine.bench import validate_report
from mobile_engine.errors import InputError
from mobile_engine.machine import short_name

COLUMNS = ("model", "shape", "precision", "threads", "machine", "p50 ms", "p90 ms", "init ms",
           "first run ms", "peak RSS MB", "vs onnxruntime")


def load_reports(paths) -> list[tuple[str, dict]]:
    """(path, document) for each bench JSON file, validated; errors name the file."""
    out = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except OSError as exc:
            raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}: not JSON ({exc})") from None
        out.append((str(p), validate_report(data, str(p))))
    if not out:
        raise InputError("bench-report: give at least one bench JSON file")
    return out


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shape(inputs: list[dict]) -> str:
    return ", ".join(f"{i['name']}={'x'.join(map(str, i['shape']))}" for i in inputs)


def rows(reports: list[tuple[str, dict]]) -> list[list[str]]:
    """One row per (file, thread block), cells as strings in COLUMNS order."""
    out = []
    for _, d in reports:
        machine = d["label"] or short_name(d["machine"])
        for r in d["results"]:
            lat, jit = r["latency_ms"], r["jit"]
            out.append([Path(d["model"]).name, _shape(d["inputs"]), d["precision"] or "n/a",
                        str(r["threads"]), machine, f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
                        f"{r['init_ms']:.0f} ({jit['cache']})", f"{r['first_run_ms']:.2f}",
                        f"{r['peak_rss_mb']:.0f}", _versus(r["compare"].get("onnxruntime"),
                                                           d["peer"], d["model"])])
    return out


def _versus(c: dict | None, peer: dict | None, model: str) -> str:
    """The ratio cell: ratio, the peer's p50, its model when not ours, the outputs' PSNR."""
    if c is None:
        return "not measured"
    notes = [f"onnxruntime p50 {c['p50']:.2f} ms"]
    if peer and Path(peer["model"]).name != Path(model).name:
        notes.append(f"on {Path(peer['model']).name} ({peer['precision']})")
    if c.get("psnr_db") is not None:                          # absent in version 1 files
        notes.append(f"PSNR {c['psnr_db']:.1f} dB")
    return f"{c['ratio']:.2f}x ({', '.join(notes)})"


def markdown(reports: list[tuple[str, dict]]) -> str:
    """The table across boards and runs, then one line per distinct machine."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows(reports)]
    lines += ["", "ratio = mobile-engine p50 / onnxruntime p50, measured alternately in one "
              "process (below 1: mobile-engine is faster); init = load + bind + kernel JIT "
              "(cold: compiled, warm: loaded from Numba's cache).", "",
              "Machines and warnings:", ""]
    seen = set()
    for path, d in reports:
        m = d["machine"]
        line = (f"- {_cell(d['label'] or short_name(m))}: {m['cpu']}, {m['arch']}, "
                f"isa {' '.join(m['isa']) or 'n/a'}, governor {m.get('governor') or 'n/a'}, "
                f"numba {m['numba']}, threading layer {m.get('threading_layer') or 'n/a'}")
        warn = "; ".join((m.get("warnings") or []) + [f"{r['threads']} thread(s): {w}"
                                                     for r in d["results"] for w in r["warnings"]])
        line += f"; warnings: {_cell(warn)}" if warn else ""
        if line not in seen:
            seen.add(line)
            lines.append(f"{line} ({Path(path).name}, {d['created']})")
    return "\n".join(lines) + "\n"


# --- the per-op bar chart ------------------------------------------------------------------------
MAX_BARS = 60
MIN_PERCENT = 0.1          # smaller steps are summed into one bar
_FLOP_COLOR, _OTHER_COLOR = (52, 101, 164), (204, 121, 43)


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                                     # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _bars(ops: list[dict]) -> list[tuple[str, float, float, float | None]]:
    """(label, ms, percent, GFLOP/s or None) per bar: the steps of at least MIN_PERCENT (at most
    MAX_BARS - 1 of them, the slowest) in run order, the rest summed into one bar."""
    big = [i for i, o in enumerate(ops) if o["percent"] >= MIN_PERCENT]
    keep = set(sorted(big, key=lambda i: -ops[i]["ms"])[:MAX_BARS - 1])
    bars = [(f"{o['name'][:28]} [{o['kernel']}]", o["ms"], o["percent"], o["gflops"])
            for i, o in enumerate(ops) if i in keep]
    rest = [o for i, o in enumerate(ops) if i not in keep]
    if rest:
        bars.append((f"({len(rest)} other steps)", sum(o["ms"] for o in rest),
                     sum(o["percent"] for o in rest), None))
    return bars


def plot_ops(report: dict, path: str | Path) -> Path:
    """Draw every thread block's per-op times of a bench document as bars; write a PNG."""
    from PIL import Image, ImageDraw
    font, title_font = _font(12), _font(14)
    row, label_w, bar_w, value_w, pad = 18, 400, 420, 240, 12
    panels = [(r, _bars(r["ops"])) for r in report["results"]]
    height = pad + sum(2 * row + len(b) * row + pad for _, b in panels) + row
    width = label_w + bar_w + value_w + 2 * pad
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    y = pad
    for r, bars in panels:
        lat = r["latency_ms"]
        draw.text((pad, y), f"{Path(report['model']).name}: {r['threads']} thread(s), p50 "
                  f"{lat['p50']:.3f} ms, sum of steps {r['ops_total_ms']:.3f} ms", fill="black",
                  font=title_font)
        y += 2 * row
        top = max([b[1] for b in bars] + [1e-9])
        for label, ms, pct, gflops in bars:
            draw.text((pad, y + 2), label[:70], fill="black", font=font)
            x0 = pad + label_w
            draw.rectangle([x0, y + 2, x0 + max(1, int(bar_w * ms / top)), y + row - 3],
                           fill=_OTHER_COLOR if gflops is None else _FLOP_COLOR)
            rate = "" if gflops is None else f"  {gflops:.1f} GFLOP/s"
            draw.text((x0 + bar_w + 6, y + 2), f"{ms:.3f} ms {pct:5.1f}%{rate}", fill="black",
                      font=font)
            y += row
        y += pad
    draw.text((pad, y), "blue: conv/GEMM kernels, orange: other kernels; medians of steps called "
              "one by one", fill=(90, 90, 90), font=font)
    path = Path(path)
    img.save(path, format="PNG")
    return path
