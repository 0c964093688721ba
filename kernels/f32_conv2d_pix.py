"""fp32 convolution with SIMD lanes over output pixels: the kernel for few output channels.

``f32_conv2d_pix_{PX}x{CO}_minmax`` and ``f32_conv2d_pixup2_{PX}x{CO}_minmax``: a tile is PX
consecutive output pixels of one row times all CO (<= 8) output channels; a vector holds 16
pixels of one channel and every weight is a broadcast scalar, so 3 or 4 output channels waste no
lane (the channel-lane kernels waste 3/4 of each FMA on a 3x3 8->4 or 9x9 4->3 layer).

The 16 input values of one channel for 16 consecutive output pixels are contiguous only in a
planar row, so each input row a tile reads is first copied into a per-thread ring of planar,
padded rows (``rowbuf[slot, ci, j]``, slot = row % nslot); every input row is copied once per
thread block, and the copy absorbs padding, nearest upsampling and the NHWC -> planar
transposition. The input may be NHWC or planar (NCHW); the output likewise.

Compile time folds the indirection tables (``kernels/indirection.py``) into fewer taps:

- rows: the taps of one output row that read the same input row (nearest upsampling, reflect
  or edge padding at the borders) become one tap with the sum of their kernel rows:
  ``rowtap[oh, t]`` (input row or -1) and ``rowsel[oh, t]`` (a row set in the weight bank);
- columns (``pixup2``): with nearest 2x upsampling, output column ``2j + b`` (phase b) reads
  low-resolution columns ``j + d(b, kw)``; taps of one phase with the same ``d`` merge, so a 3x3
  kernel needs 2x2 per phase over a low-resolution row buffer (2.25x fewer FLOPs together with
  the rows). The decomposition is verified against ``colmap`` for every output column (reflect
  padding of the upsampled image becomes edge padding of the buffer); when it does not hold,
  the buffer holds upsampled columns and ``pix`` runs the plain taps. A transposed conv of column
  stride 2 decomposes the same way (its tables, ``f32_conv_transpose2d.transpose_tables``: a
  phase's output columns read low-resolution column ``j + d``, the taps that land on stuffed
  zeros carry no weight), and its rows are row taps like any other.

Math: ``out[oh, ow, co] = act(bias[co] + sum_{t, ci, tc} wbank[rowsel[oh,t], b, tc, ci, co] *
rowbuf[rowtap[oh,t], ci, ow // U + coloff[b, tc]] (+ residual))`` with ``b = ow % U``, which
equals the convolution because the bank holds the sums of the merged taps' weights.

Epilogue: bias, residual and the activation run over each finished output row (L1-resident).

Tile width: the kernel ids name AVX-512's (``tile``: about 16 accumulator zmm); on a machine
with fewer vector lanes the binder runs ``machine_tile`` (NEON: 16 pixels per tile).

NOTE: as in ``f32_conv2d.py`` the accumulators are a stack array touched only by vector
intrinsics at constant offsets (LLVM keeps them in zmm registers), checked by
tests/kernels/test_conv_asm.py.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import (F32, U64, VL, activate_span, activation_params, conv_tables,
                                readonly)
from kernels.intrinsics import stack_array, vcopy, vfill, vfma

MAX_CO = 8          # NOTE: more output channels fill the channel-lane igemm tiles well
MAX_NVX = 4         # vectors per channel and phase in a tile: 64 pixels
NCHW, NHWC = 1, 0   # layout flags of the kernel's in_nchw / out_nchw


def tile(co: int, phases: int) -> int:
    """NVX (vectors of 16 pixels per channel and phase): about 16 accumulator vectors."""
    return max(1, min(MAX_NVX, VL // (phases * co)))


def machine_tile(co: int, phases: int) -> int:
    """NVX on this machine: ``tile`` (AVX-512's, named in the kernel id) or fewer, so that each
    unit's ``phases * co`` accumulator vectors and its input vector fit the register file
    (``config.fit_rows``; on NEON one unit, 16 pixels, per tile)."""
    return config.fit_rows(tile(co, phases), (phases * co + 1) * VL)


def kernel_id(co: int, phases: int) -> str:
    px = VL * tile(co, phases)
    return f"f32_conv2d_pix{'up2' if phases == 2 else ''}_{px}x{co}_minmax"


# --- compile time: folded row and column taps, the weight bank ------------------------------
def row_plan(rowmap: np.ndarray):
    """(rowtap i32[OH, T], rowsel i32[OH, T], row sets (tuples of kh), nslot) from ``rowmap``.

    Taps of one output row reading the same input row merge; ``nslot`` (the ring size) is the
    widest span of input rows one output row reads, so those rows never share a slot."""
    sets: dict[tuple[int, ...], int] = {}
    taps = []
    # NOTE: rows away from the borders repeat one pattern shifted: group each pattern (input
    # rows relative to the row's lowest, -1 for none) once; binders rebuild this per load
    rowmap = np.asarray(rowmap, np.int64)
    valid = rowmap >= 0
    top = np.iinfo(np.int64).max
    base = np.where(valid, rowmap, top).min(axis=1, initial=top)
    base = np.where(valid.any(axis=1), base, 0)
    rel = np.where(valid, rowmap - base[:, None], -1)
    patterns: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
    for b, key in zip(base.tolist(), map(tuple, rel.tolist())):
        groups = patterns.get(key)
        if groups is None:
            found: dict[int, list[int]] = {}
            for kh, r in enumerate(key):
                if r >= 0:
                    found.setdefault(r, []).append(kh)
            groups = patterns[key] = [(r, tuple(khs)) for r, khs in found.items()]
        taps.append([(b + r, sets.setdefault(khs, len(sets))) for r, khs in groups])
    nslot = max([1] + [max(key) + 1 for key in patterns])
    t = max(1, max(len(x) for x in taps))
    rowtap = np.array([[r for r, _ in row] + [-1] * (t - len(row)) for row in taps], np.int32)
    rowsel = np.array([[s for _, s in row] + [0] * (t - len(row)) for row in taps], np.int32)
    return rowtap.reshape(len(taps), t), rowsel.reshape(len(taps), t), list(sets), nslot


def column_plan(colmap: np.ndarray, upsample: int, dilation: int, px: int):
    """(phases U, coloff i32[U, TC], column sets [U][TC] of kw lists, bufsrc i32[WB]) or None.

    Output column ``ow = U * j + b`` reads buffer column ``j + coloff[b, tc]``; buffer column
    ``jb`` holds input column ``bufsrc[jb]`` (-1: zero). Tries U = 2 phases when the conv
    upsamples by 2, then U = 1 (buffer in upsampled coordinates); None when neither reproduces
    ``colmap`` exactly (e.g. a column stride > 1). The buffer serves tiles of any width up to
    ``px``: the last tile of width p ends before column ``ceil(oj / p) * p <= oj + px - 1``.

    A transposed conv of column stride 2 (``upsample`` 2, its zero-stuffing) has holes: taps a
    phase never reads (-1 in every interior column of that phase) carry no weight."""
    ow_, kw_ = colmap.shape
    colmap = np.asarray(colmap, np.int64)
    for u in ((2, 1) if upsample == 2 else (1,)):
        oj = -(-ow_ // u)
        hole = np.zeros((u, kw_), bool)                     # [U, KW] taps a phase never reads
        if u == 1:
            d = np.arange(kw_)[None, :] * dilation
        else:
            jm = oj // 2
            if u * jm + u - 1 >= ow_:
                continue
            dm = colmap[u * jm:u * jm + u]
            hole = dm < 0
            d = np.where(hole, 0, dm - jm)                  # [U, KW] low-res offsets
        pad = -int(d.min())
        width = oj + px - 1 + int(d.max()) + pad
        # output column ow = U * j + b reads buffer columns j + d[b] + pad, which must hold
        # colmap[ow]: every buffer column must be asked for one input column only
        ow = np.arange(ow_)
        taps = ~hole[ow % u]                                # [OW, KW]
        if np.any(colmap[~taps] >= 0):
            continue
        jb = ((ow // u)[:, None] + d[ow % u] + pad)[taps]
        want = colmap[taps]
        order = np.lexsort((want, jb))
        jb, want = jb[order], want[order]
        same = jb[1:] == jb[:-1]
        if np.any(same & (want[1:] != want[:-1])):
            continue
        src = np.full(width, -1, np.int64)
        src[jb] = want
        sets, offs = [], []
        for b in range(u):
            groups: dict[int, list[int]] = {}
            for kw in range(kw_):
                if not hole[b, kw]:
                    groups.setdefault(int(d[b, kw]) + pad, []).append(kw)
            offs.append(sorted(groups))
            sets.append([groups[o] for o in sorted(groups)])
        tc = max(1, max(len(o) for o in offs))
        coloff = np.zeros((u, tc), np.int32)
        for b in range(u):
            while len(offs[b]) < tc:              # a zero-weight tap keeps phases in step
                offs[b].append(offs[b][0] if offs[b] else pad)
                sets[b].append([])
            coloff[b] = offs[b]
        return u, coloff, sets, np.ascontiguousarray(src, np.int32)
    return None


def weight_bank(w: np.ndarray, row_sets, col_sets) -> np.ndarray:
    """f32[NW, U, TC, C, CO]: ``sum_{kh in row_sets[s]} sum_{kw in col_sets[b][t]} w[co, ci, kh,
    kw]`` (float64 sums, rounded once)."""
    co, c, kh, kw = w.shape
    u, tc = len(col_sets), len(col_sets[0])
    w64 = np.asarray(w, np.float64)
    bank = np.zeros((len(row_sets), u, tc, c, co), np.float64)
    for s, khs in enumerate(row_sets):
        wr = w64[:, :, list(khs)].sum(axis=2)             # [co, c, kw]
        for b in range(u):
            for t, kws in enumerate(col_sets[b]):
                if kws:
                    bank[s, b, t] = wr[:, :, kws].sum(axis=2).T
    return np.ascontiguousarray(bank, F32)


class PixPlan:
    """Everything the pix kernel needs besides the tensors, built once at compile time."""

    def __init__(self, w, rowmap, colmap, upsample: int = 1, dilation: int = 1):
        co = w.shape[0]
        self.rowtap, self.rowsel, row_sets, self.nslot = row_plan(rowmap)
        # NOTE: the buffer is wide enough for tiles of any width (16 to 64 pixels)
        found = column_plan(colmap, upsample, dilation, VL * MAX_NVX)
        if found is None:
            raise ValueError("columns do not decompose (column stride > 1?)")
        self.phases, self.coloff, col_sets, self.bufsrc = found
        self.nvx = machine_tile(co, self.phases)
        self.wbank = weight_bank(w, row_sets, col_sets)
        self.kernel = kernel_id(co, self.phases)

    def weights(self) -> dict:
        return dict(w=self.wbank, rowtap=self.rowtap, rowsel=self.rowsel, coloff=self.coloff,
                    bufsrc=self.bufsrc)


def applicable(co: int, group: int, stride_w: int, transposed: bool = False) -> bool:
    """Whether a conv (column stride ``stride_w``) or a transposed conv (``transposed``: its
    stride stuffs zeros, the two phases of ``pixup2``) runs this kernel."""
    return group == 1 and co <= MAX_CO and stride_w == (2 if transposed else 1)


# --- the kernel -------------------------------------------------------------------------------
def _pix_source(NVX: int, CO: int, U: int, parallel: bool):
    PX = VL * NVX
    NACC = U * CO * PX
    loop = numba.prange if parallel else range

    def f32_conv2d_pix(x, rowtap, rowsel, coloff, bufsrc, wbank, bias, residual, out, scratch,
                       tags, in_nchw, out_nchw, act, p0, p1, has_res):
        if in_nchw:
            n_, c_, h_, w_ = x.shape
        else:
            n_, h_, w_, c_ = x.shape
        if out_nchw:
            oh_, ow_ = out.shape[2], out.shape[3]
        else:
            oh_, ow_ = out.shape[1], out.shape[2]
        tr_, tc_, wb_ = rowtap.shape[1], coloff.shape[1], bufsrc.shape[0]
        nblk, nslot = tags.shape[0], tags.shape[1]
        oj_ = (ow_ + U - 1) // U
        xf = x.reshape(x.size)
        wf = wbank.reshape(wbank.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        # the longest run of buffer columns copying consecutive input columns (vector copy)
        jlo, jhi, shift = 0, 0, 0
        j = 0
        while j < wb_:
            if bufsrc[j] < 0:
                j += 1
                continue
            k = j + 1
            while k < wb_ and bufsrc[k] == bufsrc[k - 1] + 1:
                k += 1
            if k - j > jhi - jlo:
                jlo, jhi, shift = j, k, j - bufsrc[j]
            j = k
        rows = n_ * oh_
        per = (rows + nblk - 1) // nblk
        for blk in loop(nblk):
            acc = stack_array(NACC, np.float32)     # the register tile: constant offsets only
            tile = stack_array(NACC, np.float32)
            sb0 = blk * nslot * c_ * wb_
            for s in range(nslot):
                tags[blk, s] = -1
            for row in range(blk * per, min(rows, (blk + 1) * per)):
                b = row // oh_
                oh = row - b * oh_
                # copy the input rows of this output row into the ring (planar, padded)
                for t in range(tr_):
                    r = rowtap[oh, t]
                    if r < 0:
                        continue
                    slot = r % nslot
                    if tags[blk, slot] == b * h_ + r:
                        continue
                    tags[blk, slot] = b * h_ + r
                    sb = sb0 + slot * c_ * wb_
                    if in_nchw:
                        for ci in range(c_):
                            src = ((b * c_ + ci) * h_ + r) * w_
                            dst = sb + ci * wb_
                            for jj in range(wb_):
                                if jj < jlo or jj >= jhi:
                                    s = bufsrc[jj]
                                    scratch[U64(dst + jj)] = xf[U64(src + s)] if s >= 0 \
                                        else F32(0)
                            for jj in range(jlo, jhi):
                                scratch[U64(dst + jj)] = xf[U64(src + jj - shift)]
                    else:
                        src = (b * h_ + r) * w_
                        for jj in range(wb_):
                            s = bufsrc[jj]
                            if s >= 0:
                                p = (src + s) * c_
                                for ci in range(c_):
                                    scratch[U64(sb + ci * wb_ + jj)] = xf[U64(p + ci)]
                            else:
                                for ci in range(c_):
                                    scratch[U64(sb + ci * wb_ + jj)] = F32(0)
                for j0 in range(0, oj_, PX):
                    for v in range(U * CO * NVX):
                        vfill(acc, v * VL, F32(0), VL)
                    for t in range(tr_):
                        r = rowtap[oh, t]
                        if r < 0:
                            continue
                        sb = sb0 + (r % nslot) * c_ * wb_ + j0
                        wsel = rowsel[oh, t]
                        for ci in range(c_):
                            xb = sb + ci * wb_
                            for tc in range(tc_):
                                for ph in range(U):
                                    off = xb + coloff[ph, tc]
                                    wo = (((wsel * U + ph) * tc_ + tc) * c_ + ci) * CO
                                    for co in range(CO):
                                        wv = wf[U64(wo + co)]
                                        for v in range(NVX):
                                            vfma(acc, ((ph * CO + co) * NVX + v) * VL, wv,
                                                 scratch, off + v * VL, VL)
                    for v in range(U * CO * NVX):
                        vcopy(tile, v * VL, acc, v * VL, VL)
                    nj = min(PX, oj_ - j0)
                    if out_nchw:
                        for co in range(CO):
                            ob = ((b * CO + co) * oh_ + oh) * ow_ + U * j0
                            t0 = co * PX
                            if U == 1:
                                for l in range(nj):
                                    of[U64(ob + l)] = tile[t0 + l]
                            else:           # interleave the two phases: 2j, 2j + 1
                                t1 = (CO + co) * PX
                                both = min(nj, (ow_ - U * j0) // 2)
                                for l in range(both):
                                    of[U64(ob + 2 * l)] = tile[t0 + l]
                                    of[U64(ob + 2 * l + 1)] = tile[t1 + l]
                                for l in range(both, nj):
                                    if U * (j0 + l) < ow_:
                                        of[U64(ob + 2 * l)] = tile[t0 + l]
                    else:
                        ob = (b * oh_ + oh) * ow_
                        for l in range(nj):
                            for ph in range(U):
                                ow = U * (j0 + l) + ph
                                if ow < ow_:
                                    for co in range(CO):
                                        of[U64((ob + ow) * CO + co)] = tile[(ph * CO + co) * PX + l]
                # epilogue over the finished row: bias, residual, activation
                if out_nchw:
                    for co in range(CO):
                        ob = ((b * CO + co) * oh_ + oh) * ow_
                        bv = bias[co]
                        if has_res:
                            for i in range(ow_):
                                of[U64(ob + i)] += bv + rf[U64(ob + i)]
                        else:
                            for i in range(ow_):
                                of[U64(ob + i)] += bv
                        activate_span(of, ob, ow_, act, p0, p1)
                else:
                    ob = (b * oh_ + oh) * ow_ * CO
                    for i in range(ow_):
                        for co in range(CO):
                            of[U64(ob + i * CO + co)] += bias[co]
                    if has_res:
                        for i in range(ow_ * CO):
                            of[U64(ob + i)] += rf[U64(ob + i)]
                    activate_span(of, ob, ow_ * CO, act, p0, p1)

    return f32_conv2d_pix


@functools.lru_cache(maxsize=None)
def pix_kernel(nvx: int, co: int, phases: int, parallel: bool, cache: bool = True):
    """The Numba dispatcher of the pix kernel (memoised).

    Call ``fn(x, rowtap, rowsel, coloff, bufsrc, wbank, bias, residual, out, scratch, tags,
    in_nchw, out_nchw, act, p0, p1, has_res)``:
        x:        f32[N, H, W, C] (``in_nchw`` False) or f32[N, C, H, W], read-only, C-contiguous
        rowtap, rowsel: i32[OH, T]; coloff: i32[U, TC]; bufsrc: i32[WB]; wbank:
                  f32[NW, U, TC, C, co] (``PixPlan``), read-only
        bias:     f32[co] read-only; residual: like ``out`` (read when ``has_res``)
        out:      f32[N, OH, OW, co] (``out_nchw`` False) or f32[N, co, OH, OW]; may not
                  overlap x or residual's other elements
        scratch:  f32[nblk * nslot * C * WB] and tags: i64[nblk, nslot] (``scratch_for``);
                  nblk row blocks run in parallel
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_pix_source(nvx, co, phases, parallel), **flags)


