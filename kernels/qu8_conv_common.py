"""Shared machinery of the qu8 conv kernels (igemm: ``qu8_conv2d.py``, kdot16:
``qu8_conv2d_kdot.py``): lane and tile constants, ISA variants, the per-row tile regularity and
address helpers inlined into both kernel bodies, and the dispatcher factory."""
from __future__ import annotations


import numpy as np

from kernels import config
from kernels.f32_norm import vshift_stats
from kernels.intrinsics import (DOT_PORTABLE, DOT_SDOT, DOT_SDOT_EMULATED, DOT_VNNI)

F32 = np.float32

U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code
VL = 16             # int32 lanes of one accumulator vector (a zmm register)
MAXT = 1024         # NOTE: (kernel row, word) pairs a fused regular tile can list
ISAS = {"portable": DOT_PORTABLE, "vnni": DOT_VNNI, "sdot": DOT_SDOT}

# NOTE: "sdot_emulated" runs the sdot variant's arithmetic ((x - 128) * w plus a 128 * sum(w)
# correction) in portable vector IR, so x86 tests cover the aarch64 variant's kernel logic.
_ISA_CODES = {**ISAS, "sdot_emulated": DOT_SDOT_EMULATED}
EPILOGUES = ("requant", "fp32out")

# Compile without fast-math: rint(f32(acc) * m) must not become a fused or reassociated op.
_FLAGS = {"fastmath": False}
MAXTILES = 1024     # NOTE: tiles per output row whose regularity is listed once per call

# NOTE: the statistics epilogue sums (y - y[row, 0]) in float32 over at most this many pixels
# before adding into float64 (per tile it cost ~30% of the 9x9 3->32 conv; ~1e-6 relative)
STAT_PIXELS = 32
IRREGULAR = -(1 << 62)

@config.jit(inline="always")
def tile_step(colmap, ow0, mr, ow_, kw_):
    """Column step between the MR pixels of the tile at ``ow0`` when it is regular (every
    pixel's KW taps are adjacent columns, the pixels' first columns evenly spaced), else
    IRREGULAR."""
    if ow0 + mr > ow_:
        return IRREGULAR
    c0 = colmap[ow0, 0]
    dcol = colmap[ow0 + 1, 0] - c0 if mr > 1 else 1
    for m in range(mr):
        c = colmap[ow0 + m, 0]
        if c < 0 or c != c0 + m * dcol:
            return IRREGULAR
        for kw in range(1, kw_):
            if colmap[ow0 + m, kw] != c + kw:
                return IRREGULAR
    return dcol

@config.jit(inline="always")
def list_tiles(tsteps, colmap, mr, ow_, kw_):
    """Fill ``tsteps`` with every tile's ``tile_step`` (once per call); False when the row has
    more than MAXTILES tiles (then each tile checks itself)."""
    listed = (ow_ + mr - 1) // mr <= MAXTILES
    if listed:
        for ti in range((ow_ + mr - 1) // mr):
            tsteps[ti] = tile_step(colmap, ti * mr, mr, ow_, kw_)
    return listed

@config.jit(inline="always")
def addresses(x, zrow, wtap, wrun):
    """Raw addresses the kernels read through: (x, one past x's end, the zero-point row, the
    per-tap weights, the per-row weights)."""
    xbase = np.int64(x.ctypes.data)
    return (xbase, xbase + x.size, np.int64(zrow.ctypes.data), np.int64(wtap.ctypes.data),
            np.int64(wrun.ctypes.data))

@config.jit(inline="always")
def row_runs(toff, twof, rowmap, oh, rbase, rstride, kh_, qr, width, wbytes):
    """The fused path's table of one output row: for every valid kernel row kh and run word q,
    ``toff`` = input offset ``rbase + r * rstride + width * q`` and ``twof`` = packed weight
    offset ``(kh * qr + q) * wbytes``. Returns (entries, one past the highest byte read)."""
    nt, maxoff = 0, 0
    for kh in range(kh_):
        r = rowmap[oh, kh]
        if r >= 0:
            roff = rbase + r * rstride
            for q in range(qr):
                toff[nt] = roff + width * q
                twof[nt] = (kh * qr + q) * wbytes
                nt += 1
            maxoff = max(maxoff, roff + width * qr)
    return nt, maxoff

@config.jit(inline="always")
def tile_stats(of, ob, ncv, nvec, first, sh, rs, rq):
    """Accumulate one stored output pixel (``of[ob:ob + ncv]``, float32) into the row's shifted
    sums: ``d = y - sh``, ``rs += d``, ``rq += d * d``; the row's first pixel (``first``) sets
    the shift ``sh``. Returns False (the next pixel is not the first)."""
    if first:
        for j in range(ncv):
            sh[j] = of[U64(ob + j)]
    for v in range(nvec):
        vshift_stats(rs, rq, v * VL, of, ob + v * VL, sh, VL)
    for j in range(nvec * VL, ncv):
        d = of[U64(ob + j)] - sh[j]
        rs[j] += d
        rq[j] += d * d
    return False

def host_isa(features: set[str] | None = None) -> str:
    """The best dot-product variant for this CPU (or for a CPU with LLVM ``features``, a
    compile target's): "vnni", "sdot" or "portable"."""
    if config.has_avx512_vnni(features):
        return "vnni"
    if config.has_dotprod(features):
        return "sdot"
    return "portable"

def _dispatcher(source, isa: str, epilogue: str, parallel: bool, cache: bool):
    """Numba dispatcher of ``source(ISA code, epilogue index, parallel)`` (``_FLAGS``)."""
    flags = dict(_FLAGS) if cache else dict(_FLAGS, cache=False)
    deco = config.pjit if parallel else config.jit
    return deco(source(_ISA_CODES[isa], EPILOGUES.index(epilogue), parallel), **flags)

