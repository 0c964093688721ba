"""fp32 depthwise convolution over NHWC (group == Ci, Co = multiplier * Ci).

``f32_dwconv2d_minmax``: output pixels read their taps through the indirection tables of
``kernels/indirection.py`` (any kernel size, stride, dilation, padding mode and nearest
upsampling). The regular columns of a row (every tap inside the input, input columns an
arithmetic progression: the interior of a zero-padded map) run in tiles of ``PIXELS`` pixels
along the row: per tap one vector of weights is loaded and multiplied into the tile's pixels,
one accumulator register per pixel, over one table of the output row shifted by each tile's
first column. The kernel variants of ``UNROLLED`` (3 or 5 taps per kernel row, stride 1 or 2:
``variant``) unroll a kernel row's taps, so the loop has a constant trip count and pixels that
read one input column share its load (Zen 4, one thread: a 56x56x96 3x3 map took 155 us with
the taps from the table, 111 us unrolled). The pixels left at a row's ends (borders, the last
few) run in tiles of ``PIXELS // 2`` whose inputs are gathered per pixel and tap (a padding tap
reads a zero buffer), as XNNPACK's indirection does; any other pixel lists its valid taps and
runs alone, in blocks of 64 channels (four independent chains).
Channels run in vectors of 16, 8 and 4 lanes (contiguous in NHWC: plain loads); the last
``Co % 4`` as the last 4 channels computed again (the same sums stored twice, so the residual may
not overlap the output). A map of fewer than 4 channels runs a scalar loop, and so does a channel
multiplier ``k > 1`` (output channel ``co`` reads input channel ``co // k``).

Epilogue (same pass): ``act(acc + bias[co] (+ residual))``; RELU and CLAMP on the registers,
other activations over each row part's outputs at its end.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import (F32, U64, VL, activate_span, activation_params, conv_tables,
                                epilogue_clamp, readonly)
from kernels.intrinsics import stack_array, vadd, vclamp, vcopy, vfill, vfma2

KERNEL_ID = "f32_dwconv2d_minmax"
NVB = 4                     # vectors per channel block of a single pixel (64 channels)
BLOCK = NVB * VL
# NOTE: output pixels per tile along a row (AVX-512; ``machine_pixels`` on other machines): each
# weight vector is loaded once per tap for all of them, and their accumulators are independent
# chains, where one pixel at a time waits on one FMA chain of KH * KW taps per vector.
PIXELS = 8
MAX_TAPS = 256              # NOTE: larger kernels run as a grouped igemm conv instead
# (taps per kernel row, column stride) of the kernel variants whose row of taps is unrolled;
# MediaPipe's and PP-OCR's depthwise convs are all of these
UNROLLED = ((3, 1), (3, 2), (5, 1), (5, 2))


def machine_pixels() -> int:
    """The pixels of a tile as compiled here: ``PIXELS`` accumulators of 16 lanes fit AVX-512's
    registers; fewer on AVX2 or NEON (``config.fit_rows``)."""
    return config.fit_rows(PIXELS, VL)


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Depthwise weights ``[Co, 1, KH, KW]`` -> ``f32[KH, KW, Co]`` (channels contiguous)."""
    if w.shape[1] != 1:
        raise ValueError(f"depthwise weights need shape [Co, 1, KH, KW], got {w.shape}")
    return np.ascontiguousarray(np.asarray(w, F32)[:, 0].transpose(1, 2, 0))


