"""qu8 depthwise convolution over NHWC (group == C, Co = multiplier * C): uint8 activations,
int8 weights, int32 accumulators, the epilogues of ``kernels/qu8_conv2d.py``.

``qu8_dwconv2d_{epilogue}``: for each output pixel the source address of every tap is listed
once (through the indirection tables of ``kernels/indirection.py``; a padded tap points at a
row of ``zx`` bytes, so ``bias_q``'s ``- zx * sum(w)`` makes every tap contribute
``(x - zx) * w`` exactly), then channels are accumulated in blocks of 64 and 16 int32 lanes
held in registers (channels are contiguous in NHWC: plain byte-vector loads, products in int16),
and a scalar loop finishes the last ``Co % 16`` channels. A channel multiplier ``k > 1``
(output channel ``co`` reads input channel ``co // k``) runs the scalar loop only. No dot
product instruction is needed, so one variant serves every CPU.

Epilogues: ``requant`` (uint8 out) and ``fp32out`` (float32 out, then an Activation), as in
``kernels/reference_q8.py``; compiled without fast-math, bit-exact.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import activate_span, activation_params, conv_tables, readonly
from kernels.intrinsics import (stack_array, vcopy_i32, vfill_i32, vmac_u8i8, vrequant_u8,
                                vscale_f32)

F32 = np.float32
U64 = np.uint64
VL = 16
NVB = 4                     # vectors per channel block (64 channels)
BLOCK = NVB * VL
MAX_TAPS = 256              # NOTE: larger kernels run as a grouped qu8 igemm conv instead
EPILOGUES = ("requant", "fp32out")


def kernel_id(epilogue: str) -> str:
    return f"qu8_dwconv2d_{epilogue}"


def pack_weights(w_int8: np.ndarray) -> np.ndarray:
    """Depthwise weights int8 ``[Co, 1, KH, KW]`` -> int8 ``[KH, KW, Co]`` (channels contiguous)."""
    w = np.asarray(w_int8)
    if w.dtype != np.int8 or w.ndim != 4 or w.shape[1] != 1:
        raise ValueError(f"qu8 depthwise weights must be int8 [Co, 1, KH, KW], got {w.dtype} "
                         f"{w.shape}")
    return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))


def zero_row(zx: int, c: int) -> np.ndarray:
    """uint8[C] of ``zx``: what padded taps read."""
    return np.full(max(c, 1), zx, np.uint8)


def _dw_source(OUT: int, parallel: bool):
    loop = numba.prange if parallel else range

    def qu8_dwconv2d(x, zrow, rowmap, colmap, wp, bias, mult, out, chmult, zy, qmin, qmax, act,
                     p0, p1):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        if zrow.size < c_:
            raise ValueError("qu8_dwconv2d: zero-point row shorter than C")
        if kh_ * kw_ > MAX_TAPS:
            raise ValueError("qu8_dwconv2d: more than MAX_TAPS taps")
        wf = wp.reshape(wp.size)
        xf = x.reshape(x.size)
        of = out.reshape(out.size)
        xbase = np.int64(x.ctypes.data)
        zbase = np.int64(zrow.ctypes.data)
        zyf, lo, hi = F32(zy), F32(qmin), F32(qmax)
        for row in loop(n_ * oh_):
            b = row // oh_
            oh = row - b * oh_
            acc = stack_array(BLOCK, np.int32)      # register tile: constant offsets only
            tile = stack_array(BLOCK, np.int32)
            txa = stack_array(MAX_TAPS, np.int64)  # source address of each tap's pixel
            for ow in range(ow_):
                nt = kh_ * kw_
                for kh in range(kh_):
                    r = rowmap[oh, kh]
                    for kw in range(kw_):
                        c = colmap[ow, kw]
                        txa[kh * kw_ + kw] = xbase + ((b * h_ + r) * w_ + c) * c_ \
                            if r >= 0 and c >= 0 else zbase
                ob = ((b * oh_ + oh) * ow_ + ow) * co_
                c0 = 0
                if chmult == 1:
                    while c0 + VL <= co_:
                        nv = NVB if c0 + BLOCK <= co_ else 1
                        if nv == NVB:
                            for v in range(NVB):
                                vfill_i32(acc, v * VL, 0, VL)
                            for t in range(nt):
                                for v in range(NVB):
                                    vmac_u8i8(acc, v * VL, txa[t] + c0 + v * VL, wf,
                                              t * co_ + c0 + v * VL, VL)
                            for v in range(NVB):
                                vcopy_i32(tile, v * VL, acc, v * VL, VL)
                        else:
                            vfill_i32(acc, 0, 0, VL)
                            for t in range(nt):
                                vmac_u8i8(acc, 0, txa[t] + c0, wf, t * co_ + c0, VL)
                            vcopy_i32(tile, 0, acc, 0, VL)
                        for v in range(nv):
                            if OUT == 0:
                                vrequant_u8(tile, v * VL, bias, c0 + v * VL, mult, c0 + v * VL,
                                            zyf, lo, hi, of, ob + c0 + v * VL, VL)
                            else:
                                vscale_f32(tile, v * VL, bias, c0 + v * VL, mult, c0 + v * VL,
                                           of, ob + c0 + v * VL, VL)
                        c0 += nv * VL
                for co in range(c0, co_):     # leftover channels, or any channel multiplier
                    a = np.int64(bias[U64(co)])
                    ci = co // chmult
                    for t in range(nt):
                        xv = np.int64(xf[U64(txa[t] - xbase + ci)]) \
                            if txa[t] != zbase else np.int64(zrow[U64(ci)])
                        a += xv * np.int64(wf[U64(t * co_ + co)])
                    y = F32(np.int32(a)) * mult[U64(co)]
                    if OUT == 0:
                        y = min(max(np.rint(y) + zyf, lo), hi)
                        of[U64(ob + co)] = np.uint8(np.int32(y))
                    else:
                        of[U64(ob + co)] = y
            if OUT == 1:
                activate_span(of, (b * oh_ + oh) * ow_ * co_, ow_ * co_, act, p0, p1)

    return qu8_dwconv2d


@functools.lru_cache(maxsize=None)
def dwconv_kernel(epilogue: str, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``qu8_dwconv2d_{epilogue}`` (memoised).

    Call ``fn(x, zrow, rowmap, colmap, wp, bias, mult, out, chmult, zy, qmin, qmax, act, p0,
    p1)``:
        x: u8[N, H, W, C] read-only view; zrow: u8[>= C] of zx (``zero_row``), read-only;
        rowmap i32[OH, KH], colmap i32[OW, KW] read-only (KH * KW <= MAX_TAPS);
        wp: i8[KH, KW, Co] from ``pack_weights``, read-only;
        bias: i32[Co] bias_q (``qu8_conv2d.qu8_conv_bias``); mult: f32[Co];
        out: u8 (requant) or f32 (fp32out) [N, OH, OW, Co], Co = chmult * C, may not overlap x;
        chmult, zy, qmin, qmax, act: int; p0, p1: float32 (fp32out activation params).
    """
    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue {epilogue!r}; expected one of {EPILOGUES}")
    flags = {"fastmath": False} if cache else {"fastmath": False, "cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_dw_source(EPILOGUES.index(epilogue), parallel), **flags)


def dwconv2d(x_u8, w_i8, bias_q, mult, zx, zy=0, qmin=0, qmax=255, *, strides=(1, 1),
             dilations=(1, 1), pads=(0, 0, 0, 0), pad_mode="constant", upsample=1, group=None,
             epilogue="requant", act=0, act_params=(), parallel=None):
    """Convenience entry with ``kernels.reference_q8.qu8_conv2d_reference``'s arguments
    (group = C implied). x: u8[N, H, W, C]; w: i8[k * C, 1, KH, KW]."""
    x = np.ascontiguousarray(x_u8, np.uint8)
    c = x.shape[3]
    co, _, kh, kw = w_i8.shape
    if (group is not None and group != c) or co % c:
        raise ValueError(f"depthwise conv needs group == C == {c} and Co % C == 0, got "
                         f"group {group}, weights {w_i8.shape}")
    rowmap, colmap = conv_tables(x.shape, (kh, kw), strides, dilations, pads, pad_mode, upsample)
    dtype = np.uint8 if epilogue == "requant" else np.float32
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), dtype)
    if parallel is None:
        parallel = config.use_parallel(out.size * kh * kw // config.MAC_WORK)
    p0, p1 = activation_params(act, act_params) if epilogue == "fp32out" else (0.0, 0.0)
    ro = readonly
    dwconv_kernel(epilogue, parallel)(
        ro(x), ro(zero_row(zx, c)), ro(rowmap), ro(colmap), ro(pack_weights(w_i8)),
        ro(np.ascontiguousarray(bias_q, np.int32)), ro(np.ascontiguousarray(mult, F32)), out,
        co // c, int(zy), int(qmin), int(qmax), int(act), F32(p0), F32(p1))
    return out


def _reference():
    from kernels import reference_q8
    return reference_q8.qu8_conv2d_reference
