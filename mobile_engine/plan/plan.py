"""Plan: what the compiler produces and the runtime runs; in memory or mapped from a .mplan file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobile_engine.errors import PlanFormatError
from mobile_engine.plan import format as fmt
from mobile_engine.plan.schema import validate


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class Plan:
    """A manifest (plain JSON data) and read-only weight blobs.

    Attributes: ``manifest`` (dict), ``blobs`` (list of read-only arrays), ``path`` (the file it was
    loaded from, or None).
    """

    def __init__(self, manifest: dict, blobs: list[np.ndarray], path: Path | None = None,
                 mapping=None) -> None:
        self.manifest = manifest
        self.blobs = blobs
        self.path = path
        self._mapping = mapping        # keeps the file mapped while views exist

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def from_lowered(cls, lowered, inputs: list[dict], outputs: list[dict], provenance: dict,
                     passes: list[dict]) -> "Plan":
        blobs: list[np.ndarray] = []
        steps = []
        for s in lowered.steps:
            refs = {}
            for key, arr in s.weights.items():
                refs[key] = len(blobs)
                blobs.append(np.array(arr, order="C", copy=True))
            steps.append({"name": s.name, "kernel": s.kernel, "inputs": list(s.inputs),
                          "outputs": list(s.outputs), "params": s.params, "weights": refs,
                          "flops": int(s.flops)})
        outputs = [dict(o) for o in outputs]
        for o in outputs:
            if o["name"] in lowered.constant_outputs:
                o["blob"] = len(blobs)
                blobs.append(np.array(lowered.constant_outputs[o["name"]], order="C", copy=True))
        offsets = fmt.blob_layout([b.nbytes for b in blobs])
        manifest = {
            "format": [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR],
            "inputs": inputs,
            "outputs": outputs,
            "arena_bytes": lowered.arena_bytes,
            "tensors": {n: {"shape": list(t.shape), "dtype": t.dtype, "offset": t.offset,
                            "nbytes": t.nbytes} for n, t in lowered.tensors.items()},
            "steps": steps,
            "blobs": [{"offset": off, "nbytes": b.nbytes, "shape": list(b.shape),
                       "dtype": b.dtype.name} for off, b in zip(offsets, blobs)],
            "provenance": provenance,
            "passes": passes,
        }
        return cls(manifest, [_readonly(b) for b in blobs])

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        fmt.write(path, self.manifest, [memoryview(np.ascontiguousarray(b)).cast("B")
                                        for b in self.blobs])
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        manifest, section, mapping = fmt.read(path)
        validate(manifest, len(section), path)
        blobs = []
        for b in manifest["blobs"]:
            arr = np.frombuffer(section, dtype=np.dtype(b["dtype"]).newbyteorder("<"),
                                count=int(np.prod(b["shape"], dtype=np.int64)), offset=b["offset"])
            blobs.append(arr.reshape(b["shape"]))
        return cls(manifest, blobs, path, mapping)

    # --- facts -------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[dict]:
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict]:
        return self.manifest["outputs"]

    @property
    def steps(self) -> list[dict]:
        return self.manifest["steps"]

    @property
    def arena_bytes(self) -> int:
        return self.manifest["arena_bytes"]

    @property
    def weight_bytes(self) -> int:
        return sum(b.nbytes for b in self.blobs)

    def __repr__(self) -> str:
        src = self.path or "in memory"
        return (f"<Plan {src}: {len(self.steps)} steps, arena {self.arena_bytes} B, "
                f"weights {self.weight_bytes} B>")


def as_plan(plan_or_path) -> Plan:
    if isinstance(plan_or_path, Plan):
        return plan_or_path
    if isinstance(plan_or_path, (str, Path)):
        return Plan.load(plan_or_path)
    raise PlanFormatError(f"expected a Plan or a path to a .mplan file, got "
                          f"{type(plan_or_path).__name__}")
