"""qu8 convolution (uint8 activations x int8 weights, int32 accumulators) as an indirect GEMM.

One kernel body, ``qu8_conv2d_igemm_{MR}x{NR}c4_{isa}_{epilogue}``: an output tile of MR pixels of
one output row times NR output channels is accumulated in an int32 stack array that LLVM keeps
in vector registers. The reduction runs over groups of 4 input bytes: one 32-bit word of
activations (4 consecutive input channels of one pixel) is broadcast to every lane and
multiplied with 4 int8 weights per output channel by one ``dot4`` (``kernels/intrinsics.py``):
``vpdpbusd`` on x86 AVX-512 VNNI, ``sdot`` on aarch64 dotprod, plain vector IR elsewhere. The
ISA is chosen once, when a kernel is selected (``select_qu8_conv``); importing this module
compiles nothing, so it imports on any CPU.

Input through the separable indirection tables of ``kernels/indirection.py`` (padding modes,
nearest upsampling, strides, dilations). A padded tap (-1) reads a row of ``zx`` bytes
(``qu8_zero_row``), so every tap contributes ``x * w`` with ``x = zx`` there and the bias'
precomputed ``- zx * sum(w)`` (``qu8_conv_bias``) makes the sum exactly ``sum (x - zx) * w``.

Two reduction layouts of the same weights (both zero-padded, so any 4th byte is harmless):
- per tap, ``pack_qu8_weights``: ``[g*NB, KH, KW, ceil(C/g / 4), NR, 4]``; a pixel's group q
  reads input channels ``4q..4q+3`` of one tap;
- per kernel row, ``pack_qu8_weights_run`` (group 1): ``[NB, KH, ceil(KW*C / 4), NR, 4]``; in a
  regular tile (each pixel's KW taps are adjacent columns) one kernel row of a pixel is one
  contiguous run of KW*C bytes in NHWC, read 4 at a time. For C = 3 (the 9x9 first layer) that
  is 7 groups per row instead of 9 padded ones. When C % 4 == 0 both layouts hold the same bytes.
Reading 4 bytes where fewer remain in a run reads the next pixel's bytes (times zero weights);
only a run that ends at the very end of the input buffer takes a byte-by-byte path.

Epilogues (compile-time variants; contract in ``kernels/reference_q8.py``):
- ``requant``: ``y = clip(rint(f32(acc) * m[c]) + zy, qmin, qmax)`` as uint8 (activation folded
  into qmin/qmax by the lowering);
- ``fp32out``: ``y = act(f32(acc) * m[c])`` as float32 (exact accumulators for a following
  instance norm). acc includes ``bias_q``. Given ``sums`` (no activation), the epilogue also
  writes each output row's per-channel sums of y and y^2 (the norm's statistics, so the norm
  step skips its statistics pass: planning/families/qconv_norm.py).
Kernels are compiled without fast-math, so no multiply-add is contracted: bit-exact against
the numpy reference.

Accumulators must stay within int32: KH*KW*C/g * 255 * 128 + |bias_q| < 2**31.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.f32_conv2d import activate_span, activation_params, conv_tables, readonly
from kernels.intrinsics import (DOT_PORTABLE, DOT_SDOT, DOT_SDOT_EMULATED, load_u32,
                                stack_array, vcopy_i32, vdot4, vfill_i32,
                                vrequant_u8, vscale_f32)
from kernels.reference_q8 import conv_bias_q, requant_multiplier

from kernels.qu8_conv_common import (  # noqa: F401  (re-exported: the family's names)
    EPILOGUES, F32, IRREGULAR, ISAS, MAXT, MAXTILES, STAT_PIXELS, U64, VL, _FLAGS, _ISA_CODES,
    _dispatcher, addresses, host_isa, list_tiles, row_runs, tile_stats, tile_step)
from kernels.qu8_conv2d_kdot import (  # noqa: F401  (re-exported)
    KDOT_MAX_CO, KDOT_TILES, kdot_kernel, kdot_kernel_id, kdot_plan_kernel_id, kdot_tile,
    pack_qu8_weights_kdot, select_qu8_conv_kdot, use_kdot)
# NR (output channels per tile) -> MR (pixels per tile): MR * NR / 16 accumulator vectors.
# AVX-512's rows (in the kernel ids); with fewer vector lanes (AVX2, NEON) the kernel
# factories take ``config.fit_rows(MR, NR)`` rows instead.
TILES = {64: 6, 32: 10, 16: 14}   # NOTE: larger MR spilled broadcasts (test_qu8_asm.py)


def kernel_id(mr: int, nr: int, isa: str, epilogue: str) -> str:
    return f"qu8_conv2d_igemm_{mr}x{nr}c4_{isa}_{epilogue}"


def plan_kernel_id(mr: int, nr: int, epilogue: str) -> str:
    """The ISA-neutral id a plan stores; the binder resolves it with ``select_qu8_conv``."""
    return f"qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}"


def choose_tile(cog: int) -> tuple[int, int]:
    """(MR, NR) for ``cog`` output channels per group: the fewest padded lanes, wider on ties."""
    nr = min(TILES, key=lambda r: (-(-cog // r) * r, -r))
    return TILES[nr], nr


def qu8_conv_bias(bias, w_int8: np.ndarray, sx: float, sw, zx: int) -> np.ndarray:
    """int32[Co] ``rint(b[c] / (sx * sw[c])) - zx * sum(w[c])`` (bias None: 0); see
    ``kernels.reference_q8.conv_bias_q``."""
    return conv_bias_q(bias, w_int8, sx, sw, zx)


def qu8_conv_multiplier(sx: float, sw, sy: float | None = None) -> np.ndarray:
    """float32[Co] ``sx * sw[c] / sy`` (requant), or ``sx * sw[c]`` (``sy=None``, fp32out)."""
    return requant_multiplier(sx, sw, sy)


def pack_qu8_weights(w_int8: np.ndarray, nr: int, group: int = 1) -> np.ndarray:
    """int8 ``[Co, C/g, KH, KW]`` -> int8 ``[g*NB, KH, KW, ceil(C/g / 4), NR, 4]``, NB =
    ceil(Co/g / NR): element ``[g*NB + b, kh, kw, q, j, i]`` is ``w[g*Co/g + b*NR + j, 4q + i,
    kh, kw]``, zero past the channel counts."""
    w = np.asarray(w_int8)
    if w.dtype != np.int8 or w.ndim != 4:
        raise ValueError(f"qu8 weights must be int8 [Co, C/g, KH, KW], got {w.dtype} {w.shape}")
    co, cig, kh, kw = w.shape
    cog = co // group
    nb, qt = -(-cog // nr), -(-cig // 4)
    wg = np.zeros((group, nb * nr, 4 * qt, kh, kw), np.int8)
    wg[:, :cog, :cig] = w.reshape(group, cog, cig, kh, kw)
    packed = wg.reshape(group, nb, nr, qt, 4, kh, kw).transpose(0, 1, 5, 6, 3, 2, 4)
    return np.ascontiguousarray(packed.reshape(group * nb, kh, kw, qt, nr, 4))


def pack_qu8_weights_run(w_int8: np.ndarray, nr: int) -> np.ndarray:
    """int8 ``[Co, C, KH, KW]`` (group 1) -> int8 ``[NB, KH, ceil(KW*C / 4), NR, 4]``: element
    ``[b, kh, q, j, i]`` is ``w[b*NR + j, ci, kh, kw]`` with ``kw*C + ci = 4q + i``."""
    w = np.asarray(w_int8)
    co, c, kh, kw = w.shape
    nb, qr = -(-co // nr), -(-(kw * c) // 4)
    wr = np.zeros((nb * nr, kh, 4 * qr), np.int8)
    wr[:co, :, :kw * c] = w.transpose(0, 2, 3, 1).reshape(co, kh, kw * c)
    packed = wr.reshape(nb, nr, kh, qr, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(packed)


def qu8_run_weights(w_int8: np.ndarray, wp: np.ndarray, nr: int, group: int = 1) -> np.ndarray:
    """The kernels' ``wrun`` argument: ``pack_qu8_weights_run`` when group == 1 and C % 4,
    else a 5-D view of ``wp`` (the same bytes when C % 4 == 0; unused when group > 1)."""
    if group == 1 and w_int8.shape[1] % 4:
        return pack_qu8_weights_run(w_int8, nr)
    gnb, kh, kw, qt = wp.shape[:4]
    return wp.reshape(gnb, kh, kw * qt, nr, 4)


def qu8_zero_row(zx: int, c: int, kw: int, group: int = 1) -> np.ndarray:
    """uint8 row of ``zx`` that padded taps read: as long as the longest run any qu8 conv
    kernel reads (16-byte chunks of a KW*C kernel row, or of C/g channels)."""
    return np.full(16 * -(-max(kw * c, c // group, 1) // 16), zx, np.uint8)


def _igemm_source(MR: int, NR: int, ISA: int, OUT: int, parallel: bool):
    ACC = MR * NR
    NV = NR // VL                       # accumulator vectors per pixel
    STAT_TILES = max(1, STAT_PIXELS // MR)  # tiles per float32 partial of the statistics
    GB = 4 * NR                         # packed weight bytes per group of 4 input bytes
    SHIFTED = ISA in (DOT_SDOT, DOT_SDOT_EMULATED)     # dot4 computes (x - 128) * w
    ONES = 0x01010101
    loop = numba.prange if parallel else range

    def qu8_conv2d_igemm(x, zrow, rowmap, colmap, wp, wrun, bias, mult, out, group, zy, qmin,
                         qmax, act, p0, p1, sums=None):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        cig, cog = c_ // group, co_ // group
        nb = wp.shape[0] // group
        qt, qr = wp.shape[3], wrun.shape[2]
        if zrow.size < 4 * qt or (cig == c_ and zrow.size < 4 * qr):
            raise ValueError("qu8_conv2d: zero-point row shorter than a kernel row")
        if cig == c_ and qr != (kw_ * c_ + 3) // 4:
            raise ValueError("qu8_conv2d: wrun is not [NB, KH, ceil(KW*C/4), NR, 4]")
        if sums is not None:
            if OUT != 1 or act != 0 or sums.size != n_ * oh_ * 2 * co_:
                raise ValueError("qu8_conv2d: statistics need fp32out, no activation and "
                                 "sums f64[N * OH * 2 * Co]")
        wf = wp.reshape(wp.size)
        wrf = wrun.reshape(wrun.size)
        of, xf = out.reshape(out.size), x.reshape(x.size)
        xbase, xend, zbase, wtaddr, wraddr = addresses(x, zrow, wp, wrun)
        zyf, lo, hi = F32(zy), F32(qmin), F32(qmax)
        tsteps = stack_array(MAXTILES, np.int64)    # tiles' regularity, once per call
        listed = list_tiles(tsteps, colmap, MR, ow_, kw_)
        for row in loop(n_ * oh_):
            b, oh = row // oh_, row % oh_
            acc = stack_array(ACC, np.int32)       # the register tile: constant offsets only
            tile = stack_array(ACC, np.int32)
            ptr = stack_array(MR, np.int64)        # raw address each pixel reads from
            words = stack_array(MR, np.uint32)
            wsum = stack_array(NR, np.int32)
            sh = stack_array(NR, np.float32)       # statistics: the row's first output,
            rs = stack_array(NR, np.float32)       # a tile's sums of (y - sh), (y - sh)^2
            rq = stack_array(NR, np.float32)
            s64 = stack_array(NR, np.float64)      # ... and the row's, in float64
            q64 = stack_array(NR, np.float64)
            toff = stack_array(MAXT, np.int64)     # fused path: (kh, q) -> input offset
            twof = stack_array(MAXT, np.int64)     # ... and packed weight offset
            nt, maxoff = 0, 0
            if cig == c_ and kh_ * qr <= MAXT:
                nt, maxoff = row_runs(toff, twof, rowmap, oh, b * h_ * w_ * c_, w_ * c_, kh_,
                                      qr, 4, GB)
            for gb in range(group * nb):
                g = gb // nb
                co0 = (gb - g * nb) * NR
                ncv = min(NR, cog - co0)
                bo = g * cog + co0
                wtap0 = gb * kh_ * kw_ * qt * GB
                wrun0 = gb * kh_ * qr * GB
                first = True
                ntile = 0
                if OUT == 1:
                    if sums is not None:
                        for j in range(NR):
                            s64[j] = 0.0
                            q64[j] = 0.0
                if SHIFTED:      # dot4 gives sum (x - 128) * w: add back 128 * sum(w)
                    for v in range(NV):
                        vfill_i32(wsum, v * VL, 0, VL)
                    for t in range(kh_ * kw_ * qt):     # dot with bytes of 1: sum(w)
                        for v in range(NV):
                            vdot4(wsum, v * VL, ONES, wf, wtap0 + t * GB + v * 4 * VL, VL,
                                  DOT_PORTABLE)
                    for j in range(NR):
                        wsum[j] *= 128
                for ow0 in range(0, ow_, MR):
                    # A regular tile: every pixel's KW taps are adjacent columns (with NHWC and
                    # one group a kernel row is one run of KW * C bytes) and the pixels' first
                    # columns are evenly spaced: pixel m of kernel row kh starts at
                    # xbase + coff + m * step + rowoff(kh).
                    dcol = tsteps[ow0 // MR] if listed else tile_step(colmap, ow0, MR, ow_, kw_)
                    regular = cig == c_ and dcol != IRREGULAR
                    coff = colmap[ow0, 0] * c_
                    step = dcol * c_
                    # fused: all valid kernel rows' words in one loop (none reads past x)
                    fused = regular and nt > 0 and coff + maxoff + (MR - 1) * step <= x.size
                    for m in range(MR):
                        for v in range(NV):
                            if SHIFTED:     # the tile starts at 128 * sum(w)
                                vcopy_i32(acc, (m * NV + v) * VL, wsum, v * VL, VL)
                            else:
                                vfill_i32(acc, (m * NV + v) * VL, 0, VL)
                    if fused:
                        pbase = xbase + coff
                        for t in range(nt):
                            o = pbase + toff[t]
                            wo = wrun0 + twof[t]
                            for m in range(MR):
                                xw = load_u32(o + m * step)
                                for v in range(NV):
                                    vdot4(acc, (m * NV + v) * VL, xw, wrf, wo + v * 4 * VL,
                                          VL, ISA)
                    for kh in range(kh_):
                        r = rowmap[oh, kh]
                        if fused and r >= 0:
                            continue            # done above
                        xrow = xbase + (b * h_ + r) * w_ * c_
                        maycross = r == h_ - 1 and b == n_ - 1
                        for seg in range(1 if regular else kw_):
                            if regular:
                                for m in range(MR):
                                    ptr[m] = xrow + coff + m * step if r >= 0 else zbase
                                nq = qr
                                wsrc = wraddr
                                wo0 = wrun0 + kh * qr * GB
                            else:
                                for m in range(MR):
                                    ow = ow0 + m
                                    c = colmap[ow, seg] if ow < ow_ else -1
                                    ptr[m] = xrow + c * c_ + g * cig if r >= 0 and c >= 0 \
                                        else zbase
                                nq = qt
                                wsrc = wtaddr
                                wo0 = wtap0 + (kh * kw_ + seg) * qt * GB
                            nfull = nq
                            if maycross:        # would the last word read past x?
                                for m in range(MR):
                                    if ptr[m] < xend and ptr[m] + 4 * nq > xend:
                                        nfull = nq - 1
                            if nfull < nq:         # rare: assemble those last words bytewise
                                for m in range(MR):
                                    p = ptr[m] + 4 * nfull
                                    if p < xbase or p >= xend or p + 4 <= xend:  # whole
                                        words[m] = load_u32(p)
                                    else:
                                        word = 0
                                        for i in range(4):
                                            if p + i < xend:
                                                word |= np.int64(xf[U64(p + i - xbase)]) << (8 * i)
                                        words[m] = word
                            for q in range(nfull):
                                wo = wo0 + q * GB
                                for m in range(MR):
                                    xw = load_u32(ptr[m] + 4 * q)
                                    for v in range(NV):
                                        vdot4(acc, (m * NV + v) * VL, xw, wsrc,
                                              wo + v * 4 * VL, VL, ISA)
                            if nfull < nq:
                                wo = wo0 + nfull * GB
                                for m in range(MR):
                                    for v in range(NV):
                                        vdot4(acc, (m * NV + v) * VL, words[m], wsrc,
                                              wo + v * 4 * VL, VL, ISA)
                    for v in range(MR * NV):
                        vcopy_i32(tile, v * VL, acc, v * VL, VL)
                    nvec = ncv // VL        # whole vectors of channels
                    for m in range(MR):
                        ow = ow0 + m
                        if ow < ow_:
                            ob = ((b * oh_ + oh) * ow_ + ow) * co_ + bo
                            for v in range(nvec):
                                if OUT == 0:
                                    vrequant_u8(tile, m * NR + v * VL, bias, bo + v * VL, mult,
                                                bo + v * VL, zyf, lo, hi, of, ob + v * VL, VL)
                                else:
                                    vscale_f32(tile, m * NR + v * VL, bias, bo + v * VL, mult,
                                               bo + v * VL, of, ob + v * VL, VL)
                            for j in range(nvec * VL, ncv):
                                a = tile[m * NR + j] + bias[U64(bo + j)]
                                y = F32(a) * mult[U64(bo + j)]
                                if OUT == 0:
                                    y = min(max(np.rint(y) + zyf, lo), hi)
                                    of[U64(ob + j)] = np.uint8(np.int32(y))
                                else:
                                    of[U64(ob + j)] = y
                            if OUT == 1:
                                if sums is not None:
                                    if first:
                                        for j in range(NR):
                                            rs[j] = F32(0)
                                            rq[j] = F32(0)
                                    first = tile_stats(of, ob, ncv, nvec, first, sh, rs, rq)
                    if OUT == 1:
                        if sums is not None:    # float32 partial sums -> float64 row sums
                            ntile += 1
                            if ntile == STAT_TILES or ow0 + MR >= ow_:
                                ntile = 0
                                for j in range(NR):
                                    s64[j] += np.float64(rs[j])
                                    q64[j] += np.float64(rq[j])
                                    rs[j] = F32(0)
                                    rq[j] = F32(0)
                if OUT == 1:
                    if sums is not None:        # unshifted: sum y, sum y^2 per channel
                        so = (b * oh_ + oh) * 2 * co_ + bo
                        for j in range(ncv):
                            h = np.float64(sh[j])
                            sums[so + j] = ow_ * h + s64[j]
                            sums[so + co_ + j] = ow_ * h * h + 2.0 * h * s64[j] + q64[j]
            if OUT == 1:
                activate_span(of, (b * oh_ + oh) * ow_ * co_, ow_ * co_, act, p0, p1)

    return qu8_conv2d_igemm


@functools.lru_cache(maxsize=None)
def igemm_kernel(mr: int, nr: int, isa: str, epilogue: str, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``qu8_conv2d_igemm_{mr}x{nr}c4_{isa}_{epilogue}`` (memoised;
    compiled on first call, so selecting a variant the CPU lacks fails only when called).

    Call ``fn(x, zrow, rowmap, colmap, wp, wrun, bias, mult, out, group, zy, qmin, qmax, act,
    p0, p1)``:
        x:      u8[N, H, W, C] C-contiguous, read-only view (the input before upsampling)
        zrow:   u8[>= max(4*QT, 4*QR)] filled with zx (``qu8_zero_row``), read-only
        rowmap: i32[OH, KH], colmap: i32[OW, KW] (kernels/indirection.py), read-only
        wp:     i8[g*NB, KH, KW, QT, nr, 4] from ``pack_qu8_weights``, read-only
        wrun:   i8[NB, KH, QR, nr, 4], QR = ceil(KW*C / 4), from ``qu8_run_weights`` (a view
                of ``wp`` when C % 4 == 0; unused when group > 1), read-only
        bias:   i32[Co] bias_q (``qu8_conv_bias``); mult: f32[Co] (``qu8_conv_multiplier``)
        out:    u8 (requant) or f32 (fp32out) [N, OH, OW, Co]; may not overlap x
        group, zy, qmin, qmax, act: int (zy/qmin/qmax used by requant, act by fp32out);
        p0, p1: float32 activation params (fp32out)
        sums:   optional (fp32out with act 0 only) f64[N * OH * 2 * Co]: per output row and
                channel the sums of the stored outputs and of their squares, an instance
                norm's statistics without another pass (float32 sums of ``y - y[row, 0]`` over
                up to STAT_PIXELS pixels, then float64; ``kernels/f32_norm_qu8.py`` reads them)
    ``cache=False`` compiles a fresh dispatcher whose ``inspect_asm()`` works (tests).
    """
    if isa not in _ISA_CODES or epilogue not in EPILOGUES or nr % VL:
        raise ValueError(f"no qu8 conv kernel {mr}x{nr} {isa} {epilogue}")
    return _dispatcher(functools.partial(_igemm_source, config.fit_rows(mr, nr), nr), isa,
                       epilogue, parallel, cache)


