"""fp32 convolution as a register-tiled indirect GEMM (igemm) over NHWC activations.

One kernel body, ``f32_conv2d_igemm_{MR}x{NR}_minmax``: an output tile of MR pixels of one output
row times NR output channels is accumulated in a fixed-size stack array that LLVM keeps in zmm
registers. For every tap (kh, kw) and input channel ci the kernel broadcasts MR input values and
runs the innermost loop over NR contiguous packed output channels (one FMA per 16 lanes). The
input is read through the indirection tables of ``kernels/indirection.py``, so zero/reflect/edge
padding, nearest upsampling, strides and dilations cost nothing and no padded copy exists.

Groups: each group is its own GEMM with channel offsets (packed weights are per group). The
same kernel runs transposed convolutions (``f32_conv_transpose2d.py``): their tables describe a
zero-stuffed input, and ``step`` > 1 makes every tile hold output pixels of one phase
(``ow0, ow0 + step, ...``) so tiles share their holes and skip them whole.

Epilogue (same pass): ``act(acc + bias[co] (+ residual))``, act an ``Activation`` int code.

NOTE: the accumulator tile is only touched by loops with compile-time trip counts (zeroing, FMA,
copy-out); a single variable index into it would stop LLVM promoting it to registers. Wider
tiles (8x32 at NR=32 is fine, 16x16 tiles of other loop orders were not) must be checked with
``inspect_asm()`` (tests/kernels/test_conv_asm.py).
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.config import jit
from kernels.indirection import conv_axis_map
from kernels.intrinsics import stack_array, vcopy, vfill, vfma

F32 = np.float32
U64 = np.uint64     # NOTE: unsigned indices skip Numba's negative-index wraparound code
# NR (output channels per tile, a multiple of 16 lanes) -> MR (pixels per tile): 16 zmm
# accumulators each, leaving 16 registers for weights and broadcasts.
TILES = {64: 4, 32: 8, 16: 16}
VL = 16                                  # float32 lanes of one vector (zmm)


@jit(inline="always")
def activate(v, code, p0, p1):
    """Activation ``code`` (``mobile_engine.ir.ops.Activation`` int: NONE 0, RELU 1, CLAMP 2,
    LEAKY_RELU 3, SIGMOID 4, TANH 5, HARD_SIGMOID 6, HARD_SWISH 7) of a float32 ``v``; p0, p1
    are its float32 params."""
    if code == 0:
        return v
    if code == 1:
        return max(v, F32(0))
    if code == 2:
        return min(max(v, p0), p1)
    if code == 3:
        return v if v >= F32(0) else v * p0
    if code == 4:
        return F32(1) / (F32(1) + np.exp(-v))
    if code == 5:
        return np.tanh(v)
    if code == 6:
        return min(max(v * p0 + p1, F32(0)), F32(1))
    # 7: hard swish
    return v * min(max(v / F32(6) + F32(0.5), F32(0)), F32(1))


@jit(inline="always")
def epilogue(tile, toff, n, of, ob, bias, boff, rf, has_res, act, p0, p1):
    """``of[ob:ob+n] = act(tile[toff:toff+n] + bias[boff:boff+n] (+ rf[ob:ob+n]))``.

    Branches hoisted out of the element loops (one loop per activation code), so every loop
    vectorises; called once per output pixel of a tile.
    """
    if has_res:
        for j in range(n):
            of[U64(ob + j)] = tile[U64(toff + j)] + bias[U64(boff + j)] + rf[U64(ob + j)]
    else:
        for j in range(n):
            of[U64(ob + j)] = tile[U64(toff + j)] + bias[U64(boff + j)]
    if act == 1:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 1, p0, p1)
    elif act == 2:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 2, p0, p1)
    elif act == 3:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 3, p0, p1)
    elif act == 4:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 4, p0, p1)
    elif act == 5:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 5, p0, p1)
    elif act == 6:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 6, p0, p1)
    elif act == 7:
        for j in range(n):
            of[U64(ob + j)] = activate(of[U64(ob + j)], 7, p0, p1)


def activation_params(kind, params=()) -> tuple[float, float]:
    """The two float params the kernels take for activation ``kind`` (unused ones are 0)."""
    from mobile_engine.ir.ops import Activation    # NOTE: lazy, mobile_engine imports kernels
    kind = Activation(kind)
    p = [float(v) for v in params]
    if kind is Activation.HARD_SIGMOID and not p:
        p = [0.2, 0.5]
    if kind is Activation.LEAKY_RELU and not p:
        p = [0.01]
    if kind is Activation.CLAMP and len(p) != 2:
        raise ValueError(f"CLAMP needs (lo, hi), got {params}")
    return tuple((p + [0.0, 0.0])[:2])


def kernel_id(mr: int, nr: int) -> str:
    return f"f32_conv2d_igemm_{mr}x{nr}_minmax"


def choose_tile(cog: int) -> tuple[int, int]:
    """(MR, NR) for ``cog`` output channels per group: the fewest padded lanes, wider on ties."""
    nr = min(TILES, key=lambda r: (-(-cog // r) * r, -r))
    return TILES[nr], nr


def pack_weights(w: np.ndarray, nr: int, group: int = 1) -> np.ndarray:
    """Conv weights ``[Co, Ci/g, KH, KW]`` -> ``f32[g * NB, KH, KW, Ci/g, NR]``, NB = ceil(Co/g / NR).

    Block ``gb = g * NB + b`` holds output channels ``g * Co/g + b * NR + j`` of group ``g``;
    channels past the group's end are zero.
    """
    co, cig, kh, kw = w.shape
    cog = co // group
    nb = -(-cog // nr)
    wg = np.zeros((group, nb * nr, cig, kh, kw), F32)
    wg[:, :cog] = w.reshape(group, cog, cig, kh, kw)
    packed = wg.reshape(group, nb, nr, cig, kh, kw).transpose(0, 1, 4, 5, 3, 2)
    return np.ascontiguousarray(packed.reshape(group * nb, kh, kw, cig, nr))


def _igemm_source(MR: int, NR: int, parallel: bool):
    ACC = MR * NR
    NV = NR // VL                       # vectors per pixel
    loop = numba.prange if parallel else range

    def f32_conv2d_igemm(x, rowmap, colmap, wp, bias, residual, out, group, step, act, p0, p1,
                         has_res):
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        kh_, kw_ = rowmap.shape[1], colmap.shape[1]
        cig, cog = c_ // group, co_ // group
        nb = wp.shape[0] // group
        xf = x.reshape(x.size)
        wf = wp.reshape(wp.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        tap_size = cig * NR
        for row in loop(n_ * oh_):
            b = row // oh_
            oh = row - b * oh_
            acc = stack_array(ACC, np.float32)     # the register tile: constant offsets only
            tile = stack_array(ACC, np.float32)
            offs = stack_array(MR, np.int64)
            scale = stack_array(MR, np.float32)
            col0 = stack_array(MR, np.int64)
            for gb in range(group * nb):
                g = gb // nb
                co0 = (gb - g * nb) * NR
                ncv = min(NR, cog - co0)
                wblock = gb * kh_ * kw_ * tap_size
                for ph in range(step):
                    for ow0 in range(ph, ow_, step * MR):
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
                            xrow = (b * h_ + r) * w_
                            for seg in range(1 if regular else kw_):
                                if regular:
                                    for m in range(MR):
                                        offs[m] = (xrow + col0[m]) * c_
                                    nvalid = MR
                                    length = kw_ * c_
                                    wo0 = wblock + kh * kw_ * tap_size
                                else:
                                    nvalid = 0
                                    for m in range(MR):
                                        ow = ow0 + m * step
                                        c = colmap[ow, seg] if ow < ow_ else -1
                                        offs[m] = (xrow + max(c, 0)) * c_ + g * cig
                                        scale[m] = F32(1) if c >= 0 else F32(0)
                                        nvalid += c >= 0
                                    length = cig
                                    wo0 = wblock + (kh * kw_ + seg) * tap_size
                                if nvalid == MR:
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
                        for v in range(MR * NV):
                            vcopy(tile, v * VL, acc, v * VL, VL)
                        for m in range(MR):
                            ow = ow0 + m * step
                            if ow < ow_:
                                ob = ((b * oh_ + oh) * ow_ + ow) * co_ + g * cog + co0
                                epilogue(tile, m * NR, ncv, of, ob, bias, g * cog + co0, rf,
                                         has_res, act, p0, p1)

    return f32_conv2d_igemm


@functools.lru_cache(maxsize=None)
def igemm_kernel(mr: int, nr: int, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``f32_conv2d_igemm_{mr}x{nr}_minmax`` (memoised).

    Call ``fn(x, rowmap, colmap, wp, bias, residual, out, group, step, act, p0, p1, has_res)``:
        x:        f32[N, H, W, C] C-contiguous, read-only view (the input before upsampling)
        rowmap:   i32[OH, KH], colmap: i32[OW, KW] (kernels/indirection.py), read-only
        wp:       f32[g * NB, KH, KW, C/g, nr] from ``pack_weights``, read-only
        bias:     f32[Co] read-only (zeros when the conv has none)
        residual: f32[N, OH, OW, Co] read-only view, read only when ``has_res`` (else pass any
                  array of that type, e.g. a read-only view of ``out``)
        out:      f32[N, OH, OW, Co] C-contiguous; may not overlap x; may be exactly residual
        group, step (tile pixel stride: 1, or the stride of a transposed conv), act: int
        p0, p1: float32 activation params; has_res: bool
    ``cache=False`` compiles a fresh dispatcher whose ``inspect_asm()`` works (tests).
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_igemm_source(mr, nr, parallel), **flags)


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
              mr, nr, parallel):
    """Call the igemm kernel with the argument conventions above (tests, benchmarks)."""
    p0, p1 = activation_params(act, act_params)
    fn = igemm_kernel(mr, nr, parallel)
    has_res = residual is not None
    res = readonly(residual if has_res else out)
    fn(readonly(x), readonly(rowmap), readonly(colmap), readonly(wp), readonly(bias), res, out,
       group, step, int(act), F32(p0), F32(p1), has_res)
    return out


def conv2d(x, w, bias=None, residual=None, *, strides=(1, 1), dilations=(1, 1),
           pads=(0, 0, 0, 0), group=1, pad_mode="constant", upsample=1,
           activation_kind=0, act_params=(), tile=None, parallel=None):
    """Convenience entry with ``kernels.reference.conv2d``'s signature (packs on every call).

    x: f32[N, H, W, C]; w: [Co, C/group, KH, KW]; returns f32[N, OH, OW, Co].
    """
    x = np.ascontiguousarray(x, F32)
    co, cig, kh, kw = w.shape
    rowmap, colmap = conv_tables(x.shape, (kh, kw), strides, dilations, pads, pad_mode, upsample)
    mr, nr = tile or choose_tile(co // group)
    wp = pack_weights(np.asarray(w, F32), nr, group)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), F32)
    if parallel is None:
        parallel = out.size * cig * kh * kw >= config.PARALLEL_MIN_WORK
    res = None if residual is None else np.ascontiguousarray(residual, F32)
    return run_igemm(x, rowmap, colmap, wp, bias, res, out, group=group, step=1,
                     act=int(activation_kind), act_params=act_params, mr=mr, nr=nr,
                     parallel=parallel)


# The family's kernels and their numpy references (tests walk this table).
def _reference():
    from kernels import reference
    return reference.conv2d


KERNELS = {kernel_id(mr, nr): (conv2d, _reference) for nr, mr in TILES.items()}
