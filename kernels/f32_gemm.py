"""fp32 GEMM / batched MatMul: ``out[t] = act(alpha * A[t] @ B[t] + beta * C)``.

Register tile MR x NR (4 x 32 or 4 x 16): the accumulators are a stack array touched only at
constant offsets through ``kernels.intrinsics`` vector ops, so SROA keeps them in zmm registers
(DESIGN.md: plain loops over a small tile vectorise the wrong loop). Each k step broadcasts MR
values of A and FMAs them into NR / 16 vectors of packed B.

Packed B: ``bp[batch_b, nb, K, NR]``, nb = ceil(N / NR), columns past N zero, so the inner loop
reads NR contiguous floats per k. A constant B is packed at compile time (:func:`pack_b`,
transposed as needed); a run-time B is packed into a binder-owned scratch on every run
(:data:`pack_b_rt`), which also absorbs ``trans_b``.

A is read in place through strides (``sam``, ``sak``): ``trans_a`` needs no copy. Batches
(MatMul's broadcast batch dims) are a list of (A offset, packed-B offset) pairs precomputed at
bind time. C (GEMM's bias) is read through strides ``(scm, scn)``, 0 on broadcast axes.

Layout contract: ``a``: f32[...] flat, read only; ``bp``: f32 flat packed, read only;
``c``: f32 flat read only; ``out``: f32[batch * M * N] C-contiguous, may not alias ``a``/``c``.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import prange

from kernels import reference as ref
from kernels import config
from kernels.config import jit, pjit, use_parallel
from kernels.f32_elementwise import EPILOGUES, act_inplace, act_params, readonly
from kernels.intrinsics import stack_array, vcopy, vfill, vfma

F32 = np.float32
VL = 16                          # float32 lanes of one zmm vector
MR = 4
NR_CHOICES = (16, 32)


def choose_nr(n: int) -> int:
    """Tile width: 16 lanes for narrow outputs (matrix-vector), else 32."""
    return 16 if n <= 16 else 32


def _gemm_source(mr: int, nr: int, parallel: bool):
    NV = nr // VL
    ACC = mr * nr
    MR_, NR_ = mr, nr
    loop = prange if parallel else range

    def f32_gemm(a, a_offs, sam, sak, bp, b_offs, c, scm, scn, beta, has_c, out, M, N, K,
                 alpha, act, p0, p1):
        batch = a_offs.shape[0]
        mb = (M + MR_ - 1) // MR_
        nb = (N + NR_ - 1) // NR_
        for t in loop(batch * mb * nb):
            bi = t // (mb * nb)
            r = t - bi * mb * nb
            im = r // nb
            jn = r - im * nb
            m0, n0 = im * MR_, jn * NR_
            acc = stack_array(ACC, np.float32)
            tile = stack_array(ACC, np.float32)
            rows = stack_array(MR_, np.int64)
            scale = stack_array(MR_, np.float32)
            for v in range(MR_ * NV):
                vfill(acc, v * VL, F32(0), VL)
            full = m0 + MR_ <= M
            for m in range(MR_):
                rows[m] = a_offs[bi] + min(m0 + m, M - 1) * sam   # clamped; tail rows scaled 0
                scale[m] = F32(1) if m0 + m < M else F32(0)
            wb = b_offs[bi] + jn * K * NR_
            if full:
                for k in range(K):
                    wo = wb + k * NR_
                    for m in range(MR_):
                        xv = a[rows[m] + k * sak]
                        for v in range(NV):
                            vfma(acc, (m * NV + v) * VL, xv, bp, wo + v * VL, VL)
            else:
                for k in range(K):
                    wo = wb + k * NR_
                    for m in range(MR_):
                        xv = a[rows[m] + k * sak] * scale[m]
                        for v in range(NV):
                            vfma(acc, (m * NV + v) * VL, xv, bp, wo + v * VL, VL)
            for v in range(MR_ * NV):
                vcopy(tile, v * VL, acc, v * VL, VL)
            nv = min(NR_, N - n0)
            for m in range(min(MR_, M - m0)):
                ob = (bi * M + m0 + m) * N + n0
                cb = (m0 + m) * scm + n0 * scn
                if has_c:
                    for j in range(nv):
                        out[ob + j] = tile[m * NR_ + j] * alpha + beta * c[cb + j * scn]
                else:
                    for j in range(nv):
                        out[ob + j] = tile[m * NR_ + j] * alpha
                if act != 0:
                    act_inplace(out, ob, nv, act, p0, p1)

    return f32_gemm


@functools.lru_cache(maxsize=None)
def gemm_kernel(mr: int, nr: int, parallel: bool):
    """The dispatcher of ``f32_gemm_{mr}x{nr}`` (memoised). Call
    ``fn(a, a_offs, sam, sak, bp, b_offs, c, scm, scn, beta, has_c, out, M, N, K, alpha, act,
    p0, p1)``: a_offs, b_offs int64[batch] (element offsets of each batch's A and packed B);
    sam, sak, scm, scn, M, N, K, act int; beta, alpha, p0, p1 float32; has_c bool."""
    return (pjit if parallel else jit)(_gemm_source(mr, nr, parallel))


@jit
def pack_b_rt(b, b_bases, sbk, sbn, K, N, nr, bp):
    """Run time: pack B matrices (element (k, n) at ``base + k*sbk + n*sbn``) into
    ``bp[len(b_bases), nb, K, nr]``, zero past N."""
    nb = (N + nr - 1) // nr
    zero = np.float32(0)
    for t in range(b_bases.shape[0]):
        for jn in range(nb):
            for k in range(K):
                o = ((t * nb + jn) * K + k) * nr
                src = b_bases[t] + k * sbk
                for j in range(nr):
                    n = jn * nr + j
                    bp[o + j] = b[src + n * sbn] if n < N else zero


def pack_b(b: np.ndarray, nr: int) -> np.ndarray:
    """Compile time: B f32[..., K, N] -> f32[..., nb, K, nr] (zero-padded), C-contiguous."""
    *batch, k, n = b.shape
    nb = -(-n // nr)
    padded = np.zeros((*batch, k, nb * nr), F32)
    padded[..., :n] = b
    return np.ascontiguousarray(
        np.moveaxis(padded.reshape(*batch, k, nb, nr), -2, -3))


def packed_size(k: int, n: int, nr: int) -> int:
    return -(-n // nr) * k * nr


def bias_strides(c_shape, m: int, n: int) -> tuple[int, int]:
    """Element strides of a C broadcast to [M, N] (0 on broadcast axes)."""
    cs = (1,) * (2 - len(c_shape)) + tuple(c_shape)
    return (cs[1] if cs[0] != 1 else 0), (1 if cs[1] != 1 else 0)


def batch_offsets(a_batch, b_batch, a_step: int, b_step: int):
    """Per output batch (broadcast of the two batch shapes, C order): the element offsets of
    its A matrix and packed-B matrix."""
    shape = np.broadcast_shapes(tuple(a_batch), tuple(b_batch))
    ia = np.broadcast_to(np.arange(int(np.prod(a_batch, dtype=np.int64))).reshape(a_batch),
                         shape).reshape(-1)
    ib = np.broadcast_to(np.arange(int(np.prod(b_batch, dtype=np.int64))).reshape(b_batch),
                         shape).reshape(-1)
    return (np.ascontiguousarray(ia * a_step, np.int64),
            np.ascontiguousarray(ib * b_step, np.int64))


def gemm_call(a, a_offs, sam, sak, bp, b_offs, c, scm, scn, beta, out, m, n, k, alpha,
              nr, act=0, params=(), parallel=None, threads=None):
    """``(fn, args)`` for one (batched) GEMM on prepared operands; ``c`` None for no C;
    ``parallel`` None: ``use_parallel`` on ``threads`` threads."""
    batch = a_offs.shape[0]
    if parallel is None:
        parallel = use_parallel(batch * m * n * k // config.MAC_WORK, batch * -(-m // MR) * -(-n // nr), threads)
    fn = gemm_kernel(MR, nr, bool(parallel))
    p0, p1 = act_params(act, params)
    has_c = c is not None
    c = c if has_c else np.zeros(1, F32)
    return fn, (readonly(a.reshape(-1)), a_offs, sam, sak, readonly(bp.reshape(-1)), b_offs,
                readonly(c.reshape(-1)), scm, scn,
                F32(beta), has_c, out.reshape(-1), m, n, k, F32(alpha), int(act), F32(p0), F32(p1))


# --------------------------------------------------------------------------------------------
# Whole-array entry points and numpy references (rows of kernels/table.py).
def gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=False, trans_b=False, activation_kind=0,
         act_params=(), parallel=None, pack_at_run_time=False):
    """ONNX Gemm on float32 arrays (B packed at compile time, or at run time on request)."""
    m, k = a.shape[::-1] if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    nr = choose_nr(n)
    sam, sak = (1, m) if trans_a else (k, 1)
    if pack_at_run_time:
        bp = np.empty(packed_size(k, n, nr), F32)
        sbk, sbn = (1, k) if trans_b else (n, 1)
        pack_b_rt(readonly(b.reshape(-1)), np.zeros(1, np.int64), sbk, sbn, k, n, nr, bp)
    else:
        bp = pack_b(b.T if trans_b else b, nr)
    out = np.empty((m, n), F32)
    scm, scn = bias_strides(c.shape, m, n) if c is not None else (0, 0)
    zero = np.zeros(1, np.int64)
    fn, args = gemm_call(a, zero, sam, sak, bp, zero, c, scm, scn, beta, out, m, n, k, alpha,
                         nr, activation_kind, act_params, parallel)
    fn(*args)
    return out


def matmul(a, b, activation_kind=0, act_params=(), parallel=None):
    """numpy.matmul semantics (1-D operands, broadcast batch dims) on float32 arrays."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    n = b2.shape[-1]
    nr = choose_nr(n)
    bp = pack_b(b2, nr)
    a_offs, b_offs = batch_offsets(a2.shape[:-2], b2.shape[:-2], m * k, packed_size(k, n, nr))
    batch_shape = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    out = np.empty((*batch_shape, m, n), F32)
    fn, args = gemm_call(np.ascontiguousarray(a2), a_offs, k, 1, bp, b_offs, None, 0, 0, 0.0,
                         out, m, n, k, 1.0, nr, activation_kind, act_params, parallel)
    fn(*args)
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out


def _ref_gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=False, trans_b=False,
              activation_kind=0, act_params=(), parallel=None, pack_at_run_time=False):
    return ref.gemm(a, b, c, alpha, beta, trans_a, trans_b, activation_kind, act_params)


def _ref_matmul(a, b, activation_kind=0, act_params=(), parallel=None):
    return ref.matmul(a, b, activation_kind, act_params)




def kernel_id(op: str, nr: int, runtime_b: bool, act: int) -> str:
    """``f32_{gemm|matmul}_{MR}x{NR}[_packb]<epilogue>``: ``_packb`` packs a run-time B."""
    return f"f32_{op}_{MR}x{nr}{'_packb' if runtime_b else ''}{EPILOGUES[act]}"