def _tile(pixels: int, lanes: int, kw: int, stride: int):
    """``lanes`` channels from ``c0`` of ``pixels`` output pixels (outputs at ``ob + p * ostep``):
    the taps, bias, residual and clamp, in ``pixels`` vector registers. ``kw`` 0: ``nt`` table
    entries ``tb...`` are taps (inputs at ``tx[t] + xb + p * xs``, weights at ``tw[t]``);
    ``kw`` > 0: they are kernel rows whose ``kw`` taps are unrolled, the pixels ``stride``
    columns of ``xs`` floats apart (inputs at ``tx[t] + xb + (k + p * stride) * xs``, weights at
    ``tw[t] + k * ws``): the loop's trip count and its loads' offsets are constants, and pixels
    that read the same input column share one load; ``kw`` < 0: ``nt`` taps of weights
    ``tw[tb + t]`` gathered per pixel (inputs at ``ta[t * pixels + p]`` from ``xa``, a padding
    tap's at a zero buffer), for pixels at borders. Arrays by address (``xa``: x, ``wa``:
    packed weights, ``ba``: bias, ``ra``: residual, ``oa``: out): passing them costs reference
    counts per call (inlined: ``pixels``, ``lanes``, ``kw`` and ``stride`` are constants of the
    caller's code)."""
    def tile(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, c0, ob, ostep,
             has_res, lo_, hi_):
        for p in range(pixels):
            vfill(acc, p * lanes, F32(0), lanes)
        if kw < 0:
            for t in range(nt):
                wo = tw[tb + t] + c0
                for p in range(pixels):
                    vfma2(acc, p * lanes, xa, ta[t * pixels + p] + c0, wa, wo, lanes)
        for t in range(tb, tb + (nt if kw >= 0 else 0)):
            xo, wo = tx[t] + xb + c0, tw[t] + c0
            if kw == 0:
                for p in range(pixels):
                    vfma2(acc, p * lanes, xa, xo + p * xs, wa, wo, lanes)
            for k in range(kw):
                for p in range(pixels):
                    vfma2(acc, p * lanes, xa, xo + (k + p * stride) * xs, wa, wo + k * ws, lanes)
        for p in range(pixels):
            a, o = p * lanes, ob + p * ostep + c0
            vadd(acc, a, ba, c0, lanes)
            if has_res:
                vadd(acc, a, ra, o, lanes)
            vclamp(acc, a, lo_, hi_, lanes)
            vcopy(oa, o, acc, a, lanes)
    return config.jit(tile, inline="always")


def _tiles(pixels: int, kw: int = 0, stride: int = 1):
    """All channels of ``pixels`` pixels (``_tile``) in vectors of 16, 8 and 4 lanes (a single
    pixel first in blocks of ``BLOCK``: four independent chains), the last ``Co % 4`` by the last
    4 lanes once more; returns the channels done (fewer than 4 channels: none, the scalar
    loop's)."""
    wide = _tile(1, BLOCK, kw, stride) if pixels == 1 else None
    t16, t8, t4 = (_tile(pixels, n, kw, stride) for n in (VL, 8, 4))

    def tiles(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, ob, ostep, co_,
              has_res, lo_, hi_):
        c0 = 0
        if wide is not None:
            while c0 + BLOCK <= co_:
                wide(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, c0, ob, ostep,
                     has_res, lo_, hi_)
                c0 += BLOCK
        while c0 + VL <= co_:
            t16(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, c0, ob, ostep,
                has_res, lo_, hi_)
            c0 += VL
        if c0 + 8 <= co_:
            t8(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, c0, ob, ostep,
               has_res, lo_, hi_)
            c0 += 8
        if c0 + 4 <= co_:
            t4(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, c0, ob, ostep,
               has_res, lo_, hi_)
            c0 += 4
        if co_ > c0 >= 4:       # the last 1-3 channels: the last 4 again (the same sums)
            t4(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, ws, co_ - 4, ob, ostep,
               has_res, lo_, hi_)
            c0 = co_
        return c0
    return config.jit(tiles, inline="always")


