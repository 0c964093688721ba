"""fp32 depthwise convolution over NHWC (group == Ci, Co = multiplier * Ci).

``f32_dwconv2d_minmax``: for each output pixel the valid taps are listed once (input and weight
offsets through the indirection tables of ``kernels/indirection.py``, so any kernel size,
stride, dilation, padding mode and nearest upsampling; a pixel whose taps are all inside the
input reads one table per output row, shifted by its first column, instead: MediaPipe's face
landmark net's depthwise steps took 1.11 ms listing every pixel's taps, 0.76 ms so), then channels are accumulated in blocks
of 64, 16, 8 and 4 lanes held in registers (channels are contiguous in NHWC: plain vector loads),
and a scalar loop finishes the last ``Co % 4`` channels. With a channel multiplier ``k > 1``
output channel ``co`` reads input channel ``co // k``; that form runs the scalar loop only.

Epilogue (same pass): ``act(acc + bias[co] (+ residual))``.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import (F32, U64, VL, activate_span, activation_params, conv_tables,
                                readonly)
from kernels.intrinsics import stack_array, vadd, vcopy, vfill, vfma2

KERNEL_ID = "f32_dwconv2d_minmax"
NVB = 4                     # vectors per channel block (64 channels)
BLOCK = NVB * VL
MAX_TAPS = 256              # NOTE: larger kernels run as a grouped igemm conv instead


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Depthwise weights ``[Co, 1, KH, KW]`` -> ``f32[KH, KW, Co]`` (channels contiguous)."""
    if w.shape[1] != 1:
        raise ValueError(f"depthwise weights need shape [Co, 1, KH, KW], got {w.shape}")
    return np.ascontiguousarray(np.asarray(w, F32)[:, 0].transpose(1, 2, 0))


def _lanes_block(lanes: int):
    """``lanes`` channels from ``c0`` of one output pixel: the ``nt`` listed taps (input offsets
    ``txo[t] + xb``), bias and residual, in one vector register (inlined: ``lanes`` is a
    constant of the caller's code)."""
    def block(acc, xf, wf, txo, xb, two, nt, c0, bias, rf, of, ob, has_res):
        vfill(acc, 0, F32(0), lanes)
        for t in range(nt):
            vfma2(acc, 0, xf, txo[t] + xb + c0, wf, two[t] + c0, lanes)
        vadd(acc, 0, bias, c0, lanes)
        if has_res:
            vadd(acc, 0, rf, ob + c0, lanes)
        vcopy(of, ob + c0, acc, 0, lanes)
    return config.jit(block, inline="always")


_block_vl, _block_8, _block_4 = (_lanes_block(n) for n in (VL, 8, 4))


def _dw_source(parallel: bool):
    loop = numba.prange if parallel else range

    def f32_dwconv2d(x, rowmap, colmap, wp, bias, residual, out, mult, act, p0, p1, has_res,
                     splits):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        xf = x.reshape(x.size)
        wf = wp.reshape(wp.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        dil = 1         # the column step of a regular pixel's taps (the dilation)
        for ow in range(ow_ if kw_ > 1 else 0):
            if colmap[ow, 0] >= 0 and colmap[ow, 1] > colmap[ow, 0]:
                dil = colmap[ow, 1] - colmap[ow, 0]
                break
        span = -(-ow_ // splits)
        for task in loop(n_ * oh_ * splits):
            row = task // splits
            lo = (task - row * splits) * span
            hi = min(ow_, lo + span)
            b = row // oh_
            oh = row - b * oh_
            acc = stack_array(BLOCK, np.float32)      # register tile: constant offsets only
            sacc = stack_array(BLOCK, np.float32)     # scalar path
            txo = stack_array(MAX_TAPS, np.int64)
            two = stack_array(MAX_TAPS, np.int64)
            # a regular pixel (its KW taps valid, ``dil`` apart) reads the row's tap table
            # shifted by its first input column; other pixels list their valid taps
            rxo = stack_array(MAX_TAPS, np.int64)
            rwo = stack_array(MAX_TAPS, np.int64)
            nrt = 0
            for kh in range(kh_):
                r = rowmap[oh, kh]
                if r >= 0:
                    for kw in range(kw_):
                        rxo[nrt] = ((b * h_ + r) * w_ + kw * dil) * c_
                        rwo[nrt] = (kh * kw_ + kw) * co_
                        nrt += 1
            for ow in range(lo, hi):
                c = colmap[ow, 0]
                regular = c >= 0
                for kw in range(1, kw_):
                    regular = regular and colmap[ow, kw] == c + kw * dil
                if regular:
                    taps, wts, nt, xb = rxo, rwo, nrt, c * c_
                else:
                    nt, xb = 0, 0
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
                    taps, wts = txo, two
                ob = ((b * oh_ + oh) * ow_ + ow) * co_
                c0 = 0
                if mult == 1:
                    while c0 + BLOCK <= co_:
                        for v in range(NVB):
                            vfill(acc, v * VL, F32(0), VL)
                        for t in range(nt):
                            xo, wo = taps[t] + xb + c0, wts[t] + c0
                            for v in range(NVB):
                                vfma2(acc, v * VL, xf, xo + v * VL, wf, wo + v * VL, VL)
                        for v in range(NVB):
                            vadd(acc, v * VL, bias, c0 + v * VL, VL)
                            if has_res:
                                vadd(acc, v * VL, rf, ob + c0 + v * VL, VL)
                            vcopy(of, ob + c0 + v * VL, acc, v * VL, VL)
                        c0 += BLOCK
                    while c0 + VL <= co_:
                        _block_vl(acc, xf, wf, taps, xb, wts, nt, c0, bias, rf, of, ob, has_res)
                        c0 += VL
                    # the tail in 8- and 4-lane vectors (24, 28, 36, 42 ... channels)
                    if c0 + 8 <= co_:
                        _block_8(acc, xf, wf, taps, xb, wts, nt, c0, bias, rf, of, ob, has_res)
                        c0 += 8
                    if c0 + 4 <= co_:
                        _block_4(acc, xf, wf, taps, xb, wts, nt, c0, bias, rf, of, ob, has_res)
                        c0 += 4
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
                        of[U64(ob + c0 + j)] = y
                    c0 += nc
            if hi > lo:
                activate_span(of, ((b * oh_ + oh) * ow_ + lo) * co_, (hi - lo) * co_, act, p0,
                              p1)

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
        parallel = config.use_parallel(out.size * kh * kw // config.MAC_WORK)
    res = None if residual is None else np.ascontiguousarray(residual, F32)
    return run_dwconv(x, rowmap, colmap, pack_weights(w), bias, res, out, mult=co // c,
                      act=int(activation_kind), act_params=act_params, parallel=parallel)


def _reference():
    from kernels import reference
    return reference.conv2d
