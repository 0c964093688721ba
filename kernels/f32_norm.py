"""fp32 normalisation kernels: instance norm (two passes over NHWC) and batch norm (one affine pass).

Instance norm, per image ``n`` and channel ``c`` over the ``P = H * W`` pixels::

    shift = x[n, 0, c]                                  # any sample of the channel
    s = sum(x - shift), q = sum((x - shift)^2)          # vectorised across channels
    mean_d = s / P, var = q / P - mean_d^2              # float64; mean = shift + mean_d
    m = float32(mean), a = scale / sqrt(var + eps), b = bias - (mean - m) * a
    y = act((x - m) * a + b)

NOTE: the shift keeps ``q / P - mean_d^2`` free of cancellation, and ``(x - m) * a + b`` keeps
the float32 epilogue's error at a few ulps of the *output* even when ``|mean| >> std`` (the
folded ``x * a' + b'`` would lose ``|mean| / std`` ulps).

Vector kernel (C divides or is a multiple of a lane width L in ``LANE_WIDTHS``, e.g. C = 32 ->
L = 64: two pixels per vector row; C = 3 or 24 -> L = 48): each image is a matrix of rows of L
floats, lane l being channel ``(j * L + l) % C``; the per-lane sums live in zmm registers
(float32, flushed to float64 every ``FLUSH`` rows: blocked summation), through two small
vector intrinsics. Other channel counts use the generic kernel (float64 accumulators in
memory, one pixel per step).

Pass 1 runs over (image, row block) tasks, each writing its own partial sums; the partials are
combined per image (lanes -> channels), then pass 2 runs over the same tasks. Scratch
(partials, statistics, coefficients) is allocated by the binder, once.

The planar kernel (``f32_instance_norm_nchw``, the few-channel tail before an NCHW graph output)
is ``f32_norm_planar.py``: lanes run over pixels, so any C is full width.

Layout contract: ``x``, ``out``: f32[N * P * C] (NHWC flattened; planar: f32[N * C * P])
C-contiguous, ``out`` may alias ``x``; ``scale``, ``bias``: f32[Ns * C], Ns = 1 (shared) or N (per image), read at run
time (they may be computed by the graph).
"""
from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels import reference as ref
from kernels.activation import Activation
from kernels.config import PARALLEL_MIN_WORK, jit, pjit, use_parallel
from kernels.f32_elementwise import act_inplace, act_params, readonly
from kernels.intrinsics import stack_array, vcopy, vfill

F32 = np.float32
U64 = np.uint64          # NOTE: unsigned indices skip Numba's negative-index wraparound code
VL = 16                  # float32 lanes of one zmm vector
# NOTE: lane widths of the vector instance norm: a row of L floats holds L / C whole pixels
# (C | L) or one L-channel slice of a pixel (L | C); lane l is channel (j * L + l) % C.
LANE_WIDTHS = (64, 48)
# NOTE: float32 partial sums of at most FLUSH shifted rows go into float64 totals: <= 32 terms
# per float32 sum keeps its rounding at ~1e-6 relative while the adds stay in registers.
FLUSH = 8
MAX_BLOCKS = 64


def lane_width(channels: int) -> int:
    """The vector kernel's lane count L for ``channels``, or 0 for the generic kernel."""
    for L in LANE_WIDTHS:
        if L % channels == 0 or channels % L == 0:
            return L
    return 0


# --- two vector intrinsics (d = x - shift; stats and normalise) ---------------------------------
def _vec_ptr(context, builder, arrty, arr, off, offty, lanes):
    data = context.make_array(arrty)(context, builder, arr).data
    off = context.cast(builder, off, offty, types.intp)
    return builder.bitcast(builder.gep(data, [off]), ir.VectorType(ir.FloatType(), lanes)
                           .as_pointer())


def _f32_1d(t) -> bool:
    return isinstance(t, types.Array) and t.dtype == types.float32 and t.ndim == 1