@config.jit
def regular_columns(colmap):
    """(dil, sx, ilo, ihi) of a column table: output columns ``[ilo, ihi)`` (the longest run
    from the first whose taps are all valid and ``dil`` > 0 apart) read input columns
    ``colmap[ilo, 0] + (ow - ilo) * sx + kw * dil``; ``ilo == ihi`` when there are none."""
    ow_, kw_ = colmap.shape
    dil, sx, ilo, ihi = 1, 1, ow_, ow_
    for ow in range(ow_):
        c = colmap[ow, 0]
        regular = c >= 0
        if regular and kw_ > 1:
            d = colmap[ow, 1] - c
            if ilo == ow_:
                dil = d
            regular = d == dil and d > 0
            for kw in range(2, kw_):
                regular = regular and colmap[ow, kw] == c + kw * dil
        if ilo == ow_:
            if regular:
                ilo = ow
            continue
        if ow == ilo + 1:
            sx = c - colmap[ilo, 0]
        if not regular or c != colmap[ilo, 0] + (ow - ilo) * sx:
            ihi = ow
            break
    return dil, sx, ilo, ihi


def variant(colmap: np.ndarray) -> tuple[int, int]:
    """The ``(kw, stride)`` of ``dwconv_kernel`` for a column table: a row of ``UNROLLED`` taps
    (adjacent columns, regular pixels ``stride`` columns apart), else ``(0, 1)``: the taps from
    a table."""
    dil, sx, ilo, ihi = regular_columns(colmap)
    geometry = (colmap.shape[1], sx)
    return geometry if ihi > ilo and dil == 1 and geometry in UNROLLED else (0, 1)


