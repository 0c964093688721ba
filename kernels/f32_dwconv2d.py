"""fp32 depthwise convolution over NHWC (group == Ci, Co = multiplier * Ci).

``f32_dwconv2d_minmax``: output pixels read their taps through the indirection tables of
``kernels/indirection.py`` (any kernel size, stride, dilation, padding mode and nearest
upsampling). The regular columns of a row (every tap inside the input, input columns an
arithmetic progression: the interior of a zero-padded map) run in tiles of ``PIXELS`` pixels
along the row: per tap one vector of weights is loaded and multiplied into the tile's pixels,
one accumulator register per pixel, over one tap
table of the output row shifted by each tile's first column. Other pixels (borders, upsampling)
list their valid taps and run alone, in blocks of 64 channels (four independent chains).
Channels run in vectors of 16, 8 and 4 lanes (contiguous in NHWC: plain loads), a scalar loop
finishes the last ``Co % 4``. With a channel multiplier ``k > 1`` output channel ``co`` reads
input channel ``co // k``; that form runs the scalar loop only.

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


def machine_pixels() -> int:
    """The pixels of a tile as compiled here: ``PIXELS`` accumulators of 16 lanes fit AVX-512's
    registers; fewer on AVX2 or NEON (``config.fit_rows``)."""
    return config.fit_rows(PIXELS, VL)


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Depthwise weights ``[Co, 1, KH, KW]`` -> ``f32[KH, KW, Co]`` (channels contiguous)."""
    if w.shape[1] != 1:
        raise ValueError(f"depthwise weights need shape [Co, 1, KH, KW], got {w.shape}")
    return np.ascontiguousarray(np.asarray(w, F32)[:, 0].transpose(1, 2, 0))


def _tile(pixels: int, lanes: int):
    """``lanes`` channels from ``c0`` of ``pixels`` output pixels (outputs ``ob + p * ostep``, inputs
    of tap ``t`` at ``taps[t] + xb + p * xs``): the ``nt`` taps, bias, residual and clamp, in
    ``pixels`` vector registers (inlined: ``pixels`` and ``lanes`` are constants of the caller's
    code)."""
    def tile(acc, xf, wf, taps, wts, nt, xb, xs, c0, bias, rf, of, ob, ostep, has_res, lo_, hi_):
        for p in range(pixels):
            vfill(acc, p * lanes, F32(0), lanes)
        for t in range(nt):
            xo, wo = taps[t] + xb + c0, wts[t] + c0
            for p in range(pixels):
                vfma2(acc, p * lanes, xf, xo + p * xs, wf, wo, lanes)
        for p in range(pixels):
            a, o = p * lanes, ob + p * ostep + c0
            vadd(acc, a, bias, c0, lanes)
            if has_res:
                vadd(acc, a, rf, o, lanes)
            vclamp(acc, a, lo_, hi_, lanes)
            vcopy(of, o, acc, a, lanes)
    return config.jit(tile, inline="always")


def _tiles(pixels: int):
    """All channels of ``pixels`` pixels in vectors of 16, 8 and 4 lanes (a single pixel first
    in blocks of ``BLOCK``: four independent chains); returns the channels done, the last
    ``Co % 4`` left to ``_scalar``."""
    wide = _tile(1, BLOCK) if pixels == 1 else None
    t16, t8, t4 = (_tile(pixels, n) for n in (VL, 8, 4))

    def tiles(acc, xf, wf, taps, wts, nt, xb, xs, bias, rf, of, ob, ostep, co_, has_res, lo_,
              hi_):
        c0 = 0
        if wide is not None:
            while c0 + BLOCK <= co_:
                wide(acc, xf, wf, taps, wts, nt, xb, xs, c0, bias, rf, of, ob, ostep, has_res,
                     lo_, hi_)
                c0 += BLOCK
        while c0 + VL <= co_:
            t16(acc, xf, wf, taps, wts, nt, xb, xs, c0, bias, rf, of, ob, ostep, has_res, lo_, hi_)
            c0 += VL
        if c0 + 8 <= co_:
            t8(acc, xf, wf, taps, wts, nt, xb, xs, c0, bias, rf, of, ob, ostep, has_res, lo_, hi_)
            c0 += 8
        if c0 + 4 <= co_:
            t4(acc, xf, wf, taps, wts, nt, xb, xs, c0, bias, rf, of, ob, ostep, has_res, lo_, hi_)
            c0 += 4
        return c0
    return config.jit(tiles, inline="always")


