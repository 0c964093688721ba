"""Quality of an int8 plan against its float plan: the report, its measures and its text.

The runs that fill it are the compiler's (``mobile_engine/quality.py``): both plans run on the
same feeds. Two kinds of measure:

Per output, per image (every graph output, and every array a user's decode hook returns)::

    PSNR = 10 log10(range^2 / mean (f - q)^2),   range = max f - min f

``f`` the float plan's output on that image, ``q`` the int8 plan's: the peak is the output's
OWN range, never 1.0. A heatmap spanning 0.0001..0.007 whose int8 error is a third of its range
measures ~10 dB, not the ~60 dB a peak of 1 would claim (an all-constant output: its largest
magnitude, else 1). The report's headline is the worst output: ``--min-psnr`` holds for it.

Classifier-like outputs (one non-unit dimension of at least ``CLASSIFIER_MIN_CLASSES``
entries, e.g. ``[1, 1000]`` logits) also get, over the images: top-1 agreement (the int8
argmax is the float argmax) and top-5 agreement (the float argmax is among the int8 plan's 5
highest).

Per layer (one set of images: the validation set when there is one), for every step of the
int8 plan, its output against the float plan's tensor holding the same value
(``QuantizeResult.source``; uint8 tensors dequantized, equalized tensors multiplied back)::

    SQNR = 10 log10(sum f^2 / sum (f - q)^2)          over all feeds

Tensors the float plan does not materialize (a conv's accumulators, when the float lowering runs
the conv and its instance norm as one step) are not compared: a layer's output is then its
norm's (or its fused residual add's) output.

The images come in sets: "calibration" (the images the ranges were measured on) and
"validation" (held out: images calibration never saw). Both are reported; a figure on the
calibration images alone flatters the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CLASSIFIER_MIN_CLASSES = 10
MEASURE = ("PSNR relative to each output's own range on each image: "
           "10 log10((max f - min f)^2 / mean (f - q)^2), f float plan, q int8 plan")


@dataclass
class LayerError:
    node: str
    kernel: str
    tensor: str
    dtype: str
    sqnr_db: float


@dataclass
class OutputError:
    """One output (or decoded array) over one set of images."""
    name: str
    psnr_db: list[float] = field(default_factory=list)       # per image
    top1: float | None = None       # classifier-like: fraction of images agreeing
    top5: float | None = None

    @property
    def min_psnr_db(self) -> float:
        return min(self.psnr_db) if self.psnr_db else float("nan")


@dataclass
class ImageSet:
    """The measures of every output over one set of images ("calibration", "validation")."""
    name: str
    images: int
    outputs: list[OutputError] = field(default_factory=list)
    note: str = ""

    @property
    def worst(self) -> OutputError | None:
        return min(self.outputs, key=lambda o: o.min_psnr_db, default=None)

    @property
    def psnr_db(self) -> list[float]:
        """Per image: the worst output's PSNR on it."""
        return [min(v) for v in zip(*(o.psnr_db for o in self.outputs))]


@dataclass
class QualityReport:
    layers: list[LayerError] = field(default_factory=list)
    sets: list[ImageSet] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    target_db: float | None = None
    steps: list[str] = field(default_factory=list)           # what --min-psnr did

    @property
    def min_psnr_db(self) -> float:
        """The worst output on the worst image, over every set."""
        vals = [o.min_psnr_db for s in self.sets for o in s.outputs]
        return min(vals) if vals else float("nan")

    @property
    def headline(self) -> ImageSet | None:
        """The set whose per-image figures lead: validation when there is one."""
        named = {s.name: s for s in self.sets}
        return named.get("validation") or (self.sets[0] if self.sets else None)

    def as_dict(self) -> dict:
        head = self.headline
        return {"measure": MEASURE,
                # per image of the headline set, worst output (kept for older readers)
                "psnr_db": [_db(p) for p in head.psnr_db] if head else [],
                "min_psnr_db": _db(self.min_psnr_db), "target_db": self.target_db,
                "sets": [{"name": s.name, "images": s.images, "note": s.note,
                          "outputs": [{"name": o.name,
                                       "psnr_db": [_db(p) for p in o.psnr_db],
                                       "min_psnr_db": _db(o.min_psnr_db),
                                       **({"top1": o.top1, "top5": o.top5}
                                          if o.top1 is not None else {})}
                                      for o in s.outputs]}
                         for s in self.sets],
                "kept_float": self.kept_float, "steps": self.steps,
                "layers": [{"node": e.node, "kernel": e.kernel, "tensor": e.tensor,
                            "dtype": e.dtype, "sqnr_db": _db(e.sqnr_db)}
                           for e in self.layers]}

    def text(self, layers: bool = True) -> str:
        return format_report(self.as_dict(), layers)


