"""fp32 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3), NHWC.

``f32_conv2d_winograd_f4x3_minmax``: every 4x4 block of output pixels (a *tile*) is computed
from the 6x6 input patch under it as ``Y = A^T [(G g G^T) * (B^T d B)] A`` (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015, points 0, +-1, +-2, infinity): 36
multiplications per input and output channel pair instead of 144, and the 36 element-wise
products over the channels are 36 independent GEMMs ``[tiles, C] @ [C, Co]``. onnxruntime's fp32
convs (MLAS: NCHWc direct or im2col + GEMM) and XNNPACK's (indirect GEMM) do every multiplication
and run near the FMA peak; this kernel does fewer (ResNet, VGG, DenseNet, YOLO's 3x3 convs).

A run takes the tiles in chunks (``chunk_tiles``: the chunk's transformed inputs and products
stay within ``CHUNK_BYTES``), each in three passes (three parallel loops):
1. input transform: ``v[t, 36, C] = B^T d B`` of every tile's patch, read through the padded
   row and column maps (``padded_maps``: zero, reflect and edge padding and nearest upsampling
   cost nothing, as in the igemm's indirection tables);
2. the 36 GEMMs ``m[t, p, :] = v[t, p, :] @ U[p]``: a register tile of MR tiles x NR output
   channels (the igemm's tile, ``kernels.intrinsics`` vector FMAs), one task per (p, channel
   block), so every transformed weight block ``U[p]`` is read once per chunk;
3. output transform ``A^T m A`` with the epilogue: bias (+ residual), the activation (RELU and
   CLAMP as a clamp, the others over each stored row of the tile), only the tile's pixels that
   are inside the output. A tile whose transformed inputs are not all finite (an Inf or NaN in
   its patch) is computed by the direct conv instead, so Inf and NaN reach the pixels they reach
   in onnxruntime, not the whole tile.

Weights: the plan stores the conv's ``[Co, C, 3, 3]`` weights as they are; the binder
transforms them once at load (``transform_weights``: ``U = G g G^T``, 4x the bytes, so the plan
file does not grow). Error: products of transformed values carry rounding of a few float32 ulps
times the transform's gains (up to 8 * 5): measured below 2e-5 of the output's range against the
float64 reference on random data (tests/kernels/test_f32_winograd.py).
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.activation import activate_span
from kernels.config import jit
from kernels.f32_conv2d import epilogue_clamp, machine_rows
from kernels.intrinsics import stack_array, vcopy, vfill, vfma

F32 = np.float32
U64 = np.uint64
VL = 16
KERNEL_ID = "f32_conv2d_winograd_f4x3_minmax"
# B^T, G, A^T of F(4x4, 3x3)
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float64)
TILE = 4                                 # output pixels per tile side
PATCH = 6                                # input pixels per patch side
NR_CHOICES = (16, 32)                    # output channels per register tile
MR = 8                                   # tiles per register tile (AVX-512; machine_rows)
CHUNK_BYTES = 4 << 20                    # a chunk's transformed inputs and products
# NOTE: the transforms cost ~36 * (C + Co) loads and stores per tile and the GEMMs 36 * C * Co
# FMAs, so the kernel pays where C * Co / (C + Co) >= MIN_HARMONIC and there are tiles to share
# the transformed weights. Measured against the igemm (one thread, Zen 4): 28x28 32->24 1.95x,
# 80x80 16->32 1.20x, 56x56 16->16 0.68x, 7x7 (4 tiles) 64->64 1.17x, 4x4 (1 tile) 256->256
# 0.43x (f32 C*Co/(C+Co): 13.7, 10.7, 8, 32, 128).
MIN_TILES = 4
MIN_HARMONIC = 10


def choose_nr(co: int) -> int:
    """Output channels per register tile: the fewest padded lanes, wider on ties."""
    return min(NR_CHOICES, key=lambda r: (-(-co // r) * r, -r))


def padded_maps(rowmap: np.ndarray, colmap: np.ndarray, oh: int, ow: int):
    """(prow, pcol): the input row (column) of every padded row (column) ``p`` that the tiles
    read, ``-1`` for a zero, from a 3x3 stride-1 conv's indirection tables (``rowmap[o, k]`` is
    the input row of output row ``o``, tap ``k``); None when the tables do not read padded row
    ``o + k`` for tap ``k`` (strided or dilated convs). Padded past the last tile with -1."""
    maps = []
    for table, size in ((rowmap, oh), (colmap, ow)):
        if table.shape != (size, 3):
            return None
        reach = -(-size // TILE) * TILE + PATCH - TILE
        p = np.full(reach, -1, np.int32)
        o, k = np.indices(table.shape)
        p[o + k] = table
        if not np.array_equal(p[o + k], table):
            return None
        maps.append(p)
    return tuple(maps)


def applicable(kh: int, kw: int, strides, dilations, group: int, c: int, co: int,
               tiles: int) -> bool:
    """Whether a conv runs this kernel: 3x3, stride 1, no dilation, one group, enough channels
    and tiles (``tiles``: 4x4 output tiles over the batch) to pay for the transforms."""
    return ((kh, kw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilations) == (1, 1)
            and group == 1 and c * co >= MIN_HARMONIC * (c + co) and tiles >= MIN_TILES)


def tiles_of(n: int, oh: int, ow: int) -> int:
    return n * -(-oh // TILE) * -(-ow // TILE)


def transform_weights(w: np.ndarray, nr: int) -> np.ndarray:
    """``[Co, C, 3, 3]`` -> ``U f32[36, NB, C, NR]`` (``G g G^T`` in float64), NB = ceil(Co / NR),
    channels past Co zero."""
    co, c = w.shape[:2]
    nb = -(-co // nr)
    u = np.einsum("ik,ockl,jl->ijoc", G, np.asarray(w, np.float64), G)    # [6, 6, Co, C]
    up = np.zeros((PATCH * PATCH, nb * nr, c), F32)
    up[:, :co] = u.reshape(PATCH * PATCH, co, c)
    return np.ascontiguousarray(up.reshape(PATCH * PATCH, nb, nr, c).transpose(0, 1, 3, 2))


def direct_weights(w: np.ndarray) -> np.ndarray:
    """``[Co, C, 3, 3]`` -> ``f32[3, 3, C, Co]``: the direct conv of the tiles an Inf or NaN
    reaches."""
    return np.ascontiguousarray(np.asarray(w, F32).transpose(2, 3, 1, 0))


def chunk_tiles(tiles: int, c: int, cop: int) -> int:
    """Tiles per chunk: the chunk's ``v`` and ``m`` within ``CHUNK_BYTES``, whole register
    tiles, at most the tiles there are."""
    per_tile = PATCH * PATCH * (c + cop) * 4
    fit = max(MR, CHUNK_BYTES // per_tile // MR * MR)
    return max(1, min(tiles, fit))


def scratch_shapes(tiles: int, c: int, co: int) -> tuple[tuple, tuple]:
    """The shapes of (v f32[TC, 36, C], m f32[TC, 36, NB * NR]): one run's scratch (an arena
    tensor of the step, ``scratch_split``)."""
    nr = choose_nr(co)
    cop = -(-co // nr) * nr
    tc = chunk_tiles(tiles, c, cop)
    return (tc, PATCH * PATCH, c), (tc, PATCH * PATCH, cop)


def scratch_split(flat: np.ndarray, tiles: int, c: int, co: int):
    """(v, m) views of a flat float32 scratch of ``scratch_floats`` elements."""
    vs, ms = scratch_shapes(tiles, c, co)
    nv = int(np.prod(vs))
    return flat[:nv].reshape(vs), flat[nv:nv + int(np.prod(ms))].reshape(ms)


def scratch_floats(tiles: int, c: int, co: int) -> int:
    return sum(int(np.prod(s)) for s in scratch_shapes(tiles, c, co))


@jit(inline="always")
def tile_origin(tile, th, tw):
    """(image, first output row, first output column) of tile ``tile`` of ``th`` x ``tw``
    tiles per image."""
    b = tile // (th * tw)
    r = tile - b * th * tw
    return b, (r // tw) * 4, (r - (r // tw) * tw) * 4


def _source(MR_: int, NR: int, parallel: bool):
    NV = NR // VL
    ACC = MR_ * NR
    loop = numba.prange if parallel else range

    @jit
    def input_tile(x, prow, pcol, v, t, tile):
        """``v[t] = B^T d B`` of tile ``tile``'s 6x6 patch (rows first, in place in ``v[t]``);
        False when a transformed value is not finite (an Inf or NaN in the patch)."""
        n_, h_, w_, c_ = x.shape
        b, r0, c0 = tile_origin(tile, (prow.shape[0] - 2) // 4, (pcol.shape[0] - 2) // 4)
        xf = x.reshape(x.size)
        vf = v.reshape(v.size)
        base = t * 36 * c_
        img = b * h_ * w_ * c_
        rows = stack_array(6, np.int64)
        for i in range(6):
            rows[i] = prow[r0 + i]
        for j in range(6):
            col = pcol[c0 + j]
            o0 = img + (max(rows[0], 0) * w_ + max(col, 0)) * c_
            o1 = img + (max(rows[1], 0) * w_ + max(col, 0)) * c_
            o2 = img + (max(rows[2], 0) * w_ + max(col, 0)) * c_
            o3 = img + (max(rows[3], 0) * w_ + max(col, 0)) * c_
            o4 = img + (max(rows[4], 0) * w_ + max(col, 0)) * c_
            o5 = img + (max(rows[5], 0) * w_ + max(col, 0)) * c_
            s0 = F32(1) if rows[0] >= 0 and col >= 0 else F32(0)
            s1 = F32(1) if rows[1] >= 0 and col >= 0 else F32(0)
            s2 = F32(1) if rows[2] >= 0 and col >= 0 else F32(0)
            s3 = F32(1) if rows[3] >= 0 and col >= 0 else F32(0)
            s4 = F32(1) if rows[4] >= 0 and col >= 0 else F32(0)
            s5 = F32(1) if rows[5] >= 0 and col >= 0 else F32(0)
            d = base + j * c_
            for k in range(c_):
                d0 = xf[U64(o0 + k)] * s0
                d1 = xf[U64(o1 + k)] * s1
                d2 = xf[U64(o2 + k)] * s2
                d3 = xf[U64(o3 + k)] * s3
                d4 = xf[U64(o4 + k)] * s4
                d5 = xf[U64(o5 + k)] * s5
                vf[U64(d + k)] = F32(4) * d0 - F32(5) * d2 + d4
                vf[U64(d + 6 * c_ + k)] = d3 + d4 - F32(4) * (d1 + d2)
                vf[U64(d + 12 * c_ + k)] = d4 - d3 + F32(4) * (d1 - d2)
                vf[U64(d + 18 * c_ + k)] = d4 - d2 + F32(2) * (d3 - d1)
                vf[U64(d + 24 * c_ + k)] = d4 - d2 + F32(2) * (d1 - d3)
                vf[U64(d + 30 * c_ + k)] = F32(4) * d1 - F32(5) * d3 + d5
        check = F32(0)
        for i in range(6):
            d = base + i * 6 * c_
            for k in range(c_):
                d0 = vf[U64(d + k)]
                d1 = vf[U64(d + c_ + k)]
                d2 = vf[U64(d + 2 * c_ + k)]
                d3 = vf[U64(d + 3 * c_ + k)]
                d4 = vf[U64(d + 4 * c_ + k)]
                d5 = vf[U64(d + 5 * c_ + k)]
                vf[U64(d + k)] = F32(4) * d0 - F32(5) * d2 + d4
                vf[U64(d + c_ + k)] = d3 + d4 - F32(4) * (d1 + d2)
                vf[U64(d + 2 * c_ + k)] = d4 - d3 + F32(4) * (d1 - d2)
                vf[U64(d + 3 * c_ + k)] = d4 - d2 + F32(2) * (d3 - d1)
                vf[U64(d + 4 * c_ + k)] = d4 - d2 + F32(2) * (d1 - d3)
                vf[U64(d + 5 * c_ + k)] = F32(4) * d1 - F32(5) * d3 + d5
                check += d0 + d1 + d2 + d3 + d4 + d5
        return check - check == F32(0)

    @jit
    def gemm(v, u, m, p, kb, nt):
        """``m[:nt, p, kb*NR:(kb+1)*NR] = v[:nt, p, :] @ U[p, kb]``."""
        c_ = v.shape[2]
        cop = m.shape[2]
        nb = u.shape[1]
        vf = v.reshape(v.size)
        uf = u.reshape(u.size)
        mf = m.reshape(m.size)
        wb = (p * nb + kb) * c_ * NR
        acc = stack_array(ACC, np.float32)     # the register tile: constant offsets only
        offs = stack_array(MR_, np.int64)
        for t0 in range(0, nt, MR_):
            for q in range(MR_ * NV):
                vfill(acc, q * VL, F32(0), VL)
            for i in range(MR_):
                offs[i] = (min(t0 + i, nt - 1) * 36 + p) * c_
            for k in range(c_):
                wo = wb + k * NR
                for i in range(MR_):
                    xv = vf[U64(offs[i] + k)]
                    for q in range(NV):
                        vfma(acc, (i * NV + q) * VL, xv, uf, wo + q * VL, VL)
            for i in range(MR_):
                if t0 + i < nt:
                    mo = ((t0 + i) * 36 + p) * cop + kb * NR
                    for q in range(NV):
                        vcopy(mf, mo + q * VL, acc, (i * NV + q) * VL, VL)

    @jit
    def direct_tile(x, prow, pcol, wd, m, t, tile, bias, residual, out, act, p0, p1, has_res):
        """The pixels of tile ``tile`` as the direct conv computes them (``wd``: the weights
        ``[3, 3, C, Co]``; ``m[t]``: the accumulator row): where an Inf or NaN reaches the
        patch, the transforms would spread it over all 16 pixels of the tile, the direct conv
        only over the pixels whose taps read it (onnxruntime's outputs)."""
        n_, h_, w_, c_ = x.shape
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        b, r0, c0 = tile_origin(tile, -(-oh_ // 4), -(-ow_ // 4))
        xf = x.reshape(x.size)
        wf = wd.reshape(wd.size)
        mf = m.reshape(m.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        acc = t * m.shape[1] * m.shape[2]
        lo, hi, rest = epilogue_clamp(act, p0, p1)
        for i in range(min(4, oh_ - r0)):
            for j in range(min(4, ow_ - c0)):
                for k in range(co_):
                    mf[U64(acc + k)] = bias[U64(k)]
                for kh in range(3):
                    row = prow[r0 + i + kh]
                    for kw in range(3):
                        col = pcol[c0 + j + kw]
                        if row < 0 or col < 0:
                            continue                # padding: an exact zero
                        xb = ((b * h_ + row) * w_ + col) * c_
                        for ch in range(c_):
                            xv = xf[U64(xb + ch)]
                            wb = ((kh * 3 + kw) * c_ + ch) * co_
                            for k in range(co_):
                                mf[U64(acc + k)] += xv * wf[U64(wb + k)]
                o = ((b * oh_ + r0 + i) * ow_ + c0 + j) * co_
                for k in range(co_):
                    y = mf[U64(acc + k)] + (rf[U64(o + k)] if has_res else F32(0))
                    y = lo if y < lo else y
                    of[U64(o + k)] = hi if y > hi else y
                if rest != 0:
                    activate_span(of, o, co_, rest, p0, p1)

    @jit
    def output_tile(m, t, tile, bias, residual, out, act, p0, p1, has_res):
        """Output pixels of tile ``tile`` from ``m[t]`` (``A^T m A``, in place in ``m[t]``),
        with the epilogue; False, with nothing stored, when a result is not finite (the
        transforms overflowed: the direct conv computes the tile)."""
        oh_, ow_, co_ = out.shape[1], out.shape[2], out.shape[3]
        cop = m.shape[2]
        b, r0, c0 = tile_origin(tile, -(-oh_ // 4), -(-ow_ // 4))
        mf = m.reshape(m.size)
        rf = residual.reshape(residual.size)
        of = out.reshape(out.size)
        lo, hi, rest = epilogue_clamp(act, p0, p1)
        base = t * 36 * cop
        for j in range(6):                     # columns: rows 0..3 <- A^T (rows 0..5)
            d = base + j * cop
            for k in range(co_):
                m0 = mf[U64(d + k)]
                m1 = mf[U64(d + 6 * cop + k)]
                m2 = mf[U64(d + 12 * cop + k)]
                m3 = mf[U64(d + 18 * cop + k)]
                m4 = mf[U64(d + 24 * cop + k)]
                m5 = mf[U64(d + 30 * cop + k)]
                a, s = m1 + m2, m1 - m2
                e, f = m3 + m4, m3 - m4
                mf[U64(d + k)] = m0 + a + e
                mf[U64(d + 6 * cop + k)] = s + F32(2) * f
                mf[U64(d + 12 * cop + k)] = a + F32(4) * e
                mf[U64(d + 18 * cop + k)] = s + F32(8) * f + m5
        ncol = min(4, ow_ - c0)
        nrow = min(4, oh_ - r0)
        check = F32(0)
        for i in range(nrow):
            d = base + i * 6 * cop
            for k in range(co_):
                m0 = mf[U64(d + k)]
                m1 = mf[U64(d + cop + k)]
                m2 = mf[U64(d + 2 * cop + k)]
                m3 = mf[U64(d + 3 * cop + k)]
                m4 = mf[U64(d + 4 * cop + k)]
                m5 = mf[U64(d + 5 * cop + k)]
                a, s = m1 + m2, m1 - m2
                e, f = m3 + m4, m3 - m4
                y0, y1 = m0 + a + e, s + F32(2) * f
                y2, y3 = a + F32(4) * e, s + F32(8) * f + m5
                mf[U64(d + k)] = y0
                mf[U64(d + cop + k)] = y1
                mf[U64(d + 2 * cop + k)] = y2
                mf[U64(d + 3 * cop + k)] = y3
                check += y0 + y1 + y2 + y3
        if check - check != F32(0):
            return False
        for i in range(nrow):
            d = base + i * 6 * cop
            ob = ((b * oh_ + r0 + i) * ow_ + c0) * co_
            for jj in range(ncol):
                o = ob + jj * co_
                src = d + jj * cop
                if has_res:
                    for k in range(co_):
                        y = mf[U64(src + k)] + bias[U64(k)] + rf[U64(o + k)]
                        y = lo if y < lo else y
                        of[U64(o + k)] = hi if y > hi else y
                else:
                    for k in range(co_):
                        y = mf[U64(src + k)] + bias[U64(k)]
                        y = lo if y < lo else y
                        of[U64(o + k)] = hi if y > hi else y
            if rest != 0:
                activate_span(of, ob, ncol * co_, rest, p0, p1)
        return True

    def f32_conv2d_winograd(x, prow, pcol, u, wd, bias, residual, out, act, p0, p1, has_res, v,
                            m, finite):
        tiles = out.shape[0] * ((prow.shape[0] - 2) // 4) * ((pcol.shape[0] - 2) // 4)
        tc = v.shape[0]
        nb = u.shape[1]
        for t0 in range(0, tiles, tc):
            nt = min(tc, tiles - t0)
            for t in loop(nt):
                finite[t] = input_tile(x, prow, pcol, v, t, t0 + t)
            for task in loop(36 * nb):
                gemm(v, u, m, task // nb, task - (task // nb) * nb, nt)
            for t in loop(nt):
                if not (finite[t] and output_tile(m, t, t0 + t, bias, residual, out, act, p0, p1,
                                                  has_res)):
                    direct_tile(x, prow, pcol, wd, m, t, t0 + t, bias, residual, out, act, p0,
                                p1, has_res)

    return f32_conv2d_winograd


@functools.lru_cache(maxsize=None)
def winograd_kernel(nr: int, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``f32_conv2d_winograd_f4x3_minmax`` for ``nr``-channel blocks.

    Call ``fn(x, prow, pcol, u, wd, bias, residual, out, act, p0, p1, has_res, v, m, finite)``:
        x:        f32[N, H, W, C] C-contiguous, read-only
        prow, pcol: i32 padded maps (``padded_maps``), read-only
        u:        f32[36, NB, C, nr] from ``transform_weights``, read-only
        wd:       f32[3, 3, C, Co], the weights as the direct conv reads them (``direct_weights``),
                  for tiles whose patch holds an Inf or NaN
        bias:     f32[Co] read-only; residual: f32[N, OH, OW, Co] read-only (any when not
                  ``has_res``); out: f32[N, OH, OW, Co], may be exactly residual, not x
        act, p0, p1: the activation (``Activation`` code, float32 params)
        v, m:     scratch from ``scratch_split`` (written every run)
        finite:   bool[TC] scratch (``v.shape[0]``): which tiles of a chunk were finite
    ``cache=False`` compiles a fresh dispatcher whose ``inspect_asm()`` works (tests).
    """
    flags = {} if cache else {"cache": False}
    deco = config.pjit if parallel else config.jit
    return deco(_source(machine_rows(MR, nr), nr, parallel), **flags)


def conv2d(x, w, bias=None, residual=None, *, pads=(0, 0, 0, 0), pad_mode="constant",
           upsample=1, activation_kind=0, act_params=(), parallel=None):
    """Convenience entry with ``kernels.reference.conv2d``'s signature for a 3x3 stride-1 conv
    (transforms the weights on every call). x: f32[N, H, W, C]; w: [Co, C, 3, 3]."""
    from kernels.f32_conv2d import activation_params, conv_tables, readonly
    x = np.ascontiguousarray(x, F32)
    co, c = w.shape[:2]
    rowmap, colmap = conv_tables(x.shape, (3, 3), (1, 1), (1, 1), pads, pad_mode, upsample)
    out = np.empty((x.shape[0], rowmap.shape[0], colmap.shape[0], co), F32)
    prow, pcol = padded_maps(rowmap, colmap, out.shape[1], out.shape[2])
    nr = choose_nr(co)
    u = transform_weights(w, nr)
    tiles = tiles_of(*out.shape[:3])
    v, m = scratch_split(np.zeros(scratch_floats(tiles, c, co), F32), tiles, c, co)
    if parallel is None:
        parallel = config.use_parallel(out.size * c * 9 // config.MAC_WORK)
    bias = np.zeros(co, F32) if bias is None else np.ascontiguousarray(bias, F32)
    has_res = residual is not None
    res = readonly(np.ascontiguousarray(residual, F32) if has_res else out)
    p0, p1 = activation_params(int(activation_kind), act_params)
    winograd_kernel(nr, parallel)(readonly(x), readonly(prow), readonly(pcol), readonly(u),
                                  readonly(direct_weights(w)), readonly(bias), res, out,
                                  int(activation_kind), F32(p0), F32(p1), has_res, v, m,
                                  np.zeros(v.shape[0], np.bool_))
    return out


# The numpy reference of the family's row in kernels/table.py.
def _reference():
    from kernels import reference
    return reference.conv2d