@intrinsic
def vshift_stats(typingctx, s, q, off, x, xoff, sh, lanes):
    """``d = x[xoff:+lanes] - sh[off:+lanes]; s[off:+lanes] += d; q[off:+lanes] += d * d``."""
    if not (isinstance(lanes, types.IntegerLiteral) and all(map(_f32_1d, (s, q, x, sh)))):
        return None
    n = lanes.literal_value

    def codegen(context, builder, sig, args):
        s_, q_, off_, x_, xoff_, sh_, _ = args
        ps = _vec_ptr(context, builder, sig.args[0], s_, off_, sig.args[2], n)
        pq = _vec_ptr(context, builder, sig.args[1], q_, off_, sig.args[2], n)
        px = _vec_ptr(context, builder, sig.args[3], x_, xoff_, sig.args[4], n)
        psh = _vec_ptr(context, builder, sig.args[5], sh_, off_, sig.args[2], n)
        vt = ir.VectorType(ir.FloatType(), n)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{n}f32")
        d = builder.fsub(builder.load(px, align=4), builder.load(psh, align=4))
        builder.store(builder.fadd(builder.load(ps, align=4), d), ps, align=4)
        builder.store(builder.call(fma, [d, d, builder.load(pq, align=4)]), pq, align=4)
        return context.get_dummy_value()

    return types.none(s, q, off, x, xoff, sh, lanes), codegen


@intrinsic
def vshift_affine(typingctx, out, ooff, x, xoff, coef, coff, stride, lo, hi, lanes):
    """``out[ooff:+lanes] = clamp((x[xoff:+lanes] - sh) * a + b, lo, hi)`` with ``sh``, ``a``,
    ``b`` the ``lanes`` floats of ``coef`` at ``coff``, ``coff + stride``, ``coff + 2 * stride``.
    The clamp is compare-and-select, so NaN passes through (as in ``act_inplace``)."""
    if not (isinstance(lanes, types.IntegerLiteral) and all(map(_f32_1d, (out, x, coef)))
            and isinstance(stride, types.Integer) and lo == types.float32
            and hi == types.float32):
        return None
    n = lanes.literal_value

    def codegen(context, builder, sig, args):
        o_, ooff_, x_, xoff_, c_, coff_, stride_, lo_, hi_, _ = args
        # NOTE: both offsets as intp first: a cast *to* a literal int type yields its constant
        it = types.intp
        coff_ = context.cast(builder, coff_, sig.args[5], it)
        po = _vec_ptr(context, builder, sig.args[0], o_, ooff_, sig.args[1], n)
        px = _vec_ptr(context, builder, sig.args[2], x_, xoff_, sig.args[3], n)
        psh = _vec_ptr(context, builder, sig.args[4], c_, coff_, it, n)
        step = context.cast(builder, stride_, sig.args[6], it)
        pa = _vec_ptr(context, builder, sig.args[4], c_, builder.add(coff_, step), it, n)
        pb = _vec_ptr(context, builder, sig.args[4], c_,
                      builder.add(coff_, builder.add(step, step)), it, n)
        vt = ir.VectorType(ir.FloatType(), n)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{n}f32")
        d = builder.fsub(builder.load(px, align=4), builder.load(psh, align=4))
        y = builder.call(fma, [d, builder.load(pa, align=4), builder.load(pb, align=4)])
        vlo, vhi = _splat(builder, lo_, n), _splat(builder, hi_, n)
        y = builder.select(builder.fcmp_ordered("<", y, vlo), vlo, y)
        y = builder.select(builder.fcmp_ordered(">", y, vhi), vhi, y)
        builder.store(y, po, align=4)
        return context.get_dummy_value()

    return types.none(out, ooff, x, xoff, coef, coff, stride, lo, hi, lanes), codegen


def _splat(builder, value, lanes):
    vt = ir.VectorType(ir.FloatType(), lanes)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value,
                                 ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def clamp_bounds(act: int, p0: float, p1: float) -> tuple[np.float32, np.float32, int]:
    """(lo, hi, rest): RELU and CLAMP become the kernels' vector clamp; ``rest`` is the
    activation still to apply with ``act_inplace`` (0 when the clamp covers it)."""
    inf = np.float32(np.inf)
    if act == Activation.RELU:
        return F32(0), inf, 0
    if act == Activation.CLAMP:
        return F32(p0), F32(p1), 0
    return -inf, inf, int(act)


