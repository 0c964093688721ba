"""Quality of an int8 plan against its float plan: the report, its measures and its text.

The runs that fill it are the compiler's (``mobile_engine/quality.py``): both plans run on the
same feeds (``Session.run_observed``). For every step of the int8 plan,
its output is compared with the float plan's tensor holding the same value
(``QuantizeResult.source``; uint8 tensors dequantized, equalized tensors multiplied back by
their factors)::

    SQNR = 10 log10(sum f^2 / sum (f - q)^2)          over all feeds, per layer
    PSNR = 10 log10(peak^2 / mean (f - q)^2)           per feed, on the first graph output

with ``peak = 1`` when the float output lies in [0, 1] (images) and its range otherwise.

Tensors the float plan does not materialize (a conv's accumulators, when the float lowering runs
the conv and its instance norm as one step) are not compared: a layer's output is then its
norm's (or its fused residual add's) output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LayerError:
    node: str
    kernel: str
    tensor: str
    dtype: str
    sqnr_db: float


@dataclass
class QualityReport:
    layers: list[LayerError] = field(default_factory=list)
    psnr_db: list[float] = field(default_factory=list)       # per feed
    kept_float: list[str] = field(default_factory=list)
    target_db: float | None = None
    steps: list[str] = field(default_factory=list)           # what --min-psnr did

    @property
    def min_psnr_db(self) -> float:
        return min(self.psnr_db) if self.psnr_db else float("nan")

    def as_dict(self) -> dict:
        return {"psnr_db": [round(p, 2) for p in self.psnr_db],
                "min_psnr_db": round(self.min_psnr_db, 2), "target_db": self.target_db,
                "kept_float": self.kept_float, "steps": self.steps,
                "layers": [{"node": e.node, "kernel": e.kernel, "tensor": e.tensor,
                            "dtype": e.dtype, "sqnr_db": round(e.sqnr_db, 2)}
                           for e in self.layers]}

    def text(self, layers: bool = True) -> str:
        return format_report(self.as_dict(), layers)


def format_report(d: dict, layers: bool = True) -> str:
    """Text of a report (``QualityReport.as_dict()``, as stored in a plan's provenance)."""
    psnr = d["psnr_db"]
    lines = ["int8 quality against the float plan:",
             "  end-to-end PSNR per image: " + ", ".join(f"{p:.1f}" for p in psnr)
             + f" dB (min {d['min_psnr_db']:.1f})"]
    if d.get("target_db") is not None:
        met = d["min_psnr_db"] >= d["target_db"]
        lines.append(f"  target {d['target_db']:.1f} dB: {'met' if met else 'NOT met'}")
    lines += [f"  {s}" for s in d.get("steps", [])]
    lines.append(f"  kept in float: {', '.join(d.get('kept_float', [])) or 'none'}")
    if layers:
        lines.append("  per-layer SQNR (dB) of each int8-plan step's output:")
        for e in d["layers"]:
            lines.append(f"    {e['sqnr_db']:6.1f}  {e['dtype']:<7} {e['kernel']:<36} {e['node']}")
    return "\n".join(lines)


def psnr_db(f: np.ndarray, q: np.ndarray) -> float:
    """PSNR of ``q`` against ``f`` (module docstring: peak 1 for images in [0, 1])."""
    f = f.astype(np.float64)
    peak = 1.0 if f.size and f.min() >= 0 and f.max() <= 1 else float(np.ptp(f)) or 1.0
    mse = float(np.mean((f - q.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)
