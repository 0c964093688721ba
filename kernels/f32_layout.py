"""Data-movement kernels for every IR dtype: pad, concat, transpose, slice, gather, copy, cast.

Copying kernels never look at values, so they run on raw bytes viewed as *lanes*: ``uint32``
(kernel id prefix ``x32``) when every contiguous block they move is a multiple of 4 bytes, else
``uint8`` (``x8``). An element wider than a lane (int64) is several lanes; a contiguous block of
elements (the channels of an NHWC pixel, a run of whole rows) is folded into the innermost lane
axis. Two machine-code signatures per kernel (and per variant) serve every dtype.

All shape logic runs at compile time in the ``*_plan`` functions below (plain numpy); kernels
only follow the tables they produce:

- pad:       ``pad_plan``: [rows, cols, block] views, a source row per output row and a source
             column per output column (-1 = the constant), the longest contiguous column run
             copied as one flat block (the interior of an NHWC row is one memcpy).
- transpose, slice: ``strided_plan``: the output as up to 6 (count, input stride) axes plus a
             contiguous block, axes of size 1 dropped and mergeable axes merged. A plan that is a
             batched 2-D transpose of single elements (NHWC<->NCHW) runs a kernel specialised
             for the channel count when it is at most 8 (the RGB image), else 16x16 tiles.
- concat:    ``[outer, inner_i]`` views of each part copied into column ``offset`` of
             ``[outer, total]``.
- gather:    ``[outer, D, inner]`` -> ``[outer, K, inner]`` rows picked by an index vector.

Layout contract: every array C-contiguous; outputs never alias inputs; tables int64 (runtime
gather indices int32 or int64, negative allowed).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels.config import jit, pjit

LANES = {4: np.uint32, 1: np.uint8}
LANE_PREFIX = {4: "x32", 1: "x8"}
MAX_RANK = 6
# NOTE: runs are copied between slice views indexed from 0: ``out[r, offset + j]`` with a
# run-time offset keeps Numba's negative-index wraparound in the loop and LLVM does not
# vectorise it (concat of 128 into 256 lanes over 3136 rows: 0.30 ms, with views 0.054 ms).
# NOTE: lanes per parallel task of the flat copy: 64 KiB per chunk.
COPY_CHUNK = 1 << 14
# NOTE: 16x16 tiles of 4-byte lanes: one 64-byte line per tile row on both sides.
TILE = 16


def lane_bytes(*block_bytes: int) -> int:
    """Widest lane (4 or 1 bytes) dividing every contiguous block (and offset) in bytes."""
    return 4 if all(int(b) % 4 == 0 for b in block_bytes) else 1


def as_lanes(a: np.ndarray, shape, lane: int) -> np.ndarray:
    """``a`` (C-contiguous) reshaped to ``shape`` elements, last axis viewed as lanes. No copy."""
    return a.reshape(tuple(int(d) for d in shape)).view(LANES[lane])


# --------------------------------------------------------------------------------------------
# copy_bytes: out = x, flat.
def _copy(loop):
    def copy_bytes(x1, out1):
        """x1, out1: lanes[n] C-contiguous."""
        n = out1.shape[0]
        for c in loop((n + COPY_CHUNK - 1) // COPY_CHUNK):
            lo = c * COPY_CHUNK
            hi = min(lo + COPY_CHUNK, n)
            for i in range(lo, hi):
                out1[i] = x1[i]
    return copy_bytes


copy_serial, copy_parallel = jit(_copy(range)), pjit(_copy(prange))


# --------------------------------------------------------------------------------------------
# pad: one kernel for every rank and mode, driven by source index tables.
def _pad(loop):
    def pad_rows(x2, out2, bl, row_src, col_src, fill, run_lo, run_hi, run_src):
        """Padded copy of rows of blocks.

        x2: lanes[R_in, W_in * bl]; out2: lanes[R_out, W_out * bl]; bl lanes per block;
        row_src: int64[R_out] source row or -1 (constant row); col_src: int64[W_out] source
        block or -1 (constant block); fill: lanes[bl] one block of the constant;
        columns [run_lo, run_hi) come from the contiguous blocks starting at run_src.
        """
        rows = out2.shape[0]
        width = col_src.shape[0]
        n_run = (run_hi - run_lo) * bl
        d_run, s_run = run_lo * bl, run_src * bl
        for r in loop(rows):
            s = row_src[r]
            if s < 0:
                for w in range(width):
                    for b in range(bl):
                        out2[r, w * bl + b] = fill[b]
                continue
            dst = out2[r, d_run:d_run + n_run]           # interior: one flat copy
            src = x2[s, s_run:s_run + n_run]
            for j in range(n_run):
                dst[j] = src[j]
            for k in range(width - (run_hi - run_lo)):      # the columns outside the run
                w = k if k < run_lo else k + run_hi - run_lo
                c = col_src[w]
                d = w * bl
                if c < 0:
                    for b in range(bl):
                        out2[r, d + b] = fill[b]
                else:
                    c *= bl
                    for b in range(bl):
                        out2[r, d + b] = x2[s, c + b]
    return pad_rows


pad_serial, pad_parallel = jit(_pad(range)), pjit(_pad(prange))


def axis_source_map(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """Source index of every output position of one padded axis (-1 = constant); numpy rules."""
    o = np.arange(size + before + after, dtype=np.int64) - before
    if mode == "constant":
        return np.where((o >= 0) & (o < size), o, -1)
    if size == 0:
        raise ValueError(f"{mode} padding of an empty axis")
    if mode == "edge":
        return np.clip(o, 0, size - 1)
    if mode == "reflect":
        if size == 1:
            return np.zeros_like(o)
        period = 2 * (size - 1)
        m = np.mod(o, period)
        return np.where(m >= size, period - m, m)
    raise ValueError(f"pad mode {mode!r}; supported: constant, reflect, edge")


class PadPlan(NamedTuple):
    in_view: tuple[int, int, int]     # [R_in, W_in, B] elements
    out_view: tuple[int, int, int]    # [R_out, W_out, B]
    row_src: np.ndarray               # int64[R_out]
    col_src: np.ndarray               # int64[W_out]
    run: tuple[int, int, int]         # (run_lo, run_hi, run_src) in blocks


def longest_run(col: np.ndarray) -> tuple[int, int, int]:
    """The longest [lo, hi) where col[lo:hi] is src, src+1, ... (all >= 0): (lo, hi, src)."""
    if col.size == 0 or (col < 0).all():
        return 0, 0, 0
    ok = col >= 0
    cont = ok[1:] & ok[:-1] & (col[1:] == col[:-1] + 1)
    starts = np.concatenate([[0], np.flatnonzero(~cont) + 1])
    ends = np.concatenate([starts[1:], [col.size]])
    length = np.where(ok[starts], ends - starts, 0)
    k = int(np.argmax(length))
    return int(starts[k]), int(ends[k]), int(col[starts[k]])


def pad_plan(shape, pads, mode: str) -> PadPlan | None:
    """Tables of ``pad_rows`` for padding ``shape`` by ONNX ``pads``; None when nothing pads."""
    r = len(shape)
    before, after = list(pads[:r]), list(pads[r:])
    padded = [i for i in range(r) if before[i] or after[i]]
    if not padded:
        return None
    last = padded[-1]
    out = [d + before[i] + after[i] for i, d in enumerate(shape)]
    block = math.prod(shape[last + 1:])
    maps = [axis_source_map(shape[i], before[i], after[i], mode) for i in range(last + 1)]
    rows = np.zeros(1, np.int64)
    for i in range(last):
        m = maps[i]
        t = rows[:, None] * shape[i] + m[None, :]
        t[(rows[:, None] < 0) | (m[None, :] < 0)] = -1
        rows = t.ravel()
    return PadPlan((math.prod(shape[:last]), shape[last], block),
                   (math.prod(out[:last]), out[last], block),
                   np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(maps[last]),
                   longest_run(maps[last]))


def fill_block(value: float, dtype, block: int, lane: int) -> np.ndarray:
    """``block`` elements of ``value`` in ``dtype`` as lanes (the constant of a pad)."""
    return np.full(block, value).astype(dtype).view(LANES[lane])


# --------------------------------------------------------------------------------------------
# concat: each part is a column band of the output.
def _concat(loop):
    def concat_part(x2, out2, offset):
        """x2: lanes[outer, inner_i]; out2: lanes[outer, total]; writes out2[:, offset:+inner_i]."""
        rows, inner = x2.shape
        for r in loop(rows):
            dst = out2[r, offset:offset + inner]
            src = x2[r]
            for j in range(inner):
                dst[j] = src[j]
    return concat_part


concat_serial, concat_parallel = jit(_concat(range)), pjit(_concat(prange))


# --------------------------------------------------------------------------------------------
# strided copy: transpose and slice.
def _strided(loop):
    def strided_copy(x1, out1, counts, strides, base, bl):
        """out1 (flat, C order over ``counts``, blocks of ``bl`` lanes) from x1 (flat lanes).

        counts, strides: int64[6] output axes (outermost first) and their input strides in
        lanes; the block at output index (i0..i5) starts at x1[base + sum(i_k * strides_k)].
        """
        o0, o1, o2, o3, o4, o5 = counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]
        s0, s1, s2, s3, s4, s5 = (strides[0], strides[1], strides[2], strides[3], strides[4],
                                  strides[5])
        rows = o0 * o1 * o2 * o3 * o4
        for r in loop(rows):
            i4 = r % o4
            q4 = r // o4
            i3 = q4 % o3
            q3 = q4 // o3
            i2 = q3 % o2
            q2 = q3 // o2
            i1 = q2 % o1
            i0 = q2 // o1
            src = base + i0 * s0 + i1 * s1 + i2 * s2 + i3 * s3 + i4 * s4
            dst = r * o5 * bl
            if bl == 1:
                for i5 in range(o5):
                    out1[dst + i5] = x1[src + i5 * s5]
            else:
                for i5 in range(o5):
                    a = src + i5 * s5
                    d = dst + i5 * bl
                    to, fro = out1[d:d + bl], x1[a:a + bl]
                    for j in range(bl):
                        to[j] = fro[j]
    return strided_copy


strided_serial, strided_parallel = jit(_strided(range)), pjit(_strided(prange))


def _tiled(loop):
    def transpose_tiled(x3, out3):
        """out3[n, s, r] = x3[n, r, s]; x3: lanes[nb, R, S]; out3: lanes[nb, S, R]; 16x16 tiles."""
        nb, rr, ss = x3.shape
        n_s = (ss + TILE - 1) // TILE
        for t in loop(nb * n_s):
            n = t // n_s
            s0 = (t % n_s) * TILE
            s1 = min(s0 + TILE, ss)
            for r0 in range(0, rr, TILE):
                r1 = min(r0 + TILE, rr)
                for s in range(s0, s1):
                    for r in range(r0, r1):
                        out3[n, s, r] = x3[n, r, s]
    return transpose_tiled


tiled_serial, tiled_parallel = jit(_tiled(range)), pjit(_tiled(prange))


# Small-channel transposes (the RGB image at a model's input and output): with the channel count
# a compile-time constant, LLVM unrolls it and vectorises the pixel loop with interleaved loads
# or stores (measured 5-8x faster than the tiled loop and numpy on 480x640x3).
SMALL_MAX = 8
# NOTE: pixels per parallel task of the small-channel transposes.
SMALL_CHUNK = 4096


def _small(k, interleave, loop):
    if interleave:
        def transpose_nchw_to_nhwc(x3, out3):
            """out3[n, s, c] = x3[n, c, s]; x3: lanes[nb, k, S]; out3: lanes[nb, S, k]."""
            nb, S = x3.shape[0], x3.shape[2]
            chunks = (S + SMALL_CHUNK - 1) // SMALL_CHUNK
            for t in loop(nb * chunks):
                n = t // chunks
                s0 = (t % chunks) * SMALL_CHUNK
                for s in range(s0, min(s0 + SMALL_CHUNK, S)):
                    for c in range(k):
                        out3[n, s, c] = x3[n, c, s]
        return transpose_nchw_to_nhwc

    def transpose_nhwc_to_nchw(x3, out3):
        """out3[n, c, s] = x3[n, s, c]; x3: lanes[nb, S, k]; out3: lanes[nb, k, S]."""
        nb, S = x3.shape[0], x3.shape[1]
        chunks = (S + SMALL_CHUNK - 1) // SMALL_CHUNK
        for t in loop(nb * chunks):
            n = t // chunks
            s0 = (t % chunks) * SMALL_CHUNK
            s1 = min(s0 + SMALL_CHUNK, S)
            for c in range(k):
                for s in range(s0, s1):
                    out3[n, c, s] = x3[n, s, c]
    return transpose_nhwc_to_nchw


_SMALL_KERNELS: dict = {}


def small_transpose(k: int, interleave: bool, parallel: bool):
    """The transpose kernel specialised for ``k`` channels (compiled on first use).
    interleave: [nb, k, S] -> [nb, S, k] (NCHW -> NHWC), else [nb, S, k] -> [nb, k, S]."""
    key = (int(k), bool(interleave), bool(parallel))
    if key not in _SMALL_KERNELS:
        if not 1 <= k <= SMALL_MAX:
            raise ValueError(f"small transpose of {k} channels; at most {SMALL_MAX}")
        _SMALL_KERNELS[key] = (pjit if parallel else jit)(
            _small(int(k), bool(interleave), prange if parallel else range))
    return _SMALL_KERNELS[key]


class StridedPlan(NamedTuple):
    counts: list[int]      # output axes, outermost first (<= 6), block excluded
    strides: list[int]     # input stride of each, in elements
    base: int              # input offset of the first element, in elements
    block: int             # contiguous elements moved per (counts) index


def strided_plan(counts, strides, base: int = 0) -> StridedPlan:
    """Simplify an output-order (count, input stride) description: drop size-1 axes, merge
    axes that are contiguous in both arrays, fold a unit-stride innermost axis into the block."""
    axes = [(int(c), int(s)) for c, s in zip(counts, strides) if c != 1]
    merged: list[tuple[int, int]] = []
    for c, s in axes:
        if merged and merged[-1][1] == c * s:
            pc, _ = merged.pop()
            merged.append((pc * c, s))                          # (a, c*s), (c, s) -> (a*c, s)
        else:
            merged.append((c, s))
    block = 1
    if merged and merged[-1][1] == 1:
        block = merged.pop()[0]
    if len(merged) > MAX_RANK:
        raise ValueError(f"copy needs {len(merged)} strided axes; at most {MAX_RANK}")
    return StridedPlan([c for c, _ in merged], [s for _, s in merged], int(base), block)


def transpose_plan(shape, perm) -> StridedPlan:
    in_strides = np.cumprod((list(shape[1:]) + [1])[::-1])[::-1] if shape else []
    return strided_plan([shape[p] for p in perm], [int(in_strides[p]) for p in perm])


def slice_plan(shape, index) -> StridedPlan:
    """``index``: a tuple of slices (``ir.shapes.slice_index``) on an array of ``shape``."""
    in_strides = np.cumprod((list(shape[1:]) + [1])[::-1])[::-1] if shape else []
    counts, strides, base = [], [], 0
    for d, st, sl in zip(shape, in_strides, index):
        start, stop, step = sl.indices(d)
        counts.append(len(range(start, stop, step)))
        strides.append(int(st) * step)
        base += start * int(st)
    return strided_plan(counts, strides, base)


def batched_transpose(p: StridedPlan) -> tuple[int, int, int] | None:
    """(nb, R, S) when ``p`` is out[nb, S, R] = x[nb, R, S] of single elements (NHWC<->NCHW)."""
    if p.block != 1 or p.base != 0:
        return None
    c, s = p.counts, p.strides
    if len(c) == 2 and s[0] == 1 and s[1] == c[0]:
        return 1, c[1], c[0]
    if len(c) == 3 and s[1] == 1 and s[2] == c[1] and s[0] == c[1] * c[2]:
        return c[0], c[2], c[1]
    return None


# --------------------------------------------------------------------------------------------
# gather: rows of an axis picked by an index vector.
def _gather(loop):
    def gather_rows(x3, out3, idx):
        """out3[o, k, :] = x3[o, idx[k], :]; x3: lanes[outer, D, inner]; out3: [outer, K, inner];
        idx: int[K], negative counts from the end; raises IndexError when out of range."""
        outer, d, inner = x3.shape
        k_n = idx.shape[0]
        for k in range(k_n):
            if idx[k] < -d or idx[k] >= d:
                raise IndexError("gather index out of range")
        for t in loop(outer * k_n):
            o = t // k_n
            k = t % k_n
            v = idx[k]
            if v < 0:
                v += d
            for j in range(inner):
                out3[o, k, j] = x3[o, v, j]
    return gather_rows


gather_serial, gather_parallel = jit(_gather(range)), pjit(_gather(prange))


# --------------------------------------------------------------------------------------------
def _ref_pad(x, pads, mode="constant", value=0.0):
    return ref.pad(x, pads, mode, value)


def _ref_transpose(x, perm):
    return ref.transpose(x, perm)


def _ref_slice(x, index):
    return np.ascontiguousarray(x[index])


def _ref_concat(parts, axis):
    return np.concatenate(parts, axis=axis)


def _ref_gather(x, idx, axis):
    return np.take(x, idx, axis=axis)


def _ref_cast(x, to):
    return ref.cast(x, to)
