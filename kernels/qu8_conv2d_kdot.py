"""qu8 convolution for few output channels (group 1, Co <= ``KDOT_MAX_CO``): 16-byte dot products
over a kernel row (``qu8_conv2d_kdot16_{MR}x{4*CG}_{isa}_{epilogue}``), the int8 counterpart of
``f32_conv2d``'s kdot4 kernel. Same epilogues, ISA variants and tables as the igemm kernel
(``qu8_conv2d.py``); shared machinery in ``qu8_conv_common.py``.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import activate_span
from kernels.intrinsics import (DOT_PORTABLE, DOT_SDOT, DOT_SDOT_EMULATED, stack_array,
                                vcopy_i32, vdot4, vdot16, vdot16a, vfill_i32, vrequant_u8,
                                vscale_f32, vsum4_i32)

from kernels.qu8_conv_common import (EPILOGUES, F32, IRREGULAR, MAXT, MAXTILES, U64, VL,
                                     _ISA_CODES, _dispatcher, addresses, host_isa, list_tiles,
                                     row_runs, tile_step)


KDOT_TILES = {1: 14, 2: 10}         # CG -> MR (no spills: tests/kernels/test_qu8_asm.py)
KDOT_MAX_CO = 4 * max(KDOT_TILES)


def kdot_kernel_id(mr: int, cg: int, isa: str, epilogue: str) -> str:
    return f"qu8_conv2d_kdot16_{mr}x{4 * cg}_{isa}_{epilogue}"


def kdot_plan_kernel_id(mr: int, cg: int, epilogue: str) -> str:
    return f"qu8_conv2d_kdot16_{mr}x{4 * cg}_{epilogue}"


def use_kdot(co: int, group: int) -> bool:
    return group == 1 and co <= KDOT_MAX_CO


def kdot_tile(co: int) -> tuple[int, int]:
    """(MR, CG) of the kdot kernel for ``co`` <= KDOT_MAX_CO output channels."""
    cg = -(-co // 4)
    return KDOT_TILES[cg], cg


def pack_qu8_weights_kdot(w_int8: np.ndarray, cg: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 ``[Co, C, KH, KW]`` (group 1) -> (``wrun16``, ``wtap16``) for the kdot kernel.

    ``wrun16 i8[KH, ceil(KW*C / 16), CG, 64]``: element ``[kh, s, g, 16c + 4i + b]`` is
    ``w[4g + c, ci, kh, kw]`` with ``kw*C + ci = 16s + 4i + b`` (a kernel row as one run);
    ``wtap16 i8[KH, KW, ceil(C / 16), CG, 64]``: the same per tap with ``ci = 16s + 4i + b``.
    Missing channels and elements are zero.
    """
    w = np.asarray(w_int8)
    if w.dtype != np.int8 or w.ndim != 4 or w.shape[0] > 4 * cg:
        raise ValueError(f"kdot weights must be int8 [<= {4 * cg}, C, KH, KW], got {w.dtype} "
                         f"{w.shape}")
    co, c, kh, kw = w.shape
    wk = np.zeros((kh, kw, c, 4 * cg), np.int8)          # [kh, kw, ci, co]
    wk[..., :co] = w.transpose(2, 3, 1, 0)
    run, qr, qt = kw * c, -(-(kw * c) // 16), -(-c // 16)
    wr = np.zeros((kh, 16 * qr, 4 * cg), np.int8)
    wr[:, :run] = wk.reshape(kh, run, 4 * cg)
    # [kh, s, 16 elems, g, c] -> [kh, s, g, c, 16 elems]
    wr = wr.reshape(kh, qr, 16, cg, 4).transpose(0, 1, 3, 4, 2).reshape(kh, qr, cg, 64)
    wt = np.zeros((kh, kw, 16 * qt, 4 * cg), np.int8)
    wt[:, :, :c] = wk
    wt = wt.reshape(kh, kw, qt, 16, cg, 4).transpose(0, 1, 2, 4, 5, 3).reshape(kh, kw, qt, cg,
                                                                               64)
    return np.ascontiguousarray(wr), np.ascontiguousarray(wt)


def _kdot_source(MR: int, CG: int, ISA: int, OUT: int, parallel: bool):
    NACC = MR * CG * VL
    NRED = MR * CG * 4
    NCHUNK = MR * 16                    # NOTE: stack sizes must be plain closure ints
    NW = CG * VL
    CB = CG * 64                        # packed weight bytes per 16 input bytes
    SHIFTED = ISA in (DOT_SDOT, DOT_SDOT_EMULATED)
    ONES = 0x01010101
    loop = numba.prange if parallel else range

    def qu8_conv2d_kdot16(x, zrow, rowmap, colmap, wrun, wtap, bias, mult, out, zy, qmin, qmax,
                          act, p0, p1):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        qr, qt = wrun.shape[1], wtap.shape[2]
        if zrow.size < 16 * max(qr, qt):
            raise ValueError("qu8_conv2d_kdot16: zero-point row shorter than a kernel row")
        if co_ > 4 * CG or qr != (kw_ * c_ + 15) // 16 or qt != (c_ + 15) // 16:
            raise ValueError("qu8_conv2d_kdot16: packed weights do not fit the shapes")
        wrf, wtf = wrun.reshape(wrun.size), wtap.reshape(wtap.size)
        of, xf = out.reshape(out.size), x.reshape(x.size)
        xbase, xend, zbase, wtaddr, wraddr = addresses(x, zrow, wtap, wrun)
        zyf, lo, hi = F32(zy), F32(qmin), F32(qmax)
        tsteps = stack_array(MAXTILES, np.int64)    # tiles' regularity, once per call
        listed = list_tiles(tsteps, colmap, MR, ow_, kw_)
        for row in loop(n_ * oh_):
            b, oh = row // oh_, row % oh_
            acc = stack_array(NACC, np.int32)      # the register tile: constant offsets only
            tile = stack_array(NACC, np.int32)
            red = stack_array(NRED, np.int32)      # [pixel, channel] sums, compacted to co_
            brep = stack_array(NRED, np.int32)     # bias and multiplier repeated per pixel
            mrep = stack_array(NRED, np.float32)
            ptr = stack_array(MR, np.int64)
            chunk = stack_array(NCHUNK, np.uint8)     # a run's last 16 bytes near x's end
            wsum = stack_array(NW, np.int32)
            toff = stack_array(MAXT, np.int64)     # fused path: (kh, chunk) -> input offset
            twof = stack_array(MAXT, np.int64)     # ... and packed weight offset
            nt, maxoff = 0, 0
            if kh_ * qr <= MAXT:
                nt, maxoff = row_runs(toff, twof, rowmap, oh, b * h_ * w_ * c_, w_ * c_, kh_,
                                      qr, 16, CB)
            for m in range(MR):
                for j in range(co_):
                    brep[m * co_ + j] = bias[j]
                    mrep[m * co_ + j] = mult[j]
            if SHIFTED:      # dot16 gives (x - 128) * w: lanes start at 128 * sum of theirs
                for g in range(CG):
                    vfill_i32(wsum, g * VL, 0, VL)
                for t in range(kh_ * kw_ * qt):
                    for g in range(CG):
                        vdot4(wsum, g * VL, ONES, wtf, (t * CG + g) * 64, VL, DOT_PORTABLE)
                for j in range(CG * VL):
                    wsum[j] *= 128
            for ow0 in range(0, ow_, MR):
                # A regular tile: every pixel's KW taps are adjacent columns (one kernel row is
                # one run of KW * C bytes) and the pixels' first columns are evenly spaced, so
                # pixel m of kernel row kh starts at rbase(kh) + m * step.
                dcol = tsteps[ow0 // MR] if listed else tile_step(colmap, ow0, MR, ow_, kw_)
                regular = dcol != IRREGULAR
                for m in range(MR):
                    for g in range(CG):
                        if SHIFTED:
                            vcopy_i32(acc, (m * CG + g) * VL, wsum, g * VL, VL)
                        else:
                            vfill_i32(acc, (m * CG + g) * VL, 0, VL)
                coff = colmap[ow0, 0] * c_
                # fused: all valid kernel rows' chunks in one loop (none reads past x)
                fused = regular and nt > 0 and coff + maxoff + (MR - 1) * dcol * c_ <= x.size
                if fused:
                    pbase = xbase + coff
                    fstep = dcol * c_
                    for t in range(nt):
                        o = pbase + toff[t]
                        wo = twof[t]
                        for m in range(MR):
                            for g in range(CG):
                                vdot16(acc, (m * CG + g) * VL, o + m * fstep, wrf, wo + g * 64,
                                       VL, ISA)
                for kh in range(kh_):
                    r = rowmap[oh, kh]
                    if fused and r >= 0:
                        continue                # done above
                    xrow = xbase + (b * h_ + r) * w_ * c_
                    # NOTE: only a run on the last input row can reach past x's end
                    maycross = r == h_ - 1 and b == n_ - 1
                    rbase = xrow + coff if r >= 0 else zbase
                    step = dcol * c_ if r >= 0 else 0
                    for seg in range(1 if regular else kw_):
                        if regular:
                            nq = qr
                            wsrc = wraddr
                            wo0 = kh * qr * CB
                            if maycross:
                                for m in range(MR):
                                    ptr[m] = rbase + m * step
                        else:
                            for m in range(MR):
                                ow = ow0 + m
                                c = colmap[ow, seg] if ow < ow_ else -1
                                ptr[m] = xrow + c * c_ if r >= 0 and c >= 0 else zbase
                            nq = qt
                            wsrc = wtaddr
                            wo0 = (kh * kw_ + seg) * qt * CB
                        nfull = nq
                        if maycross:
                            for m in range(MR):
                                if ptr[m] < xend and ptr[m] + 16 * nq > xend:
                                    nfull = nq - 1
                            if nfull < nq:         # copy those last 16 bytes, zero-filled
                                for m in range(MR):
                                    p = ptr[m] + 16 * nfull
                                    for i in range(16):
                                        if p < xbase or p >= xend:
                                            chunk[m * 16 + i] = zrow[0]
                                        elif p + i < xend:
                                            chunk[m * 16 + i] = xf[U64(p + i - xbase)]
                                        else:
                                            chunk[m * 16 + i] = 0
                        if regular:
                            for q in range(nfull):
                                wo = wo0 + q * CB
                                pq = rbase + 16 * q
                                for m in range(MR):
                                    for g in range(CG):
                                        vdot16(acc, (m * CG + g) * VL, pq + m * step, wsrc,
                                               wo + g * 64, VL, ISA)
                        else:
                            for q in range(nfull):
                                wo = wo0 + q * CB
                                for m in range(MR):
                                    for g in range(CG):
                                        vdot16(acc, (m * CG + g) * VL, ptr[m] + 16 * q, wsrc,
                                               wo + g * 64, VL, ISA)
                        if nfull < nq:
                            wo = wo0 + nfull * CB
                            for m in range(MR):
                                for g in range(CG):
                                    vdot16a(acc, (m * CG + g) * VL, chunk, m * 16, wsrc,
                                            wo + g * 64, VL, ISA)
                for v in range(MR * CG):
                    vcopy_i32(tile, v * VL, acc, v * VL, VL)
                for v in range(MR * CG):       # lane sums: red[pixel * 4CG + channel]
                    vsum4_i32(tile, v * VL, red, v * 4, VL)
                if co_ < 4 * CG:                # compact to [pixel * co_ + channel]
                    for m in range(MR):
                        for j in range(co_):
                            red[m * co_ + j] = red[m * 4 * CG + j]
                npx = min(MR, ow_ - ow0)
                cnt = npx * co_                 # this tile's outputs are contiguous in NHWC
                ob = ((b * oh_ + oh) * ow_ + ow0) * co_
                e = 0
                while e + VL <= cnt:
                    if OUT == 0:
                        vrequant_u8(red, e, brep, e, mrep, e, zyf, lo, hi, of, ob + e, VL)
                    else:
                        vscale_f32(red, e, brep, e, mrep, e, of, ob + e, VL)
                    e += VL
                for j in range(e, cnt):
                    y = F32(red[j] + brep[j]) * mrep[j]
                    if OUT == 0:
                        y = min(max(np.rint(y) + zyf, lo), hi)
                        of[U64(ob + j)] = np.uint8(np.int32(y))
                    else:
                        of[U64(ob + j)] = y
            if OUT == 1:
                activate_span(of, (b * oh_ + oh) * ow_ * co_, ow_ * co_, act, p0, p1)

    return qu8_conv2d_kdot16


@functools.lru_cache(maxsize=None)
def kdot_kernel(mr: int, cg: int, isa: str, epilogue: str, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``qu8_conv2d_kdot16_{mr}x{4*cg}_{isa}_{epilogue}`` (memoised).

    Call ``fn(x, zrow, rowmap, colmap, wrun16, wtap16, bias, mult, out, zy, qmin, qmax, act,
    p0, p1)`` with the arguments of ``igemm_kernel`` (group 1), ``wrun16``/``wtap16`` from
    ``pack_qu8_weights_kdot`` (read-only), Co <= 4 * cg, and ``zrow`` from ``qu8_zero_row``.
    """
    if isa not in _ISA_CODES or epilogue not in EPILOGUES or cg not in KDOT_TILES:
        raise ValueError(f"no qu8 kdot conv kernel {mr}x{4 * cg} {isa} {epilogue}")
    return _dispatcher(functools.partial(_kdot_source, config.fit_rows(mr, cg * VL), cg), isa,
                       epilogue, parallel, cache)


def select_qu8_conv_kdot(mr: int, cg: int, epilogue: str, parallel: bool, isa: str | None = None):
    """(kernel id, dispatcher) of the qu8 kdot conv for this CPU (``isa=None``: ``host_isa()``)."""
    isa = isa or host_isa()
    return kdot_kernel_id(mr, cg, isa, epilogue), kdot_kernel(mr, cg, isa, epilogue, parallel)

