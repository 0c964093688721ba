"""The CPU a lowering compiles for: its vector registers, for choices the runtime cannot undo.

A kernel id's rows are refit to the running CPU at load, but the channel width NR of a conv
tile is baked into the packed weights. ``lower_graph(graph, registers)`` lowers for the target's
registers (``mobile_engine/targets.py``; default: this machine's) and the conv lowerings ask
``igemm_tile`` here.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from kernels import config
from kernels import f32_conv2d as igemm

_REGISTERS: ContextVar[tuple[int, int] | None] = ContextVar("registers", default=None)


@contextmanager
def compiling_for(registers: tuple[int, int] | None):
    """Lower for a CPU with ``registers`` (lanes, count) inside the block; None: this one."""
    token = _REGISTERS.set(registers)
    try:
        yield
    finally:
        _REGISTERS.reset(token)


def registers() -> tuple[int, int]:
    return _REGISTERS.get() or config.vector_registers()


def igemm_tile(cog: int) -> tuple[int, int]:
    """(MR, NR) of the fp32 igemm conv for ``cog`` output channels per group on the target: the
    fewest padded lanes, then the most FMAs per register load of the tile as the target fits it
    (``rows x vectors / (rows + vectors)``: each reduction step loads one broadcast per row and
    one weight vector per vector of NR), wider on ties. MR is the id's (AVX-512's) row count.

    NOTE: on AVX-512 this is ``igemm.choose_tile`` (64 and 32 channels hold 4 and 8 rows in 32
    zmm); with 16 ymm (AVX2) a 64-channel tile fits 1 row: the 128->128 3x3 conv at 64x64
    compiled for Haswell ran 54 GFLOP/s as 1x64, 88 as 2x32 and 92 as 6x16 (Zen 4, 1 thread,
    CPU time, load 4), so narrow targets get 16-channel tiles. The int8 convs keep AVX-512's
    widths: their portable variant compiled for Haswell ran 15.9, 15.9 and 14.7 GOP/s as 1x64,
    2x32 and 6x16 (load 2-3).
    """
    lanes, count = regs = registers()

    def cost(nr: int):
        rows = min(config.fit_rows(igemm.TILES[nr], nr, regs), igemm.PIXEL_POINTERS)
        vectors = -(-nr // lanes)
        return -(-cog // nr) * nr, -rows * vectors / (rows + vectors), -nr

    nr = min(igemm.TILES, key=cost)
    return igemm.TILES[nr], nr