def _dw_source(parallel: bool, KW: int = 0, S: int = 1):
    loop = numba.prange if parallel else range
    P = machine_pixels()
    HALF = max(P // 2, 1)
    ACC = max(BLOCK, P * VL)
    ROWS = 2 * MAX_TAPS
    TABLES = ROWS + MAX_TAPS
    GATHER = MAX_TAPS * HALF
    ZMAX = 4096             # NOTE: channels of a map with border tiles (more: single pixels)
    # regular tiles (unrolled taps when KW > 0); single pixels list their own taps
    tiles_p, tiles_half, tiles_1 = _tiles(P, KW, S), _tiles(HALF, KW, S), _tiles(1)
    tiles_g = _tiles(HALF, -1)      # HALF pixels of a border, their taps gathered

    # NOTE: the rows are a function of their own, called by the serial and the parallel variant
    # alike (as ``f32_conv2d``'s igemm_row: LLVM allocates an outlined body's registers better)
    @config.jit
    def dw_rows(r0, r1, lo, hi, x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1,
                has_res, dil, sx, ilo, ihi):
        """Output rows ``[r0, r1)`` (image-major), columns ``[lo, hi)``; columns ``[ilo, ihi)``
        are regular (input column ``colmap[ilo, 0] + (ow - ilo) * sx + kw * dil``)."""
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        xf = x.reshape(x.size)
        wf = wp.reshape(wp.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        xa, wa, ba = x.ctypes.data, wp.ctypes.data, bias.ctypes.data
        ra, oa = residual.ctypes.data, out.ctypes.data
        lo_, hi_, rest = epilogue_clamp(act, p0, p1)
        acc = stack_array(ACC, np.float32)        # register tiles: constant offsets only
        # (input, weight) offset tables: [0, MAX_TAPS) the row's taps, which a regular pixel
        # reads shifted by its first input column; [MAX_TAPS, ROWS) a single pixel's own valid
        # taps; [ROWS, ...) the row's kernel rows (KW > 0: the unrolled tiles')
        tx = stack_array(TABLES, np.int64)
        tw = stack_array(TABLES, np.int64)
        ta = stack_array(GATHER, np.int64)        # a border tile's input offsets
        # a padding tap reads zeros: Co floats, at an offset from x's address
        zeros = stack_array(ZMAX, np.float32)
        gather = mult == 1 and 4 <= co_ <= ZMAX and hi - lo >= HALF > 1
        for c in range(co_ if gather else 0):
            zeros[c] = F32(0)
        zo = (np.int64(zeros.ctypes.data) - np.int64(xa)) // 4
        if KW > 0 and not (dil == 1 and sx == S and kw_ == KW):
            ilo = ihi = ow_                       # not this variant's geometry: no tiles
        for row in range(r0, r1):
            b = row // oh_
            oh = row - b * oh_
            nrt = nkr = 0
            for kh in range(kh_):
                r = rowmap[oh, kh]
                if r < 0:
                    continue
                if KW > 0:
                    tx[ROWS + nkr] = (b * h_ + r) * w_ * c_
                    tw[ROWS + nkr] = kh * kw_ * co_
                    nkr += 1
                for kw in range(kw_):
                    tx[nrt] = ((b * h_ + r) * w_ + kw * dil) * c_
                    tw[nrt] = (kh * kw_ + kw) * co_
                    nrt += 1
            orow = (b * oh_ + oh) * ow_
            end = min(hi, ihi)
            ow = lo
            while ow < hi:
                regular = mult == 1 and co_ >= 4 and ilo <= ow < end
                if gather and not (regular and ow + HALF <= end) and ow + HALF - 1 <= hi:
                    # a border tile: HALF pixels from ow, or the part's last HALF (the same sums
                    # again for one pixel done), each tap's inputs gathered per pixel
                    g0 = min(ow, hi - HALF)
                    nt = 0
                    for kh in range(kh_):
                        r = rowmap[oh, kh]
                        if r < 0:
                            continue
                        for kw in range(kw_):
                            tw[MAX_TAPS + nt] = (kh * kw_ + kw) * co_
                            for p in range(HALF):
                                c = colmap[g0 + p, kw]
                                ta[nt * HALF + p] = ((b * h_ + r) * w_ + c) * c_ if c >= 0 else zo
                            nt += 1
                    tiles_g(acc, tx, tw, ta, MAX_TAPS, nt, xa, wa, ba, ra, oa, 0, 0, co_,
                            (orow + g0) * co_, co_, co_, has_res, lo_, hi_)
                    ow = g0 + HALF
                    continue
                ob = (orow + ow) * co_
                n = 1
                if regular:                             # the row's table
                    n = P if ow + P <= end else HALF if ow + HALF <= end else 1
                    xb = (colmap[ilo, 0] + (ow - ilo) * sx) * c_
                    if KW > 0 and n > 1:
                        tb, nt, xs = ROWS, nkr, c_
                    else:
                        tb, nt, xs = 0, nrt, sx * c_
                else:                                   # list the pixel's valid taps
                    tb, nt, xs, xb = MAX_TAPS, 0, 0, 0
                    for kh in range(kh_):
                        r = rowmap[oh, kh]
                        if r < 0:
                            continue
                        for kw in range(kw_):
                            c = colmap[ow, kw]
                            if c >= 0:
                                tx[MAX_TAPS + nt] = ((b * h_ + r) * w_ + c) * c_
                                tw[MAX_TAPS + nt] = (kh * kw_ + kw) * co_
                                nt += 1
                c0 = 0
                if mult == 1:
                    if regular and n == P > 1:
                        c0 = tiles_p(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, co_,
                                     ob, co_, co_, has_res, lo_, hi_)
                    elif regular and n == HALF > 1:
                        c0 = tiles_half(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs,
                                        co_, ob, co_, co_, has_res, lo_, hi_)
                    else:
                        c0 = tiles_1(acc, tx, tw, ta, tb, nt, xa, wa, ba, ra, oa, xb, xs, co_,
                                     ob, co_, co_, has_res, lo_, hi_)
                # fewer than 4 channels, or mult > 1 (output co reads input channel co // mult):
                # one pixel, its listed taps
                for c in range(c0, co_):
                    ci = c // mult
                    y = F32(0)
                    for t in range(tb, tb + nt):
                        y += xf[U64(tx[t] + ci)] * wf[U64(tw[t] + c)]
                    y += bias[U64(c)]
                    if has_res:
                        y += rf[U64(ob + c)]
                    y = lo_ if y < lo_ else y
                    of[U64(ob + c)] = hi_ if y > hi_ else y
                ow += n
            if rest != 0 and hi > lo:
                activate_span(of, (orow + lo) * co_, (hi - lo) * co_, rest, p0, p1)

    def f32_dwconv2d(x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res,
                     splits):
        rows, ow_ = out.shape[0] * out.shape[1], out.shape[2]
        dil, sx, ilo, ihi = regular_columns(colmap)
        span = -(-ow_ // splits)
        # a task: one row part (parallel), or every row's part (serial: one call)
        per = 1 if parallel else max(rows, 1)
        chunks = -(-rows // per)
        for task in loop(chunks * splits):
            chunk = task // splits
            lo = (task - chunk * splits) * span
            dw_rows(chunk * per, min(rows, chunk * per + per), lo, min(ow_, lo + span), x,
                    rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res, dil, sx,
                    ilo, ihi)

    return f32_dwconv2d


@functools.lru_cache(maxsize=None)
def dwconv_kernel(parallel: bool, kw: int = 0, stride: int = 1, cache: bool = True):
    """The Numba dispatcher of ``f32_dwconv2d_minmax`` (memoised): ``(kw, stride)`` one of
    ``UNROLLED`` (``variant(colmap)``) unrolls that row of taps, ``(0, 1)`` runs any geometry
    (either gives the same outputs on any tables).

    Call ``fn(x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res, splits)``:
        x: f32[N, H, W, C] read-only view; rowmap i32[OH, KH], colmap i32[OW, KW] read-only;
        wp: f32[KH, KW, Co] from ``pack_weights``, read-only (KH * KW <= MAX_TAPS);
        bias: f32[Co] read-only; residual: f32[N, OH, OW, Co] read-only view (any such array when
        ``has_res`` is False); out: f32[N, OH, OW, Co], Co = mult * C, may not overlap x or the
        residual; mult, act: int; p0, p1: float32; splits: column parts per output row, each a
        task of its own (``f32_conv2d.row_splits``).
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_dw_source(parallel, kw, stride), **flags)


def run_dwconv(x, rowmap, colmap, wp, bias, residual, out, *, mult, act, act_params, parallel):
    p0, p1 = activation_params(act, act_params)
    has_res = residual is not None
    res = readonly(residual if has_res else out)
    fn = dwconv_kernel(parallel, *variant(colmap))
    fn(readonly(x), readonly(rowmap), readonly(colmap), readonly(wp), readonly(bias), res, out,
       mult, int(act), F32(p0), F32(p1), has_res, 1)
    return out


def dwconv2d(x, w, bias=None, residual=None, *, strides=(1, 1), dilations=(1, 1),
             pads=(0, 0, 0, 0), group=None, pad_mode="constant", upsample=1,
             activation_kind=0, act_params=(), parallel=None):
    """Convenience entry with ``kernels.reference.conv2d``'s signature (group = C implied).

    x: f32[N, H, W, C]; w: [k * C, 1, KH, KW]; returns f32[N, OH, OW, k * C].
    """
    x = np.ascontiguousarray(x, F32)
    c = x.shape[3]
    co, _, kh, kw = w.shape
    if (group is not None and group != c) or co % c:
        raise ValueError(f"depthwise conv needs group == C == {c} and Co % C == 0, got "
                         f"group {group}, weights {w.shape}")
    rowmap, colmap = conv_tables(x.shape, (kh, kw), strides, dilations, pads, pad_mode, upsample)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), F32)
    if parallel is None:
        parallel = config.use_parallel(out.size * kh * kw // config.MAC_WORK)
    res = None if residual is None else np.ascontiguousarray(residual, F32)
    return run_dwconv(x, rowmap, colmap, pack_weights(w), bias, res, out, mult=co // c,
                      act=int(activation_kind), act_params=act_params, parallel=parallel)


def _reference():
    from kernels import reference
    return reference.conv2d