@config.jit(inline="always")
def _scalar(sacc, xf, wf, taps, wts, nt, xb, c0, bias, rf, of, ob, co_, mult, has_res, lo_,
            hi_):
    """Channels ``[c0, co_)`` of one pixel, ``BLOCK`` at a time in scalar code (the last
    ``Co % 4`` channels; every channel when ``mult > 1``: output ``co`` reads input ``co //
    mult``)."""
    while c0 < co_:
        nc = min(BLOCK, co_ - c0)
        for j in range(nc):
            sacc[j] = F32(0)
        for t in range(nt):
            xo, wo = taps[t] + xb, wts[t] + c0
            for j in range(nc):
                sacc[j] += xf[U64(xo + (c0 + j) // mult)] * wf[U64(wo + j)]
        for j in range(nc):
            y = sacc[j] + bias[U64(c0 + j)]
            if has_res:
                y += rf[U64(ob + c0 + j)]
            y = lo_ if y < lo_ else y
            of[U64(ob + c0 + j)] = hi_ if y > hi_ else y
        c0 += nc


def _dw_source(parallel: bool):
    loop = numba.prange if parallel else range
    P = machine_pixels()
    ACC = max(BLOCK, P * VL)
    tiles_p, tiles_half, tiles_1 = _tiles(P), _tiles(max(P // 2, 1)), _tiles(1)
    HALF = max(P // 2, 1)

    # NOTE: the row is its own function, called by the serial and the parallel variant alike
    # (as ``f32_conv2d``'s igemm_row: LLVM allocates an outlined body's registers better)
    @config.jit
    def dw_row(row, lo, hi, x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1,
               has_res, dil, sx, ilo, ihi):
        """Output row ``row``, columns ``[lo, hi)``; columns ``[ilo, ihi)`` are regular (input
        column ``colmap[ilo, 0] + (ow - ilo) * sx + kw * dil``)."""
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        xf = x.reshape(x.size)
        wf = wp.reshape(wp.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        b = row // oh_
        oh = row - b * oh_
        lo_, hi_, rest = epilogue_clamp(act, p0, p1)
        acc = stack_array(ACC, np.float32)        # register tiles: constant offsets only
        sacc = stack_array(BLOCK, np.float32)     # scalar path
        # the row's tap table: a regular pixel reads it shifted by its first input column;
        # other pixels list their valid taps in (txo, two)
        rxo = stack_array(MAX_TAPS, np.int64)
        rwo = stack_array(MAX_TAPS, np.int64)
        txo = stack_array(MAX_TAPS, np.int64)
        two = stack_array(MAX_TAPS, np.int64)
        nrt = 0
        for kh in range(kh_):
            r = rowmap[oh, kh]
            if r >= 0:
                for kw in range(kw_):
                    rxo[nrt] = ((b * h_ + r) * w_ + kw * dil) * c_
                    rwo[nrt] = (kh * kw_ + kw) * co_
                    nrt += 1
        orow = (b * oh_ + oh) * ow_
        ow = lo
        while ow < hi:
            if mult == 1 and ilo <= ow < ihi:   # a tile of regular pixels
                xb = (colmap[ilo, 0] + (ow - ilo) * sx) * c_
                ob = (orow + ow) * co_
                if ow + P <= ihi and ow + P <= hi:
                    n = P
                    c0 = tiles_p(acc, xf, wf, rxo, rwo, nrt, xb, sx * c_, bias, rf, of, ob,
                                 co_, co_, has_res, lo_, hi_)
                elif ow + HALF <= ihi and ow + HALF <= hi:
                    n = HALF
                    c0 = tiles_half(acc, xf, wf, rxo, rwo, nrt, xb, sx * c_, bias, rf, of, ob,
                                    co_, co_, has_res, lo_, hi_)
                else:
                    n = 1
                    c0 = tiles_1(acc, xf, wf, rxo, rwo, nrt, xb, 0, bias, rf, of, ob, co_,
                                 co_, has_res, lo_, hi_)
                if c0 < co_:
                    for p in range(n):
                        _scalar(sacc, xf, wf, rxo, rwo, nrt, xb + p * sx * c_, c0, bias, rf,
                                of, ob + p * co_, co_, 1, has_res, lo_, hi_)
                ow += n
                continue
            nt = 0
            for kh in range(kh_):
                r = rowmap[oh, kh]
                if r < 0:
                    continue
                for kw in range(kw_):
                    c = colmap[ow, kw]
                    if c >= 0:
                        txo[nt] = ((b * h_ + r) * w_ + c) * c_
                        two[nt] = (kh * kw_ + kw) * co_
                        nt += 1
            ob = (orow + ow) * co_
            c0 = 0
            if mult == 1:
                c0 = tiles_1(acc, xf, wf, txo, two, nt, 0, 0, bias, rf, of, ob, co_, co_,
                             has_res, lo_, hi_)
            _scalar(sacc, xf, wf, txo, two, nt, 0, c0, bias, rf, of, ob, co_, mult, has_res,
                    lo_, hi_)
            ow += 1
        if rest != 0 and hi > lo:
            activate_span(of, (orow + lo) * co_, (hi - lo) * co_, rest, p0, p1)

    def f32_dwconv2d(x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res,
                     splits):
        oh_, ow_ = out.shape[1], out.shape[2]
        kw_ = colmap.shape[1]
        # the regular columns: the longest run from the first pixel whose KW taps are valid
        # and ``dil`` apart, its first input columns ``sx`` apart
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
        span = -(-ow_ // splits)
        for task in loop(out.shape[0] * oh_ * splits):
            row = task // splits
            lo = (task - row * splits) * span
            dw_row(row, lo, min(ow_, lo + span), x, rowmap, colmap, wp, bias, residual, out,
                   mult, act, p0, p1, has_res, dil, sx, ilo, ihi)

    return f32_dwconv2d


@functools.lru_cache(maxsize=None)
def dwconv_kernel(parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``f32_dwconv2d_minmax`` (memoised).

    Call ``fn(x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res, splits)``:
        x: f32[N, H, W, C] read-only view; rowmap i32[OH, KH], colmap i32[OW, KW] read-only;
        wp: f32[KH, KW, Co] from ``pack_weights``, read-only (KH * KW <= MAX_TAPS);
        bias: f32[Co] read-only; residual: f32[N, OH, OW, Co] read-only view (any such array when
        ``has_res`` is False); out: f32[N, OH, OW, Co], Co = mult * C, may not overlap x;
        mult, act: int; p0, p1: float32; splits: column parts per output row, each a task of
        its own (``f32_conv2d.row_splits``).
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_dw_source(parallel), **flags)


def run_dwconv(x, rowmap, colmap, wp, bias, residual, out, *, mult, act, act_params, parallel):
    p0, p1 = activation_params(act, act_params)
    has_res = residual is not None
    res = readonly(residual if has_res else out)
    dwconv_kernel(parallel)(readonly(x), readonly(rowmap), readonly(colmap), readonly(wp),
                            readonly(bias), res, out, mult, int(act), F32(p0), F32(p1), has_res,
                            1)
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
        parallel = config.use_parallel(out.size * kh * kw)
    res = None if residual is None else np.ascontiguousarray(residual, F32)
    return run_dwconv(x, rowmap, colmap, pack_weights(w), bias, res, out, mult=co // c,
                      act=int(activation_kind), act_params=act_params, parallel=parallel)


def _reference():
    from kernels import reference
    return reference.conv2d