def blocks_for(rows: int, parallel: bool) -> int:
    """Row blocks: one per thread would do, a few more balance a busy machine."""
    return max(1, min(rows, 8 if parallel else 1))


def scratch(nslot: int, channels: int, width: int, nblk: int):
    """(row ring f32[nblk * nslot * channels * width], tags i64[nblk, nslot]) for one step."""
    return (np.zeros(nblk * nslot * channels * width, F32), np.full((nblk, nslot), -1, np.int64))


def scratch_for(plan: PixPlan, channels: int, nblk: int):
    return scratch(plan.nslot, channels, plan.bufsrc.shape[0], nblk)


def conv2d(x, w, bias=None, residual=None, *, strides=(1, 1), dilations=(1, 1),
           pads=(0, 0, 0, 0), group=1, pad_mode="constant", upsample=1, activation_kind=0,
           act_params=(), in_nchw=False, out_nchw=False, parallel=None):
    """Convenience entry with ``kernels.reference.conv2d``'s signature (plans on every call).

    x: f32[N, H, W, C] (or [N, C, H, W] with ``in_nchw``); returns NHWC (or NCHW)."""
    x = np.ascontiguousarray(x, F32)
    w = np.asarray(w, F32)
    co = w.shape[0]
    if not applicable(co, group, strides[1]):
        raise ValueError(f"pix kernel: Co {co} <= {MAX_CO}, group 1 and column stride 1 only")
    xs = (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) if in_nchw else x.shape
    rowmap, colmap = conv_tables(xs, w.shape[2:], strides, dilations, pads, pad_mode, upsample)
    plan = PixPlan(w, rowmap, colmap, upsample, dilations[1])
    oh, ow = rowmap.shape[0], colmap.shape[0]
    out = np.empty((xs[0], co, oh, ow) if out_nchw else (xs[0], oh, ow, co), F32)
    if parallel is None:
        parallel = config.use_parallel(out.size * w[0].size // config.MAC_WORK)
    nblk = blocks_for(xs[0] * oh, parallel)
    scratch, tags = scratch_for(plan, xs[3], nblk)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    has_res = residual is not None
    res = readonly(np.ascontiguousarray(residual, F32) if has_res else out)
    p0, p1 = activation_params(activation_kind, act_params)
    fn = pix_kernel(plan.nvx, co, plan.phases, bool(parallel))
    ro = readonly
    fn(ro(x), ro(plan.rowtap), ro(plan.rowsel), ro(plan.coloff), ro(plan.bufsrc), ro(plan.wbank),
       ro(bias), res, out, scratch, tags, bool(in_nchw), bool(out_nchw), int(activation_kind),
       F32(p0), F32(p1), has_res)
    return out


# The numpy reference of the family's rows in kernels/table.py.
def _reference():
    from kernels import reference
    return reference.conv2d