def select_qu8_conv(mr: int, nr: int, epilogue: str, parallel: bool, isa: str | None = None):
    """(kernel id, dispatcher) of the qu8 igemm conv for this CPU (``isa=None``: ``host_isa()``)."""
    isa = isa or host_isa()
    return kernel_id(mr, nr, isa, epilogue), igemm_kernel(mr, nr, isa, epilogue, parallel)


def conv2d(x_u8, w_i8, bias_q, mult, zx, zy=0, qmin=0, qmax=255, *, strides=(1, 1),
           dilations=(1, 1), pads=(0, 0, 0, 0), pad_mode="constant", upsample=1, group=1,
           epilogue="requant", act=0, act_params=(), isa=None, tile=None, parallel=None,
           method=None, sums=None):
    """Convenience entry with ``kernels.reference_q8.qu8_conv2d_reference``'s arguments (packs
    on every call; tests and benchmarks). ``method``: "igemm", "kdot" or None (kdot when
    ``use_kdot``); ``tile``: (MR, NR) of igemm or (MR, CG) of kdot. Returns u8 (requant) or
    f32 (fp32out) NHWC. ``sums``: f64[N * OH * 2 * Co] row statistics to write (igemm
    fp32out)."""
    x = np.ascontiguousarray(x_u8, np.uint8)
    co, cig, kh, kw = w_i8.shape
    c = x.shape[3]
    rowmap, colmap = conv_tables(x.shape, (kh, kw), strides, dilations, pads, pad_mode, upsample)
    dtype = np.uint8 if epilogue == "requant" else np.float32
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), dtype)
    if parallel is None:
        parallel = config.use_parallel(out.size * cig * kh * kw // config.MAC_WORK)
    p0, p1 = activation_params(act, act_params) if epilogue == "fp32out" else (0.0, 0.0)
    method = method or ("kdot" if use_kdot(co, group) else "igemm")
    ro = readonly
    common = (ro(np.ascontiguousarray(bias_q, np.int32)), ro(np.ascontiguousarray(mult, F32)),
              out)
    tail = (int(zy), int(qmin), int(qmax), int(act), F32(p0), F32(p1))
    zrow = ro(qu8_zero_row(zx, c, kw, group))
    if method == "kdot":
        mr, cg = tile or kdot_tile(co)
        wrun, wtap = pack_qu8_weights_kdot(w_i8, cg)
        _, fn = select_qu8_conv_kdot(mr, cg, epilogue, parallel, isa)
        fn(ro(x), zrow, ro(rowmap), ro(colmap), ro(wrun), ro(wtap), *common, *tail)
        return out
    mr, nr = tile or choose_tile(co // group)
    wp = pack_qu8_weights(w_i8, nr, group)
    wrun = qu8_run_weights(w_i8, wp, nr, group)
    _, fn = select_qu8_conv(mr, nr, epilogue, parallel, isa)
    if sums is None:
        fn(ro(x), zrow, ro(rowmap), ro(colmap), ro(wp), ro(wrun), *common, group, *tail)
    else:
        fn(ro(x), zrow, ro(rowmap), ro(colmap), ro(wp), ro(wrun), *common, group, *tail, sums)
    return out


def conv2d_instnorm(x_u8, w_i8, bias_q, mult, zx, scale, bias, s, z, eps=1e-5, act=0,
                    act_params=(), residual=None, rs=1.0, rz=0, qmin=0, qmax=255, *, isa=None,
                    tile=None, parallel=None, **geometry):
    """Convenience entry of the fused conv + instance norm step
    (``qu8_conv2d_igemm_{MR}x{NR}c4_instance_norm[_add]``) with the arguments of
    ``kernels.reference_q8.qu8_conv2d_instnorm_reference``: the igemm fp32out conv writing its
    row statistics, then ``kernels/f32_norm_qu8.py``'s norm from them. uint8 NHWC."""
    from kernels import f32_norm_qu8
    x = np.ascontiguousarray(x_u8, np.uint8)
    rows = conv_tables(x.shape, w_i8.shape[2:], geometry.get("strides", (1, 1)),
                       geometry.get("dilations", (1, 1)), geometry.get("pads", (0, 0, 0, 0)),
                       geometry.get("pad_mode", "constant"), geometry.get("upsample", 1))[0]
    sums = np.zeros(x.shape[0] * rows.shape[0] * 2 * w_i8.shape[0], np.float64)
    y = conv2d(x, w_i8, bias_q, mult, zx, epilogue="fp32out", isa=isa, tile=tile,
               parallel=parallel, method="igemm", sums=sums, **geometry)
    out = np.empty(y.shape, np.uint8)
    fn, args = f32_norm_qu8.instance_norm_qu8_call(
        y, scale, bias, out, eps, act, act_params, s, z, qmin, qmax, residual, rs, rz,
        parallel=parallel, row_sums=sums)
    fn(*args)
    return out


# --- few output channels: lanes over (output channel, 4 words of 16 input bytes) ------------
# NOTE: with Co = 3..8 an NR = 16 igemm tile wastes half or more of every vpdpbusd. Here 16
# input bytes are repeated in every 128 bits of the vector (vbroadcasti32x4) and lane (c, i)
# accumulates channel 4g + c over word i; the epilogue adds each channel's 4 lanes. Used for
# group == 1 and Co <= KDOT_MAX_CO (CG = ceil(Co / 4) vectors per pixel).


# The numpy reference of the family's rows in kernels/table.py.
def _reference():
    from kernels import reference_q8
    return reference_q8.qu8_conv2d_reference


def _instnorm_reference():
    from kernels import reference_q8
    return reference_q8.qu8_conv2d_instnorm_reference


INSTNORM_SUFFIXES = ("", "_add")


def instnorm_kernel_id(mr: int, nr: int, suffix: str = "") -> str:
    """The plan id of the fused conv + instance norm step (planning/families/qconv_norm.py):
    ``suffix`` "" (uint8 out) or "_add" (the residual ADD, uint8 out)."""
    return f"qu8_conv2d_igemm_{mr}x{nr}c4_instance_norm{suffix}"
