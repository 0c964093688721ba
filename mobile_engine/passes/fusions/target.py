"""What the kernel-fusion passes may ask about the kernels, without importing them.

The compiler passes an implementation (``mobile_engine/planning/target.py``, which knows the
kernel table); tests may pass their own.
"""
from __future__ import annotations

from typing import Protocol

from mobile_engine.ir.graph import Graph, Node


class KernelTarget(Protocol):
    def conv_kernel(self, c: int, co: int, group: int, kh: int, kw: int, stride_w: int) -> str:
        """The fp32 conv kernel family for this geometry: "dw", "pix", "kdot" or "igemm"."""

    def conv_winograd(self, conv: Node, graph: Graph) -> bool:
        """True when the fp32 ``conv`` lowers to the Winograd kernel (whose epilogue keeps no
        norm statistics: its norm stays a step of its own)."""

    def int8_conv_kernel(self, group: int, c: int, co: int, kh: int, kw: int) -> str:
        """The int8 conv kernel family for this geometry: "dw", "kdot" or "igemm"."""

    def int8_norm_fuses(self, norm: Node) -> bool:
        """True when the int8 conv + norm kernel can apply ``norm``'s activation."""

    def int8_norm_inputs(self, norm: Node, graph: Graph) -> list[str] | None:
        """The run-time inputs (after x) of ``norm``'s int8 norm step when that step can run
        inside an int8 conv's step, else None."""
