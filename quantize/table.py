"""The quant table: per-tensor calibrated ranges, the artefact between calibration and compile.

JSON (``QuantTable.save`` / ``QuantTable.load``)::

    {"format": "mobile-engine-quant-table", "version": 1,
     "meta": {"observer": "percentile", "images": 8, "source_sha256": "...", ...},
     "tensors": {"<IR tensor name>": {"lo": -0.91, "hi": 3.2, "min": -1.4, "max": 5.0,
                                     "on_255_grid": false, "producer": "<node name>"}, ...},
     "equalize": {"<IR tensor name>": [D_0, D_1, ...], ...}}

Names are those of the optimised float IR (``mobile_engine.passes.pipeline.optimize``), the same
for every input size. ``equalize`` holds the per-channel factors of ``quantize/equalize.py``;
the ranges are those of the equalized graph. ``params(name)`` gives a tensor's uint8 QuantParams: exactly (1/255, 0) for
8-bit image data in 0..1 (every calibration value k/255), else ``observers.uint8_params(lo, hi)``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mobile_engine.errors import EngineError
from mobile_engine.ir.dtypes import QuantParams
from quantize.observers import uint8_params

FORMAT = "mobile-engine-quant-table"
VERSION = 1
IMAGE_PARAMS = QuantParams((1.0 / 255.0,), (0,))


class QuantTableError(EngineError):
    """A quant table that is unreadable, of another version, or lacks a tensor."""


@dataclass
class TableEntry:
    lo: float                 # the observer's range
    hi: float
    min: float                # what calibration saw
    max: float
    on_255_grid: bool = False
    producer: str = ""

    @property
    def params(self) -> QuantParams:
        return IMAGE_PARAMS if self.on_255_grid else uint8_params(self.lo, self.hi)


@dataclass
class QuantTable:
    tensors: dict[str, TableEntry] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    equalize: dict[str, list[float]] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def params(self, name: str) -> QuantParams:
        try:
            return self.tensors[name].params
        except KeyError:
            raise QuantTableError(f"quant table has no range for tensor {name!r} (calibrated on "
                                  f"another model or pass pipeline?); it has "
                                  f"{len(self.tensors)} tensors") from None

    # --- JSON ------------------------------------------------------------------------------
    def to_json(self) -> str:
        doc = {"format": FORMAT, "version": VERSION, "meta": self.meta,
               "tensors": {k: asdict(v) for k, v in self.tensors.items()},
               "equalize": {k: [float(x) for x in v] for k, v in self.equalize.items()}}
        return json.dumps(doc, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "quant table") -> "QuantTable":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuantTableError(f"{where}: not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise QuantTableError(f"{where}: not a {FORMAT} file")
        if doc.get("version") != VERSION:
            raise QuantTableError(f"{where}: version {doc.get('version')!r}; this engine reads "
                                  f"version {VERSION}")
        tensors = {}
        for name, e in (doc.get("tensors") or {}).items():
            try:
                entry = TableEntry(float(e["lo"]), float(e["hi"]), float(e["min"]),
                                   float(e["max"]), bool(e.get("on_255_grid", False)),
                                   str(e.get("producer", "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise QuantTableError(f"{where}: tensor {name!r}: bad entry ({exc})") from None
            if not all(math.isfinite(v) for v in (entry.lo, entry.hi)) or entry.lo > entry.hi:
                raise QuantTableError(f"{where}: tensor {name!r}: range [{entry.lo}, "
                                      f"{entry.hi}] is not finite and ordered")
            tensors[name] = entry
        equalize = {}
        for name, d in (doc.get("equalize") or {}).items():
            try:
                d = [float(x) for x in d]
            except (TypeError, ValueError):
                d = []
            if not d or not all(math.isfinite(x) and x > 0 for x in d):
                raise QuantTableError(f"{where}: equalize[{name!r}] must be a list of positive "
                                      f"numbers")
            equalize[name] = d
        return cls(tensors, dict(doc.get("meta") or {}), equalize)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path) -> "QuantTable":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise QuantTableError(f"{path}: cannot read quant table: {exc}") from None
        return cls.from_json(text, str(path))


def as_table(table) -> QuantTable:
    """A QuantTable from a QuantTable or a path to its JSON."""
    if isinstance(table, QuantTable):
        return table
    if isinstance(table, (str, Path)):
        return QuantTable.load(table)
    raise QuantTableError(f"expected a QuantTable or a path to one, got {type(table).__name__}")