def _db(v: float) -> float | None:
    """A figure for JSON: 2 decimals; None for +inf (identical outputs: strict JSON has no
    Infinity)."""
    return None if v == float("inf") else round(float(v), 2)


def _f(v) -> str:
    return "inf" if v is None else f"{v:.1f}"


def format_report(d: dict, layers: bool = True) -> str:
    """Text of a report (``QualityReport.as_dict()``, as stored in a plan's provenance)."""
    lines = ["int8 quality against the float plan (" + d.get("measure", "PSNR") + "):"]
    if "sets" not in d:                     # a plan compiled before per-output reports
        lines.append("  end-to-end PSNR per image (first output): "
                     + ", ".join(_f(p) for p in d["psnr_db"]) + " dB")
    for s in d.get("sets", []):
        lines.append(f"  {s['name']} ({s['images']} images{'; ' + s['note'] if s['note'] else ''}):")
        for o in s["outputs"]:
            line = (f"    {o['name']:<24} min {_f(o['min_psnr_db']):>6} dB  per image: "
                    + ", ".join(_f(p) for p in o["psnr_db"]))
            if "top1" in o:
                line += f"  top-1 agreement {o['top1']:.0%}, top-5 {o['top5']:.0%}"
            lines.append(line)
    lines.append(f"  worst output: {_f(d['min_psnr_db'])} dB"
                 + (" (identical to the float plan)" if d["min_psnr_db"] is None else ""))
    if d.get("target_db") is not None:
        met = d["min_psnr_db"] is None or d["min_psnr_db"] >= d["target_db"]
        lines.append(f"  target {d['target_db']:.1f} dB (worst output, every image): "
                     f"{'met' if met else 'NOT met'}")
    lines += [f"  {s}" for s in d.get("steps", [])]
    lines.append(f"  kept in float: {', '.join(d.get('kept_float', [])) or 'none'}")
    if layers:
        lines.append("  per-layer SQNR (dB) of each int8-plan step's output:")
        for e in d["layers"]:
            lines.append(f"    {_f(e['sqnr_db']):>6}  {e['dtype']:<7} {e['kernel']:<36} {e['node']}")
    return "\n".join(lines)


def psnr_db(f: np.ndarray, q: np.ndarray) -> float:
    """PSNR of ``q`` against ``f`` relative to ``f``'s own range (module docstring)."""
    f = np.asarray(f, np.float64)
    if not f.size:
        return float("inf")
    peak = float(f.max() - f.min()) or float(np.max(np.abs(f))) or 1.0
    mse = float(np.mean((f - np.asarray(q, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def is_classifier(shape) -> bool:
    """One non-unit dimension of at least CLASSIFIER_MIN_CLASSES entries (e.g. [1, 1000])."""
    dims = [d for d in shape if d != 1]
    return len(dims) == 1 and dims[0] >= CLASSIFIER_MIN_CLASSES


def measure(name: str, refs: list[np.ndarray], outs: list[np.ndarray]) -> OutputError:
    """One output over a set of images: PSNR per image, and top-1/top-5 when classifier-like."""
    err = OutputError(name, [psnr_db(f, q) for f, q in zip(refs, outs)])
    if refs and is_classifier(np.shape(refs[0])):
        top1 = top5 = 0
        for f, q in zip(refs, outs):
            best = int(np.argmax(f))
            q = np.ravel(q)
            top1 += int(np.argmax(q)) == best
            top5 += best in np.argsort(-q, kind="stable")[:5]
        err.top1, err.top5 = top1 / len(refs), top5 / len(refs)
    return err
