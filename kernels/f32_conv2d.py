"""fp32 convolution over NHWC activations: a register-tiled indirect GEMM and a few-channel variant.

``f32_conv2d_igemm_{MR}x{NR}_minmax``: an output tile of MR pixels of one output row times NR
output channels is accumulated in a fixed-size stack array that LLVM keeps in zmm registers. For
every reduction element the kernel broadcasts MR input values and runs over NR contiguous packed
output channels (one FMA per 16 lanes). The input is read through the indirection tables of
``kernels/indirection.py``, so zero/reflect/edge padding, nearest upsampling, strides and
dilations cost nothing and no padded copy exists. A *regular* tile (every pixel reads KW
adjacent input columns, one group) reduces a whole kernel row as one contiguous run of KW * C
inputs, which keeps few-input-channel layers (9x9, C = 3) at full speed; other tiles reduce tap by
tap, zeroing the inputs of padded taps.

``f32_conv2d_kdot4_{MR}x{4*CG}_minmax``: for Co <= 8 (multistyle26's 32->8, 8->4, 4->3) a vector
holds 4 output channels x 4 consecutive reduction elements instead of 16 channels, so 3 or 4
output channels do not waste 3/4 of every FMA.

Groups: each group is its own GEMM with channel offsets (packed weights are per group). The
igemm kernel also runs transposed convolutions (``f32_conv_transpose2d.py``): their tables
describe a zero-stuffed input, and ``step`` > 1 makes every tile hold output pixels of one phase
(``ow0, ow0 + step, ...``) so tiles share their holes and skip them whole.

Planar input (``in_nchw``, the NCHW image of a model's first conv): a regular tile reads C runs
of KW per kernel row (weights packed ``[.., KH, C/g, KW, NR]``); border tiles read channels
``H * W`` apart.

Epilogue (same pass): ``acc + bias[co] (+ residual[co] for co < Cr, the residual's channels:
Cr < Co is a residual zero-padded on the channel axis)`` per tile, then the activation (an
``Activation`` int code): RELU and CLAMP as a clamp on the registers before the store (igemm),
the others (``kernels/activation.activate_span``) and a PReLU's per-channel slopes
(``prelu_span``) over each finished row part (``row_splits`` keeps a part's outputs within L2).
With ``want_sums`` the epilogue also writes
per-row sums of the outputs and their squares: an instance norm's statistics without another
pass over the tensor (planning/families/conv.py ``fused_norm``).

NOTE: the accumulator tile is touched only by the vector intrinsics of ``kernels/intrinsics.py``
at compile-time-constant offsets; one variable index into it would stop LLVM promoting it to
registers, and plain loops over the channels let LLVM vectorise the reduction loop instead, with
gathers. Every tile is checked with ``inspect_asm()`` (tests/kernels/test_conv_asm.py).
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.config import jit
from kernels.activation import Activation, activate_span, prelu_span
from kernels.activation import params as activation_params
from kernels.indirection import conv_axis_map
from kernels.intrinsics import stack_array, vadd, vclamp, vcopy, vfill, vfma, vfma4
from kernels.f32_norm import vshift_stats

F32 = np.float32
U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code
# NR (output channels per tile, a multiple of 16 lanes) -> MR (pixels per tile): 16 zmm
# accumulators each, leaving 16 registers for weights and broadcasts. These MR (in the kernel
# ids, so plans are the same everywhere) are AVX-512's: on a machine with fewer vector lanes
# the kernel factories take ``machine_rows(MR, NR)`` rows instead (AVX2, NEON).
TILES = {64: 4, 32: 8, 16: 16}
VL = 16                                  # float32 lanes of one vector (zmm)
# NOTE: every pixel of a tile keeps its own input pointer in the reduction loop, and x86-64 has
# 16 general registers: the 16-pixel tile reloaded ~20 pointers from the stack per 32 FMAs.
# With 8 pixels (8 accumulators still cover the FMA latency) the 16-channel tile ran 0-35%
# faster (Zen 4, one thread: 1x1 272->272 group 4 on 14x14 72 against 49 GFLOP/s, 3x3 64->16
# on 28x28 74 against 59, 1x1 512->1000 on 13x13 101 against 91).
PIXEL_POINTERS = 8


def machine_rows(mr: int, nr: int) -> int:
    """The pixels of tile ``mr`` x ``nr`` as compiled here (``config.fit_rows``, at most
    ``PIXEL_POINTERS``)."""
    return min(config.fit_rows(mr, nr), PIXEL_POINTERS)


def kernel_id(mr: int, nr: int) -> str:
    return f"f32_conv2d_igemm_{mr}x{nr}_minmax"


def choose_tile(cog: int) -> tuple[int, int]:
    """(MR, NR) for ``cog`` output channels per group: the fewest padded lanes, wider on ties."""
    nr = min(TILES, key=lambda r: (-(-cog // r) * r, -r))
    return TILES[nr], nr


def pack_weights(w: np.ndarray, nr: int, group: int = 1, nchw: bool = False) -> np.ndarray:
    """Conv weights ``[Co, Ci/g, KH, KW]`` -> ``f32[g * NB, KH, KW, Ci/g, NR]``, NB = ceil(Co/g / NR)
    (``nchw``: ``f32[g * NB, KH, Ci/g, KW, NR]``, the order a planar input's runs are read in).

    Block ``gb = g * NB + b`` holds output channels ``g * Co/g + b * NR + j`` of group ``g``;
    channels past the group's end are zero.
    """
    co, cig, kh, kw = w.shape
    cog = co // group
    nb = -(-cog // nr)
    wg = np.zeros((group, nb * nr, cig, kh, kw), F32)
    wg[:, :cog] = w.reshape(group, cog, cig, kh, kw)
    wg = wg.reshape(group, nb, nr, cig, kh, kw)
    if nchw:
        return np.ascontiguousarray(wg.transpose(0, 1, 4, 3, 5, 2).reshape(
            group * nb, kh, cig, kw, nr))
    packed = wg.transpose(0, 1, 4, 5, 3, 2)
    return np.ascontiguousarray(packed.reshape(group * nb, kh, kw, cig, nr))


@jit(inline="always")
def kw_len(colmap):
    return colmap.shape[1]


_RELU, _CLAMP = int(Activation.RELU), int(Activation.CLAMP)


@jit(inline="always")
def epilogue_clamp(act, p0, p1):
    """(lo, hi, rest) of activation ``act``: RELU and CLAMP are a clamp on the tile's registers
    before they are stored; ``rest`` (0 when the clamp covers it) runs over the row part's
    finished outputs.

    NOTE: ``rest`` over each pixel's block instead (16-64 floats, or 1 for a 1-channel output)
    cost one ``activate_span`` call per pixel: MediaPipe's selfie net's last conv (256x256
    pixels, 1 channel, sigmoid) went from 0.8 to 2.8 ms."""
    inf = F32(np.inf)
    if act == _RELU:
        return F32(0), inf, 0
    if act == _CLAMP:           # (lo, hi)
        return p0, p1, 0
    return -inf, inf, act


def _igemm_source(MR: int, NR: int, parallel: bool):
    ACC = MR * NR
    NV = NR // VL                       # vectors per pixel

    loop = numba.prange if parallel else range

    # NOTE: the row is its own function, called by the serial and the parallel variant alike:
    # inlined into a serial loop, LLVM allocated its registers worse than in the parfor's
    # outlined body (multistyle26's 9x9 stem at 256x256 on one thread: 11.8 ms serial against
    # 10.4 ms prange; outlined, 10.5 ms).
    @jit
    def igemm_row(row, lo, hi, x, rowmap, colmap, wp, bias, residual, out, group, step, act, p0,
                  p1, slopes, has_res, sums, want_sums, in_nchw):
        """Output row ``row``, columns ``[lo, hi)`` (``lo`` a multiple of ``step * MR``)."""
        if in_nchw:        # planar input: a regular tile reads C runs of KW per kernel row
            n_, c_, h_, w_ = x.shape
            ps, cs, nrun, runlen = 1, h_ * w_, c_, kw_len(colmap)
        else:              # NHWC: one run of KW * C per kernel row
            n_, h_, w_, c_ = x.shape
            ps, cs, nrun, runlen = c_, 1, 1, kw_len(colmap) * c_
        img = h_ * w_ * c_
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        cig, cog = c_ // group, co_ // group
        nb = wp.shape[0] // group
        xf = x.reshape(x.size)
        wf = wp.reshape(wp.size)
        rf = residual.reshape(residual.size)
        cr = residual.shape[3]          # the residual's channels: added to the first cr outputs
        of = out.reshape(out.size)
        tap_size = cig * NR
        wk = kw_ * NR if in_nchw else NR     # weight stride between a tap's input channels
        b = row // oh_
        oh = row - b * oh_
        lo_, hi_, rest = epilogue_clamp(act, p0, p1)
        acc = stack_array(ACC, np.float32)     # the register tile: constant offsets only
        tile = stack_array(ACC, np.float32)
        offs = stack_array(MR, np.int64)
        scale = stack_array(MR, np.float32)
        col0 = stack_array(MR, np.int64)
        rs = stack_array(NR, np.float32)     # row sums of (y - sh), (y - sh)^2
        rq = stack_array(NR, np.float32)
        sh = stack_array(NR, np.float32)     # the row's first output: the shift
        for gb in range(group * nb):
            g = gb // nb
            co0 = (gb - g * nb) * NR
            ncv = min(NR, cog - co0)
            wblock = gb * kh_ * kw_ * tap_size
            first = True
            for ph in range(step):
                for ow0 in range(lo + ph, min(hi, ow_), step * MR):
                    # A regular tile reads, for every pixel, KW adjacent input columns: with
                    # NHWC and one group, its taps of one kernel row are one contiguous run
                    # of KW * C inputs matching KW * C contiguous packed weight rows.
                    regular = cig == c_ and ow0 + (MR - 1) * step < ow_
                    for m in range(MR):
                        if regular:
                            ow = ow0 + m * step
                            c = colmap[ow, 0]
                            col0[m] = c
                            regular = c >= 0
                            for kw in range(1, kw_):
                                if colmap[ow, kw] != c + kw:
                                    regular = False
                    for v in range(MR * NV):
                        vfill(acc, v * VL, F32(0), VL)
                    for kh in range(kh_):
                        r = rowmap[oh, kh]
                        if r < 0:
                            continue
                        xrow = b * img + r * w_ * ps
                        strided = False
                        for seg in range(nrun if regular else kw_):
                            if regular:
                                for m in range(MR):
                                    offs[m] = xrow + col0[m] * ps + seg * cs
                                nvalid = MR
                                length = runlen
                                wo0 = wblock + (kh * nrun + seg) * runlen * NR
                            else:
                                nvalid = 0
                                for m in range(MR):
                                    ow = ow0 + m * step
                                    c = colmap[ow, seg] if ow < ow_ else -1
                                    offs[m] = xrow + max(c, 0) * ps + g * cig * cs
                                    scale[m] = F32(1) if c >= 0 else F32(0)
                                    nvalid += c >= 0
                                length = cig
                                if in_nchw:
                                    wo0 = wblock + (kh * cig * kw_ + seg) * NR
                                    strided = nvalid > 0
                                else:
                                    wo0 = wblock + (kh * kw_ + seg) * tap_size
                            if strided:         # planar border tile: channels cs apart
                                for k in range(length):
                                    wo = wo0 + k * wk
                                    for m in range(MR):
                                        xv = xf[U64(offs[m] + k * cs)] * scale[m]
                                        for v in range(NV):
                                            vfma(acc, (m * NV + v) * VL, xv, wf, wo + v * VL, VL)
                            elif nvalid == MR:
                                for k in range(length):
                                    wo = wo0 + k * NR
                                    for m in range(MR):
                                        xv = xf[U64(offs[m] + k)]
                                        for v in range(NV):
                                            vfma(acc, (m * NV + v) * VL, xv, wf, wo + v * VL, VL)
                            elif nvalid > 0:   # border or tail tile: zero missing inputs
                                for k in range(length):
                                    wo = wo0 + k * NR
                                    for m in range(MR):
                                        xv = xf[U64(offs[m] + k)] * scale[m]
                                        for v in range(NV):
                                            vfma(acc, (m * NV + v) * VL, xv, wf, wo + v * VL, VL)
                    bo = g * cog + co0
                    # a narrow residual's last channels may end inside a vector: scalar then
                    if ncv == NR and (cr >= bo + NR or cr <= bo or (cr - bo) % VL == 0):
                        for m in range(MR):
                            ow = ow0 + m * step
                            if ow < ow_:
                                pixel = (b * oh_ + oh) * ow_ + ow
                                ob = pixel * co_ + bo
                                for v in range(NV):
                                    a = (m * NV + v) * VL
                                    vadd(acc, a, bias, bo + v * VL, VL)
                                    if has_res and bo + v * VL < cr:
                                        vadd(acc, a, rf, pixel * cr + bo + v * VL, VL)
                                    vclamp(acc, a, lo_, hi_, VL)
                                    vcopy(of, ob + v * VL, acc, a, VL)
                                if want_sums:
                                    if first:
                                        first = False
                                        for v in range(NV):
                                            vcopy(sh, v * VL, acc, m * NV * VL + v * VL, VL)
                                            vfill(rs, v * VL, F32(0), VL)
                                            vfill(rq, v * VL, F32(0), VL)
                                    for v in range(NV):
                                        vshift_stats(rs, rq, v * VL, acc, (m * NV + v) * VL,
                                                     sh, VL)
                        continue
                    for v in range(MR * NV):
                        vcopy(tile, v * VL, acc, v * VL, VL)
                    for m in range(MR):
                        ow = ow0 + m * step
                        if ow < ow_:
                            pixel = (b * oh_ + oh) * ow_ + ow
                            ob = pixel * co_ + bo
                            for j in range(ncv):
                                y = tile[U64(m * NR + j)] + bias[U64(bo + j)]
                                if has_res and bo + j < cr:
                                    y += rf[U64(pixel * cr + bo + j)]
                                y = lo_ if y < lo_ else y
                                of[U64(ob + j)] = hi_ if y > hi_ else y
                            if want_sums:
                                if first:
                                    first = False
                                    for j in range(ncv):
                                        sh[j] = of[U64(ob + j)]
                                        rs[j] = F32(0)
                                        rq[j] = F32(0)
                                for j in range(ncv):
                                    d = of[U64(ob + j)] - sh[j]
                                    rs[j] += d
                                    rq[j] += d * d
            if want_sums:       # float64 row sums of y and y^2 per channel
                so = (b * oh_ + oh) * 2 * co_ + g * cog + co0
                for j in range(ncv):
                    h, s1 = np.float64(sh[j]), np.float64(rs[j])
                    sums[so + j] = ow_ * h + s1
                    sums[so + co_ + j] = ow_ * h * h + 2.0 * h * s1 + np.float64(rq[j])
        end = min(hi, ow_)
        if rest != 0 and end > lo:      # over the part's finished pixels (row_splits: <= L2)
            activate_span(of, ((b * oh_ + oh) * ow_ + lo) * co_, (end - lo) * co_, rest, p0, p1)
        if slopes.size > 0 and end > lo:
            prelu_span(of, ((b * oh_ + oh) * ow_ + lo) * co_, end - lo, co_, slopes)

    def f32_conv2d_igemm(x, rowmap, colmap, wp, bias, residual, out, group, step, act, p0, p1,
                         slopes, has_res, sums, want_sums, in_nchw, splits):
        span = -(-out.shape[2] // (splits * step * MR)) * step * MR
        for t in loop(out.shape[0] * out.shape[1] * splits):
            row = t // splits
            lo = (t - row * splits) * span
            igemm_row(row, lo, lo + span, x, rowmap, colmap, wp, bias, residual, out, group, step,
                      act, p0, p1, slopes, has_res, sums, want_sums, in_nchw)

    return f32_conv2d_igemm


@functools.lru_cache(maxsize=None)
def igemm_kernel(mr: int, nr: int, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``f32_conv2d_igemm_{mr}x{nr}_minmax`` (memoised).

    Call ``fn(x, rowmap, colmap, wp, bias, residual, out, group, step, act, p0, p1, slopes,
    has_res, sums, want_sums, in_nchw, splits)``:
        x:        f32[N, H, W, C] C-contiguous, read-only view (the input before upsampling), or
                  f32[N, C, H, W] with ``in_nchw`` (weights from ``pack_weights(..., nchw=True)``)
        rowmap:   i32[OH, KH], colmap: i32[OW, KW] (kernels/indirection.py), read-only
        wp:       f32[g * NB, KH, KW, C/g, nr] from ``pack_weights``, read-only
        bias:     f32[Co] read-only (zeros when the conv has none)
        residual: f32[N, OH, OW, Cr] C-contiguous read-only view, Cr <= Co (added to the
                  first Cr output channels: a zero-padded residual, unpadded), read only when
                  ``has_res`` (else pass any array of that type, e.g. a read-only view of ``out``)
        out:      f32[N, OH, OW, Co] C-contiguous; may not overlap x; may be exactly residual
        group, step (tile pixel stride: 1, or the stride of a transposed conv), act: int
        p0, p1: float32 activation params
        slopes:   f32[Co] read-only: a PReLU after the residual and the activation (``v if v >= 0
                  else v * slopes[co]``, over each finished row part); ``NO_SLOPES``: none
        has_res:  bool
        sums:     f64[N * OH * 2 * Co], written when ``want_sums``: per output row and channel
                  the sums of the stored outputs and of their squares (an instance norm's
                  statistics without another pass; float32 sums of ``y - y[row, 0]`` per row,
                  float64 across rows); pass any f64[1] otherwise
        splits:   column parts per output row, each a task of its own (``row_splits``); 1
                  with ``want_sums`` (a row's statistics come from one task)
    ``cache=False`` compiles a fresh dispatcher whose ``inspect_asm()`` works (tests).
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_igemm_source(machine_rows(mr, nr), nr, parallel), **flags)


# --- few output channels: lanes over (output channel, 4 reduction elements) -----------------
# NOTE: with Co = 3 or 4 an NR = 16 igemm tile wastes 3/4 of every FMA. Here a vector holds 4
# output channels x 4 consecutive reduction elements; 4 inputs are loaded once and repeated
# across the vector (vbroadcastf32x4), and each pixel's 4 partial sums per channel are added
# up in the epilogue. Runs group == 1 and Co <= 8 (CG = ceil(Co / 4) vectors per pixel).
KDOT_TILES = {1: 16, 2: 8}          # CG -> MR: 16 accumulator vectors
KDOT_MAX_CO = 4 * max(KDOT_TILES)


def kdot_kernel_id(mr: int, cg: int) -> str:
    return f"f32_conv2d_kdot4_{mr}x{4 * cg}_minmax"


def kdot_tile(co: int) -> tuple[int, int]:
    """(MR, CG) of the kdot kernel for ``co`` <= KDOT_MAX_CO output channels."""
    cg = -(-co // 4)
    return KDOT_TILES[cg], cg


def pack_weights_kdot(w: np.ndarray, cg: int) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights ``[Co, C, KH, KW]`` (group 1) -> (``wrun``, ``wtap``) for the kdot kernel.

    ``wrun f32[KH, ceil(KW*C/4), CG, 16]``: a kernel row as one run over ``k = kw * C + ci``
    (a regular tile reads it contiguously); ``wtap f32[KH, KW, ceil(C/4), CG, 16]``: per tap.
    Lane ``4 * cl + i`` of vector ``g`` holds channel ``4 * g + cl``, reduction element
    ``4 * q + i``; missing channels and elements are zero.
    """
    co, c, kh, kw = w.shape
    wk = np.zeros((kh, kw, c, 4 * cg), F32)              # [kh, kw, ci, co]
    wk[..., :co] = np.asarray(w, F32).transpose(2, 3, 1, 0)
    run, qr, qt = kw * c, -(-kw * c // 4), -(-c // 4)
    wr = np.zeros((kh, 4 * qr, 4 * cg), F32)
    wr[:, :run] = wk.reshape(kh, run, 4 * cg)
    wr = wr.reshape(kh, qr, 4, cg, 4).transpose(0, 1, 3, 4, 2).reshape(kh, qr, cg, 16)
    wt = np.zeros((kh, kw, 4 * qt, 4 * cg), F32)
    wt[:, :, :c] = wk
    wt = wt.reshape(kh, kw, qt, 4, cg, 4).transpose(0, 1, 2, 4, 5, 3).reshape(kh, kw, qt, cg, 16)
    return np.ascontiguousarray(wr), np.ascontiguousarray(wt)


def _kdot_source(MR: int, CG: int, parallel: bool):
    NACC = MR * CG * VL
    NQ4 = MR * 4                        # NOTE: stack sizes must be plain closure ints
    loop = numba.prange if parallel else range

    def f32_conv2d_kdot4(x, rowmap, colmap, wrun, wtap, bias, residual, out, act, p0, p1,
                         has_res):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        qr, qt = wrun.shape[1], wtap.shape[2]
        run = kw_ * c_
        fr, rem_r = run // 4, run % 4          # full quads and leftover of a kernel-row run
        ft, rem_t = c_ // 4, c_ % 4            # ... of one tap
        xf = x.reshape(x.size)
        wrf = wrun.reshape(wrun.size)
        wtf = wtap.reshape(wtap.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        for row in loop(n_ * oh_):
            b = row // oh_
            oh = row - b * oh_
            acc = stack_array(NACC, np.float32)    # the register tile: constant offsets only
            tile = stack_array(NACC, np.float32)
            q4 = stack_array(NQ4, np.float32)   # partial or masked quads
            offs = stack_array(MR, np.int64)
            valid = stack_array(MR, np.int64)
            col0 = stack_array(MR, np.int64)
            for ow0 in range(0, ow_, MR):
                regular = ow0 + MR - 1 < ow_
                for m in range(MR):
                    if regular:
                        c = colmap[ow0 + m, 0]
                        col0[m] = c
                        regular = c >= 0
                        for kw in range(1, kw_):
                            if colmap[ow0 + m, kw] != c + kw:
                                regular = False
                for v in range(MR * CG):
                    vfill(acc, v * VL, F32(0), VL)
                for kh in range(kh_):
                    r = rowmap[oh, kh]
                    if r < 0:
                        continue
                    xrow = (b * h_ + r) * w_
                    if regular:   # one contiguous run of KW * C inputs per pixel
                        for m in range(MR):
                            offs[m] = (xrow + col0[m]) * c_
                        wo0 = kh * qr * CG * VL
                        for q in range(fr):
                            wo = wo0 + q * CG * VL
                            for m in range(MR):
                                for g in range(CG):
                                    vfma4(acc, (m * CG + g) * VL, xf, offs[m] + 4 * q, wrf,
                                          wo + g * VL, VL)
                        if rem_r:
                            for m in range(MR):
                                for i in range(4):
                                    q4[m * 4 + i] = xf[U64(offs[m] + 4 * fr + i)] \
                                        if i < rem_r else F32(0)
                            wo = wo0 + fr * CG * VL
                            for m in range(MR):
                                for g in range(CG):
                                    vfma4(acc, (m * CG + g) * VL, q4, m * 4, wrf, wo + g * VL,
                                          VL)
                        continue
                    for kw in range(kw_):
                        nvalid = 0
                        for m in range(MR):
                            ow = ow0 + m
                            c = colmap[ow, kw] if ow < ow_ else -1
                            offs[m] = (xrow + max(c, 0)) * c_
                            valid[m] = c >= 0
                            nvalid += c >= 0
                        if nvalid == 0:
                            continue
                        wo0 = (kh * kw_ + kw) * qt * CG * VL
                        for q in range(ft):
                            wo = wo0 + q * CG * VL
                            if nvalid == MR:
                                for m in range(MR):
                                    for g in range(CG):
                                        vfma4(acc, (m * CG + g) * VL, xf, offs[m] + 4 * q, wtf,
                                              wo + g * VL, VL)
                            else:
                                for m in range(MR):
                                    for i in range(4):
                                        q4[m * 4 + i] = xf[U64(offs[m] + 4 * q + i)] \
                                            if valid[m] else F32(0)
                                for m in range(MR):
                                    for g in range(CG):
                                        vfma4(acc, (m * CG + g) * VL, q4, m * 4, wtf,
                                              wo + g * VL, VL)
                        if rem_t:
                            for m in range(MR):
                                for i in range(4):
                                    q4[m * 4 + i] = xf[U64(offs[m] + 4 * ft + i)] \
                                        if valid[m] and i < rem_t else F32(0)
                            wo = wo0 + ft * CG * VL
                            for m in range(MR):
                                for g in range(CG):
                                    vfma4(acc, (m * CG + g) * VL, q4, m * 4, wtf, wo + g * VL,
                                          VL)
                for v in range(MR * CG):
                    vcopy(tile, v * VL, acc, v * VL, VL)
                for m in range(MR):
                    ow = ow0 + m
                    if ow < ow_:
                        ob = ((b * oh_ + oh) * ow_ + ow) * co_
                        for co in range(co_):
                            t = (m * CG + co // 4) * VL + (co % 4) * 4
                            y = (tile[t] + tile[t + 1]) + (tile[t + 2] + tile[t + 3]) + bias[co]
                            if has_res:
                                y += rf[U64(ob + co)]
                            of[U64(ob + co)] = y
            activate_span(of, (b * oh_ + oh) * ow_ * co_, ow_ * co_, act, p0, p1)

    return f32_conv2d_kdot4


@functools.lru_cache(maxsize=None)
def kdot_kernel(mr: int, cg: int, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``f32_conv2d_kdot4_{mr}x{4*cg}_minmax`` (memoised).

    Call ``fn(x, rowmap, colmap, wrun, wtap, bias, residual, out, act, p0, p1, has_res)`` with
    the arguments of ``igemm_kernel`` (group 1, step 1) and ``wrun``, ``wtap`` from
    ``pack_weights_kdot`` (read-only); Co <= 4 * cg.
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_kdot_source(config.fit_rows(mr, cg * VL), cg, parallel), **flags)


def run_kdot(x, rowmap, colmap, wrun, wtap, bias, residual, out, *, act, act_params, mr, cg,
             parallel):
    """Call the kdot kernel with the argument conventions above (tests, benchmarks)."""
    p0, p1 = activation_params(act, act_params)
    has_res = residual is not None
    res = readonly(residual if has_res else out)
    kdot_kernel(mr, cg, parallel)(readonly(x), readonly(rowmap), readonly(colmap),
                                  readonly(wrun), readonly(wtap), readonly(bias), res, out,
                                  int(act), F32(p0), F32(p1), has_res)
    return out


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view (no copy): weights arrive read-only from the plan file, and one Numba
    signature per kernel needs every caller to pass them the same way."""
    v = a.view()
    v.flags.writeable = False
    return v


def conv_tables(x_shape, kernel, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0),
                pad_mode="constant", upsample=1) -> tuple[np.ndarray, np.ndarray]:
    """(rowmap, colmap) of a conv over NHWC input ``x_shape`` with ``kernel`` = (KH, KW)."""
    _, h, w, _ = x_shape
    t, l, b, r = pads
    rowmap = conv_axis_map(h, kernel[0], strides[0], dilations[0], t, b, pad_mode, upsample)
    colmap = conv_axis_map(w, kernel[1], strides[1], dilations[1], l, r, pad_mode, upsample)
    return rowmap, colmap


def run_igemm(x, rowmap, colmap, wp, bias, residual, out, *, group, step, act, act_params,
              mr, nr, parallel, in_nchw=False, slopes=None):
    """Call the igemm kernel with the argument conventions above (tests, benchmarks)."""
    p0, p1 = activation_params(act, act_params)
    fn = igemm_kernel(mr, nr, parallel)
    has_res = residual is not None
    res = readonly(residual if has_res else out)
    fn(readonly(x), readonly(rowmap), readonly(colmap), readonly(wp), readonly(bias), res, out,
       group, step, int(act), F32(p0), F32(p1), readonly(NO_SLOPES if slopes is None else slopes),
       has_res, NO_SUMS, False, bool(in_nchw), 1)
    return out


NO_SUMS = np.zeros(1, np.float64)       # the ``sums`` argument of a conv without statistics
NO_SLOPES = np.zeros(0, np.float32)     # the ``slopes`` argument of a conv without a PReLU
TASKS_PER_THREAD = 4                     # parallel tasks per thread: a busy machine balances
PART_BYTES = 256 << 10                   # a row part's outputs: re-read by its activation in L2


def row_splits(rows: int, cols: int, channels: int, mr: int, threads: int) -> int:
    """Column parts per output row (whole ``mr``-pixel tiles): enough that ``rows`` rows give
    each of ``threads`` threads a few tasks (a flattened pointwise conv has one row per image;
    ``threads`` 1: a serial kernel), and that a part's ``cols`` x ``channels`` float outputs
    stay within ``PART_BYTES`` for the activation pass at its end."""
    tasks = -(-TASKS_PER_THREAD * threads // max(rows, 1)) if threads > 1 else 1
    cache = -(-cols * channels * 4 // PART_BYTES)
    return max(1, min(max(tasks, cache), -(-cols // mr)))


def use_kdot(co: int, group: int) -> bool:
    """Whether the kdot kernel can run a conv with ``co`` output channels and ``group`` (group 1,
    at most ``KDOT_MAX_CO`` outputs); ``conv2d``'s default method. Which convs a plan runs on
    it is the planner's choice (planning/families/conv.py ``kernel_family``: pix first, kdot
    up to 4 outputs, igemm for 5-8)."""
    return group == 1 and co <= KDOT_MAX_CO


def conv2d(x, w, bias=None, residual=None, *, strides=(1, 1), dilations=(1, 1),
           pads=(0, 0, 0, 0), group=1, pad_mode="constant", upsample=1,
           activation_kind=0, act_params=(), method=None, tile=None, parallel=None,
           in_nchw=False, prelu_slopes=None):
    """Convenience entry with ``kernels.reference.conv2d``'s signature (packs on every call).

    x: f32[N, H, W, C] (f32[N, C, H, W] with ``in_nchw``, igemm only); w: [Co, C/group, KH, KW];
    returns f32[N, OH, OW, Co]. ``method``: "igemm" or "kdot" (default: ``use_kdot``); ``tile``:
    igemm (MR, NR); ``prelu_slopes``: f32[Co], a PReLU after everything (igemm only).
    """
    x = np.ascontiguousarray(x, F32)
    w = np.asarray(w, F32)
    co, cig, kh, kw = w.shape
    xs = (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) if in_nchw else x.shape
    rowmap, colmap = conv_tables(xs, (kh, kw), strides, dilations, pads, pad_mode, upsample)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), F32)
    if parallel is None:
        parallel = config.use_parallel(out.size * cig * kh * kw // config.MAC_WORK)
    res = None if residual is None else np.ascontiguousarray(residual, F32)
    if method is None:
        method = "kdot" if use_kdot(co, group) and tile is None and not in_nchw else "igemm"
    if method == "kdot" and prelu_slopes is None:
        mr, cg = kdot_tile(co)
        wrun, wtap = pack_weights_kdot(w, cg)
        return run_kdot(x, rowmap, colmap, wrun, wtap, bias, res, out,
                        act=int(activation_kind), act_params=act_params, mr=mr, cg=cg,
                        parallel=parallel)
    mr, nr = tile or choose_tile(co // group)
    return run_igemm(x, rowmap, colmap, pack_weights(w, nr, group, in_nchw), bias, res, out,
                     group=group, step=1, act=int(activation_kind), act_params=act_params,
                     mr=mr, nr=nr, parallel=parallel, in_nchw=in_nchw,
                     slopes=None if prelu_slopes is None else np.ascontiguousarray(prelu_slopes,
                                                                                   F32))


# The numpy reference of the family's rows in kernels/table.py.
def _reference():
    from kernels import reference
    return reference.conv2d
