"""Plan: what the compiler produces and the runtime runs; in memory or mapped from a .mplan file."""
from __future__ import annotations

from pathlib import Path

import warnings

import numpy as np

from mobile_engine.errors import PlanFormatError, PlanVersionWarning
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
        """The plan of a lowered graph (``planning.lower``): steps, tensors, blobs, manifest."""
        blobs: list[np.ndarray] = []
        steps = []
        for s in lowered.steps:
            refs = {}
            for key, arr in s.weights.items():
                refs[key] = len(blobs)
                blobs.append(np.array(arr, order="C", copy=True))
            step = {"name": s.name, "kernel": s.kernel, "inputs": list(s.inputs),
                    "outputs": list(s.outputs), "params": s.params, "weights": refs,
                    "flops": int(s.flops)}
            if s.scratch:
                step["scratch"] = list(s.scratch)
            steps.append(step)
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
        """Write the plan to ``path`` (one ``.mplan`` file: header, manifest, aligned weight
        blobs); returns the path."""
        path = Path(path)
        fmt.write(path, self.manifest, [memoryview(np.ascontiguousarray(b)).cast("B")
                                        for b in self.blobs])
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Map a ``.mplan`` file and check it (header, checksum, offsets, schema, shapes) before
        anything runs: ``PlanFormatError`` names what is wrong. A plan from a newer engine or a
        newer minor format loads with a ``PlanVersionWarning``."""
        path = Path(path)
        manifest, section, mapping = fmt.read(path)
        validate(manifest, len(section), path)
        _warn_if_newer_engine(manifest, path)
        blobs = []
        for b in manifest["blobs"]:
            arr = np.frombuffer(section, dtype=np.dtype(b["dtype"]).newbyteorder("<"),
                                count=int(np.prod(b["shape"], dtype=np.int64)), offset=b["offset"])
            blobs.append(arr.reshape(b["shape"]))
        return cls(manifest, blobs, path, mapping)

    # --- facts -------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[dict]:
        """The graph inputs: ``{"name", "shape", "dtype"}`` dicts, in the model's order."""
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict]:
        """The graph outputs, as ``inputs``."""
        return self.manifest["outputs"]

    @property
    def steps(self) -> list[dict]:
        """The kernel calls in order: name, kernel id, inputs, outputs, params, weights, flops."""
        return self.manifest["steps"]

    @property
    def arena_bytes(self) -> int:
        """Bytes of the one activation arena each Session allocates."""
        return self.manifest["arena_bytes"]

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weight blobs (mapped from the file, shared by sessions)."""
        return sum(b.nbytes for b in self.blobs)

    def __repr__(self) -> str:
        src = self.path or "in memory"
        return (f"<Plan {src}: {len(self.steps)} steps, arena {self.arena_bytes} B, "
                f"weights {self.weight_bytes} B>")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("+")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _warn_if_newer_engine(manifest: dict, path) -> None:
    from mobile_engine.version import __version__
    made_by = (manifest.get("provenance") or {}).get("engine_version")
    if made_by and _version_tuple(made_by) > _version_tuple(__version__):
        warnings.warn(f"{path}: compiled by mobile-engine {made_by}, newer than this "
                      f"{__version__}: it may rely on behaviour this engine lacks (upgrade, or "
                      f"compile the plan again with this engine)", PlanVersionWarning,
                      stacklevel=3)


def as_plan(plan_or_path) -> Plan:
    """``plan_or_path`` as a Plan: a Plan as it is, a path loaded with ``Plan.load``."""
    if isinstance(plan_or_path, Plan):
        return plan_or_path
    if isinstance(plan_or_path, (str, Path)):
        return Plan.load(plan_or_path)
    raise PlanFormatError(f"expected a Plan or a path to a .mplan file, got "
                          f"{type(plan_or_path).__name__}")
