"""Element types of IR tensors and their numpy equivalents."""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from mobile_engine.errors import UnsupportedOperatorError


class DType(enum.Enum):
    FLOAT32 = "float32"
    INT64 = "int64"
    INT32 = "int32"
    UINT8 = "uint8"
    INT8 = "int8"
    BOOL = "bool"

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @classmethod
    def from_numpy(cls, dtype) -> "DType":
        name = np.dtype(dtype).name
        try:
            return cls(name)
        except ValueError:
            # NOTE: float64 constants from exporters are narrowed by the importer, never here.
            raise UnsupportedOperatorError(f"dtype {name} is not supported; supported: "
                                           f"{', '.join(d.value for d in cls)}") from None


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point); per-tensor or per ``axis``."""
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