# --- kernels -----------------------------------------------------------------------------------
@jit
def style_matvec(u, g, out):
    """out[c] = sum_k u[k] * g[k, c] (float64 sum): a norm's scale or bias from a style vector
    u: f32[K] and a constant g: f32[K, C] (multistyle26's Mul + ReduceSum over the styles)."""
    k_, c_ = g.shape[0], g.shape[1]
    for c in range(c_):
        acc = 0.0
        for k in range(k_):
            acc += np.float64(u[k]) * np.float64(g[k, c])
        out[c] = np.float32(acc)


@jit(inline="always")
def _styles(style, su, sg, sbuf, bu, bg, bbuf):
    """A norm's style-dependent scale and bias (bits 1, 2 of ``style``) before it runs."""
    if style & 1:
        style_matvec(su, sg, sbuf)
    if style & 2:
        style_matvec(bu, bg, bbuf)


def style_operands(scale, bias, channels: int):
    """Bind time: the kernels' ``scale, bias, style, su, sg, sbuf, bu, bg, bbuf`` arguments.
    ``scale``/``bias`` are arrays, or ``(u, G)`` pairs (u: f32[K], G: f32[K, C]) that the kernel
    multiplies into a buffer allocated here before normalising."""
    style, ops = 0, []
    for bit, p in ((1, scale), (2, bias)):
        if isinstance(p, tuple):
            u, g = p
            if g.ndim != 2 or g.shape[1] != channels or u.size != g.shape[0] or \
                    g.dtype != F32 or u.dtype != F32:
                raise ValueError(f"style vector {u.shape} {u.dtype} and matrix {g.shape} "
                                 f"{g.dtype} do not give {channels} channels")
            buf = np.zeros(channels, F32)
            style |= bit
            ops.append((readonly(buf), readonly(u.reshape(-1)), readonly(g), buf))
        else:
            ops.append((readonly(p.reshape(-1)), _NO_U, _NO_G, _NO_BUF))
    (s_, su, sg, sbuf), (b_, bu, bg, bbuf) = ops
    return s_, b_, style, su, sg, sbuf, bu, bg, bbuf


_NO_U = readonly(np.zeros(1, F32))
_NO_G = readonly(np.zeros((1, 1), F32))
_NO_BUF = np.zeros(1, F32)


@jit
def add_inplace(out, res, s0, n):
    """out[s0:s0+n] += res[s0:s0+n] (slice views from 0: the loop vectorises)."""
    o = out[s0:s0 + n]
    r = res[s0:s0 + n]
    for i in range(n):
        o[i] += r[i]


@jit
def _row_sums(sums, n_img, C, stats):
    """stats f64[n_img, 2, C] = the per-row sums f64[n_img * rows, 2, C] (a conv's epilogue
    statistics, ``f32_conv2d.py``) added up per image."""
    rows = sums.shape[0] // (n_img * 2 * C)
    for i in range(stats.shape[0]):
        stats[i] = 0.0
    for n in range(n_img):
        for r in range(n * rows, (n + 1) * rows):
            for i in range(2 * C):
                stats[n * 2 * C + i] += sums[r * 2 * C + i]


@jit
def _coefficients(x, scale, bias, n_img, P, C, eps, stats, coef, L, chunks, shifted):
    """stats f64[n_img, 2, C] (sums of x - shift and its square; shift = x's first pixel when
    ``shifted``, else 0) -> coef f32[n_img, chunks, 3, L] lanes of (rounded mean, a, b) with
    lane l of chunk j = channel (j * L + l) % C (L = C, chunks = 1 for the generic kernel)."""
    per_image_scale = scale.shape[0] > C
    per_image_bias = bias.shape[0] > C       # NOTE: either may be [N, C] and the other [C]
    inv_p = 1.0 / P
    for n in range(n_img):
        sc = n * C if per_image_scale else 0
        sb = n * C if per_image_bias else 0
        for j in range(chunks):
            for l in range(L):
                c = (j * L + l) % C
                mean_d = stats[(n * 2) * C + c] * inv_p
                var = max(stats[(n * 2 + 1) * C + c] * inv_p - mean_d * mean_d, 0.0)
                a = np.float64(scale[sc + c]) / np.sqrt(var + eps)
                mean = np.float64(x[n * P * C + c]) + mean_d if shifted else mean_d
                m32 = np.float32(mean)                    # pass 2 shifts by the rounded mean
                o = ((n * chunks + j) * 3) * L + l
                coef[o] = m32
                coef[o + L] = np.float32(a)
                coef[o + 2 * L] = np.float32(np.float64(bias[sb + c])
                                             - (mean - np.float64(m32)) * a)


