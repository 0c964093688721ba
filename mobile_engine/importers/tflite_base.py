"""The TFLite importer's registry and the context every per-operator import function receives
(the ONNX importer's ``Context``: emit, constant folding, naming; plus the TFLite operator's
options, index and subgraph for errors).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from mobile_engine.importers.onnx_base import Context

FILE_IDENTIFIER = b"TFL3"

# TFLite operator name ("CONV_2D", "CUSTOM:Convolution2DTransposeBias") -> import function.
IMPORTERS: dict = {}

# tflite.TensorType -> numpy dtype (the types a model's tensors can hold that we read)
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
                6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64}


def importer(*names: str):
    def register(fn):
        for n in names:
            IMPORTERS[n] = fn
        return fn
    return register


def supported_ops() -> list[str]:
    return sorted(IMPORTERS)


def is_tflite(model) -> bool:
    """Whether ``model`` (a path or bytes) is a TFLite flatbuffer (identifier at bytes 4..8)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model[4:8]) == FILE_IDENTIFIER
    if isinstance(model, (str, os.PathLike)):
        try:
            with open(model, "rb") as f:
                return f.read(8)[4:8] == FILE_IDENTIFIER
        except OSError:
            return False
    return False


@dataclass
class TFLContext(Context):
    """The ONNX importer's context (emit, constant folding, naming), for one TFLite operator."""
    op_name: str = ""
    index: int = 0
    subgraph: int = 0
    options: object = None                  # the builtin options table (None when absent)
    custom_options: bytes = b""
    output_shapes: list = field(default_factory=list)
    output_types: list = field(default_factory=list)
    tensors: list = field(default_factory=list)       # tflite.Tensor of each input (None: omitted)

    def where(self) -> str:
        return (f"operator {self.index} ({self.op_name}, output {self.name!r}) of subgraph "
                f"{self.subgraph}")

    def opts(self, cls):
        """The builtin options as ``cls`` (a tflite.*Options class); defaults when absent."""
        o = cls()
        if self.options is not None:
            o.Init(self.options.Bytes, self.options.Pos)
        else:                                   # NOTE: an empty table reads every default
            import flatbuffers
            b = flatbuffers.Builder(16)
            b.StartObject(0)
            b.Finish(b.EndObject())
            buf = b.Output()
            o.Init(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
        return o

    def out_shape(self, i: int = 0) -> tuple[int, ...]:
        return self.output_shapes[i]
