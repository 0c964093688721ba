"""LiteRT as `bench`'s peer for ``.tflite`` models (``--compare litert``).

LiteRT's ``Interpreter`` (package ``ai-edge-litert``, XNNPACK delegate on by default) runs the
very file the plan was compiled from, with the same thread count, alternating run by run with
the engine as the onnxruntime peer does (``bench.py``). It is a test and benchmark dependency
only: compiling and running plans never imports it.

The session adapter gives the Interpreter onnxruntime's small surface that ``bench`` uses:
``run(None, feeds)`` -> list of outputs, ``get_inputs()`` / ``get_outputs()`` -> objects with
``name`` and ``shape``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mobile_engine.errors import EngineError, InputError

ENGINE = "litert"


def import_litert():
    """LiteRT's interpreter module, or an EngineError that says how to get it."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise EngineError("--compare litert: LiteRT is not installed in this Python "
                          f"({sys.executable}); install it with `pip install ai-edge-litert`, "
                          "or run without --compare to measure mobile-engine alone") from None
    return interpreter


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


class LitertSession:
    """One LiteRT Interpreter with its tensors allocated, called like an onnxruntime session."""

    def __init__(self, module, model: str, threads: int) -> None:
        try:
            self.it = module.Interpreter(model_path=model, num_threads=threads)
            self.it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"--compare litert: LiteRT cannot load {model}: "
                             f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        self._ins = self.it.get_input_details()
        self._outs = self.it.get_output_details()

    def get_inputs(self):
        return [SimpleNamespace(name=d["name"], shape=[int(s) for s in d["shape"]])
                for d in self._ins]

    def get_outputs(self):
        return [SimpleNamespace(name=d["name"], shape=[int(s) for s in d["shape"]])
                for d in self._outs]

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        for d in self._ins:
            self.it.set_tensor(d["index"], feeds[d["name"]])
        self.it.invoke()
        outs = self._outs if output_names is None else \
            [d for n in output_names for d in self._outs if d["name"] == n]
        # NOTE: get_tensor copies; the copy is part of what a LiteRT user pays per frame
        return [self.it.get_tensor(d["index"]) for d in outs]


@dataclass
class LitertPeer:
    """The LiteRT peer and the .tflite file it runs (same fields as ``bench.Peer``)."""
    module: object
    model: str
    sha256: str
    precision: str
    engine: str = ENGINE
    spinning: bool = False            # XNNPACK's pthreadpool: not configurable here

    @classmethod
    def open(cls, module, model: str) -> "LitertPeer":
        from mobile_engine.importers.tflite_base import is_tflite
        from mobile_engine.zoo import sha256
        path = Path(model)
        if not path.is_file():
            raise InputError(f"--peer-model {model}: no such file (give the .tflite model LiteRT "
                             f"should run)")
        if not is_tflite(path):
            raise InputError(f"--compare litert: {model} is not a TFLite model (LiteRT runs "
                             f".tflite files; use --compare onnxruntime for ONNX)")
        return cls(module, str(path), sha256(path), _precision(path))

    @property
    def version(self) -> str:
        return litert_version()

    def session(self, threads: int) -> LitertSession:
        return LitertSession(self.module, self.model, threads)

    def describe(self) -> dict:
        return {"engine": ENGINE, "model": self.model, "sha256": self.sha256,
                "precision": self.precision}


def _precision(path: Path) -> str:
    """"int8" when the model computes on 8-bit tensors (its activations are quantized), else
    "fp32" (fp16 or int8 weights that DEQUANTIZE turns into floats count as fp32)."""
    import tflite
    m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    g = m.Subgraphs(0)
    for k in range(g.InputsLength()):
        if g.Tensors(g.Inputs(k)).Type() in (3, 9):          # UINT8, INT8
            return "int8"
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        for k in range(op.OutputsLength()):
            if g.Tensors(op.Outputs(k)).Type() in (3, 9):
                return "int8"
    return "fp32"