def _vector_source(L: int, parallel: bool):
    NV = L // VL
    LANES = L
    ROWS2 = max(1, 4096 // L)          # pass-2 rows per activation block: 16 KiB
    loop = prange if parallel else range

    # NOTE: each pass's block is its own function, called by the serial and the parallel
    # variant alike: inlined into a serial loop it ran slower than the parfor's outlined body
    # (multistyle26 256x256 on one thread: its 15 norms 0.62 ms serial, 0.44 ms prange).
    @jit
    def stats_block(t, x, partial, nblk, P, C, rows, rs, chunks, per, tail):
        """Pass 1 over block ``t``: shifted sums; float32 register accumulators flushed to
        float64 partials."""
        n, k = t // nblk, t % nblk
        base = n * P * C
        r_lo, r_hi = min(rows, k * per), min(rows, (k + 1) * per)
        s = stack_array(LANES, np.float32)
        q = stack_array(LANES, np.float32)
        sh = stack_array(LANES, np.float32)
        tile = stack_array(LANES, np.float32)
        for j in range(chunks):
            pt = ((t * chunks + j) * 2) * LANES
            for l in range(LANES):
                sh[l] = x[base + (j * LANES + l) % C]
                partial[pt + l] = 0.0
                partial[pt + LANES + l] = 0.0
            for r0 in range(r_lo, r_hi, FLUSH):
                for v in range(NV):
                    vfill(s, v * VL, F32(0), VL)
                    vfill(q, v * VL, F32(0), VL)
                for r in range(r0, min(r_hi, r0 + FLUSH)):
                    xo = base + r * rs + j * LANES
                    for v in range(NV):
                        vshift_stats(s, q, v * VL, x, xo + v * VL, sh, VL)
                for v in range(NV):
                    vcopy(tile, v * VL, s, v * VL, VL)
                for l in range(LANES):
                    partial[pt + l] += tile[l]
                for v in range(NV):
                    vcopy(tile, v * VL, q, v * VL, VL)
                for l in range(LANES):
                    partial[pt + LANES + l] += tile[l]
            if k == nblk - 1:                         # ragged end (C | L only)
                for i in range(tail):
                    d = np.float64(x[base + rows * rs + i]) - np.float64(sh[i])
                    partial[pt + i] += d
                    partial[pt + LANES + i] += d * d

    @jit
    def affine_block(t, x, out, coef, res, has_res, act, p0, p1, lo, hi, nblk, P, C, rows, rs,
                     chunks, per, tail):
        """Pass 2 over block ``t``: y = act((x - m) * a + b), clamp in the vector store, other
        activations per L1-sized row block."""
        n, k = t // nblk, t % nblk
        base = n * P * C
        r_lo, r_hi = min(rows, k * per), min(rows, (k + 1) * per)
        for b0 in range(r_lo, r_hi, ROWS2):
            b1 = min(r_hi, b0 + ROWS2)
            for j in range(chunks):
                cb = ((n * chunks + j) * 3) * LANES
                for r in range(b0, b1):
                    xo = base + r * rs + j * LANES
                    for v in range(NV):
                        vshift_affine(out, xo + v * VL, x, xo + v * VL, coef, cb + v * VL,
                                      LANES, lo, hi, VL)
            if has_res:
                add_inplace(out, res, base + b0 * rs, (b1 - b0) * rs)
            if act != 0:
                act_inplace(out, base + b0 * rs, (b1 - b0) * rs, act, p0, p1)
        if k == nblk - 1 and tail > 0:
            cb = n * chunks * 3 * LANES
            o0 = base + rows * rs
            for i in range(tail):
                y = (x[o0 + i] - coef[cb + i]) * coef[cb + LANES + i] + coef[cb + 2 * LANES + i]
                y = lo if y < lo else y
                out[o0 + i] = hi if y > hi else y
            if has_res:
                add_inplace(out, res, o0, tail)
            if act != 0:
                act_inplace(out, o0, tail, act, p0, p1)

    def f32_instance_norm_nhwc(x, scale, bias, out, n_img, P, C, eps, lo, hi, act, p0, p1,
                               partial, stats, coef, nblk, given, res, has_res, style, su, sg,
                               sbuf, bu, bg, bbuf):
        """partial: f64[n_img * nblk * chunks * 2 * L], or with ``given`` the per-row sums of
        the producing conv (pass 1 is skipped); stats: f64[n_img * 2 * C];
        coef: f32[n_img * chunks * 3 * L]; res: like x, added before the activation when
        ``has_res`` (then lo, hi must be -inf, inf: ``act`` applies after the sum);
        style: bit 1 computes scale (= sbuf) as su @ sg first, bit 2 bias (= bbuf) as bu @ bg."""
        _styles(style, su, sg, sbuf, bu, bg, bbuf)
        if C <= LANES:
            chunks, rs, rows = 1, LANES, P * C // LANES
        else:
            chunks, rs, rows = C // LANES, C, P
        tail = P * C - rows * rs                          # floats after the last full row
        per = (rows + nblk - 1) // nblk
        if given:
            _row_sums(partial, n_img, C, stats)
        for t in loop(0 if given else n_img * nblk):     # pass 1: shifted sums
            stats_block(t, x, partial, nblk, P, C, rows, rs, chunks, per, tail)
        # combine lanes -> channels, then the per-lane affine
        if not given:
            for i in range(stats.shape[0]):
                stats[i] = 0.0
            for t in range(n_img * nblk):
                n = t // nblk
                for j in range(chunks):
                    pt = ((t * chunks + j) * 2) * LANES
                    for l in range(LANES):
                        c = (j * LANES + l) % C
                        stats[n * 2 * C + c] += partial[pt + l]
                        stats[(n * 2 + 1) * C + c] += partial[pt + LANES + l]
        _coefficients(x, scale, bias, n_img, P, C, eps, stats, coef, LANES, chunks, not given)
        for t in loop(n_img * nblk):                       # pass 2: the affine
            affine_block(t, x, out, coef, res, has_res, act, p0, p1, lo, hi, nblk, P, C, rows,
                         rs, chunks, per, tail)

    return f32_instance_norm_nhwc


def _generic_source(parallel: bool):
    loop = prange if parallel else range

    def f32_instance_norm_nhwc_any(x, scale, bias, out, n_img, P, C, eps, lo, hi, act, p0, p1,
                                   partial, stats, coef, nblk, given, res, has_res, style, su,
                                   sg, sbuf, bu, bg, bbuf):
        """Any channel count: float64 accumulators in memory, one pixel per step."""
        _styles(style, su, sg, sbuf, bu, bg, bbuf)
        per = (P + nblk - 1) // nblk
        if given:
            _row_sums(partial, n_img, C, stats)
        for t in loop(0 if given else n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            s = partial[t * 2 * C:t * 2 * C + C]
            q = partial[t * 2 * C + C:t * 2 * C + 2 * C]
            sh = x[base:base + C]
            for c in range(C):
                s[c] = 0.0
                q[c] = 0.0
            for p in range(min(P, k * per), min(P, (k + 1) * per)):
                xr = x[base + p * C:base + (p + 1) * C]
                for c in range(C):
                    d = np.float64(xr[c]) - np.float64(sh[c])
                    s[c] += d
                    q[c] += d * d
        if not given:
            for i in range(stats.shape[0]):
                stats[i] = 0.0
            for t in range(n_img * nblk):
                n = t // nblk
                for c in range(2 * C):
                    stats[n * 2 * C + c] += partial[t * 2 * C + c]
        _coefficients(x, scale, bias, n_img, P, C, eps, stats, coef, C, 1, not given)
        for t in loop(n_img * nblk):
            n, k = t // nblk, t % nblk
            base = n * P * C
            sh = coef[n * 3 * C:n * 3 * C + C]
            a = coef[n * 3 * C + C:n * 3 * C + 2 * C]
            b = coef[n * 3 * C + 2 * C:n * 3 * C + 3 * C]
            p_lo, p_hi = min(P, k * per), min(P, (k + 1) * per)
            for p in range(p_lo, p_hi):
                xr = x[base + p * C:base + (p + 1) * C]
                orow = out[base + p * C:base + (p + 1) * C]
                for c in range(C):
                    y = (xr[c] - sh[c]) * a[c] + b[c]
                    y = lo if y < lo else y
                    orow[c] = hi if y > hi else y
                if has_res:
                    add_inplace(out, res, base + p * C, C)
                if act != 0:
                    act_inplace(out, base + p * C, C, act, p0, p1)

    return f32_instance_norm_nhwc_any


@functools.lru_cache(maxsize=None)
def instance_norm_kernel(lanes: int, parallel: bool):
    """The dispatcher for lane width ``lanes`` (0: the generic kernel), memoised. Call
    ``fn(x, scale, bias, out, n_img, P, C, eps, lo, hi, act, p0, p1, partial, stats, coef, nblk,
    given, res, has_res, style, su, sg, sbuf, bu, bg, bbuf)``
    (``clamp_bounds`` gives lo, hi and the remaining act) with the scratch of
    :func:`instance_norm_call`."""
    src = _vector_source(lanes, parallel) if lanes else _generic_source(parallel)
    return (pjit if parallel else jit)(src)


def _build(parallel: bool):
    loop = prange if parallel else range
    deco = pjit if parallel else jit

    @deco
    def channel_affine(x, a, b, out, channels, act, p0, p1):
        """out[p, c] = act(x[p, c] * a[c] + b[c]); x, out: f32[P * C]; a, b: f32[C]."""
        C = channels
        rows = out.shape[0] // C
        per = max(1, 8192 // C)
        for blk in loop((rows + per - 1) // per):
            r0, r1 = blk * per, min(rows, (blk + 1) * per)
            for r in range(r0, r1):
                for c in range(C):
                    i = U64(r * C + c)
                    out[i] = x[i] * a[c] + b[c]
            if act != 0:
                act_inplace(out, r0 * C, (r1 - r0) * C, act, p0, p1)

    return channel_affine


class _Variants:
    def __init__(self, parallel: bool) -> None:
        self.channel_affine = _build(parallel)


SERIAL = _Variants(False)
PARALLEL = _Variants(True)


@jit
def batch_norm_coefficients(scale, bias, mean, var, eps, a, b):
    """a = scale / sqrt(var + eps), b = bias - mean * a (float64 math), for run-time params."""
    for c in range(a.shape[0]):
        s = np.float64(scale[c]) / np.sqrt(np.float64(var[c]) + eps)
        a[c] = np.float32(s)
        b[c] = np.float32(np.float64(bias[c]) - np.float64(mean[c]) * s)


def batch_norm_fold(scale, bias, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Compile time: the per-channel affine ``(a, b)`` of a batch norm with constant params."""
    s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return (np.ascontiguousarray(s, np.float32),
            np.ascontiguousarray(bias - mean.astype(np.float64) * s, np.float32))


def instance_norm_blocks(n_img: int, pixels: int, channels: int) -> int:
    """Row blocks per image: one on small tensors (serial), else at least 8 (work for every
    thread) and about one per 64 K elements, at most MAX_BLOCKS."""
    work = n_img * pixels * channels
    if work < PARALLEL_MIN_WORK:
        return 1
    return int(min(pixels, MAX_BLOCKS, max(8, work // PARALLEL_MIN_WORK)))


def instance_norm_call(x, scale, bias, out, eps: float, act: int = 0, params=(),
                       blocks: int | None = None, parallel: bool | None = None,
                       lanes: int | None = None, row_sums: np.ndarray | None = None,
                       residual: np.ndarray | None = None, threads: int | None = None):
    """``(fn, args)`` for ``out = instance_norm(x)``: x, out f32[N, H, W, C]; scale, bias f32
    [C] or [N, C], or ``(u, G)`` style pairs (``style_operands``). Allocates the scratch once
    (call at bind time, not per run). ``blocks``,
    ``parallel`` and ``lanes`` (0 = generic kernel) override the defaults (tests); else the
    variant is ``use_parallel``'s on ``threads`` threads.

    ``row_sums``: f64[N * rows, 2, C], the sums of x and x^2 per row that the producing conv
    wrote (``f32_conv2d.igemm_kernel``'s ``sums``): the kernel reads them at run time instead
    of its statistics pass (x may then be ``out`` itself: normalised in place).

    ``residual``: like x; ``out = act(norm(x) + residual)`` (a residual ADD after the norm)."""
    n, h, w, c = x.shape
    nblk = blocks or instance_norm_blocks(n, h * w, c)
    if parallel is None:
        parallel = use_parallel(x.size, threads=threads)
    L = lane_width(c) if lanes is None else lanes
    chunks = max(1, c // L) if L else 1
    width = L if L else c
    given = row_sums is not None
    if given:
        partial = row_sums.reshape(-1)
        if partial.size % (n * 2 * c) or partial.dtype != np.float64:
            raise ValueError(f"row sums {row_sums.shape} {row_sums.dtype} do not fit input "
                             f"{x.shape}")
    else:
        partial = np.empty(n * nblk * chunks * 2 * width, np.float64)
    stats = np.empty(n * 2 * c, np.float64)
    coef = np.empty(n * chunks * 3 * width, np.float32)
    p0, p1 = act_params(act, params)
    has_res = residual is not None
    if has_res:
        if residual.shape != x.shape:
            raise ValueError(f"residual {residual.shape} does not fit input {x.shape}")
        inf = F32(np.inf)
        lo, hi, rest = -inf, inf, int(act)        # the activation follows the residual add
    else:
        lo, hi, rest = clamp_bounds(int(act), p0, p1)
    res = readonly((residual if has_res else out).reshape(-1))
    s_, b_, *style = style_operands(scale, bias, c)
    return instance_norm_kernel(L, bool(parallel)), (
        readonly(x.reshape(-1)), s_, b_, out.reshape(-1), n, h * w, c,
        float(eps), lo, hi, rest, F32(p0), F32(p1), partial, stats, coef, nblk, given, res,
        has_res, *style)


def affine_call(x, a, b, out, act: int = 0, params=(), parallel: bool | None = None,
                threads: int | None = None):
    """``(fn, args)`` for ``out = act(x * a + b)`` per channel (last axis); ``parallel`` None:
    ``use_parallel`` on ``threads`` threads."""
    if parallel is None:
        parallel = use_parallel(x.size, threads=threads)
    k = PARALLEL if parallel else SERIAL
    p0, p1 = act_params(act, params)
    return k.channel_affine, (readonly(x.reshape(-1)), readonly(a), readonly(b), out.reshape(-1),
                              x.shape[-1], int(act),
                              F32(p0), F32(p1))


# --------------------------------------------------------------------------------------------
# Whole-array entry points and numpy references (rows of kernels/table.py).
def instance_norm(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=(), blocks=None,
                  parallel=None, lanes=None, residual=None):
    out = np.empty_like(x)
    fn, args = instance_norm_call(x, scale, bias, out, epsilon, int(activation_kind), act_params,
                                  blocks, parallel, lanes, residual=residual)
    fn(*args)
    return out


def batch_norm(x, scale, bias, mean, var, epsilon=1e-5, activation_kind=0, act_params=(),
               parallel=None):
    out = np.empty_like(x)
    a, b = batch_norm_fold(scale, bias, mean, var, epsilon)
    fn, args = affine_call(x, a, b, out, int(activation_kind), act_params, parallel)
    fn(*args)
    return out


def _ref_instance_norm(x, scale, bias, epsilon=1e-5, activation_kind=0, act_params=(), blocks=None,
                       parallel=None, lanes=None, residual=None):
    if residual is None:
        return ref.instance_norm(x, scale, bias, epsilon=epsilon,
                                 activation_kind=activation_kind, act_params=act_params)
    y = ref.instance_norm(x, scale, bias, epsilon=epsilon)
    return ref.activation((y.astype(np.float64) + residual).astype(F32), activation_kind,
                          act_params)




def _ref_batch_norm(x, scale, bias, mean, var, epsilon=1e-5, activation_kind=0, act_params=(),
                    parallel=None):
    return ref.batch_norm(x, scale, bias, mean, var, epsilon=epsilon,
                          activation_kind=activation_kind, act_params=act_params)
