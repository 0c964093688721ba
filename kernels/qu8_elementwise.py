"""qu8 element-wise kernels: requantizing add of two uint8 tensors, quantize f32 -> u8 and
dequantize u8 -> f32 (per-tensor scale and zero point).

    qu8_add_requant:  y = clip(rint(f32(a - za) * ma + f32(b - zb) * mb) + zy, qmin, qmax)
                      ma = f32(sa / sy), mb = f32(sb / sy)     (``add_multipliers``)
    qu8_quantize:     q = clip(rint(x * f32(1 / s)) + z, 0, 255)
                      NOTE: a multiply by the float32 reciprocal, not a division by s (the
                      two differ in the last bit for some x); NaN gives an unspecified byte
    qu8_dequantize:   x = f32(q - z) * f32(s)
rint rounds half to even. Compiled without fast-math, so the two products of the add are
rounded separately (never fused into a multiply-add): bit-exact against
``kernels/reference_q8.py``. The fused activation of an add is folded into (qmin, qmax).

Layout contract: flat (1-D) C-contiguous views of same-shape tensors (binders reshape);
``a``, ``b``, ``x``, ``q`` read-only; ``out`` may be exactly ``a`` or ``b`` (each element is
read before it is written). One body per kernel, compiled as a serial and a ``prange`` variant
(blocks of ``BLOCK`` elements).
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config
from kernels.reference_q8 import add_multipliers

F32 = np.float32
U64 = np.uint64
BLOCK = 16384       # elements per parallel task
ADD_ID, QUANTIZE_ID, DEQUANTIZE_ID = "qu8_add_requant", "qu8_quantize", "qu8_dequantize"
_FLAGS = {"fastmath": False}


def _sources(parallel: bool):
    loop = numba.prange if parallel else range

    def qu8_add_requant(a, b, out, za, zb, ma, mb, zy, qmin, qmax):
        n = out.size
        za32, zb32 = np.int32(za), np.int32(zb)
        zyf, lo, hi = F32(zy), F32(qmin), F32(qmax)
        for blk in loop((n + BLOCK - 1) // BLOCK):
            for i in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
                da = F32(np.int32(a[U64(i)]) - za32) * ma
                db = F32(np.int32(b[U64(i)]) - zb32) * mb
                y = np.rint(da + db) + zyf
                y = lo if y < lo else y
                y = hi if y > hi else y
                out[U64(i)] = np.uint8(np.int32(y))

    def qu8_quantize(x, out, inv_s, z):
        n = out.size
        zf = F32(z)
        for blk in loop((n + BLOCK - 1) // BLOCK):
            for i in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
                y = np.rint(x[U64(i)] * inv_s) + zf
                y = F32(0) if y < F32(0) else y
                y = F32(255) if y > F32(255) else y
                out[U64(i)] = np.uint8(np.int32(y))

    def qu8_dequantize(q, out, s, z):
        n = out.size
        z32 = np.int32(z)
        for blk in loop((n + BLOCK - 1) // BLOCK):
            for i in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
                out[U64(i)] = F32(np.int32(q[U64(i)]) - z32) * s

    return {ADD_ID: qu8_add_requant, QUANTIZE_ID: qu8_quantize, DEQUANTIZE_ID: qu8_dequantize}


@functools.lru_cache(maxsize=None)
def kernel(kernel_id: str, parallel: bool, cache: bool = True):
    """The Numba dispatcher of ``kernel_id`` (memoised). Calls:
        qu8_add_requant(a u8[n], b u8[n], out u8[n], za, zb, ma f32, mb f32, zy, qmin, qmax)
        qu8_quantize(x f32[n], out u8[n], inv_s f32 (= f32(1 / s)), z)
        qu8_dequantize(q u8[n], out f32[n], s f32, z)
    integer arguments as Python ints; ``parallel`` as ``config.use_parallel(n, threads=...)``.
    """
    deco = config.pjit if parallel else config.jit
    flags = dict(_FLAGS) if cache else dict(_FLAGS, cache=False)
    return deco(_sources(parallel)[kernel_id], **flags)


def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype).reshape(-1)


def _parallel(n, parallel):
    return config.use_parallel(n) if parallel is None else parallel


def qu8_add(a, sa, za, b, sb, zb, sy, zy, qmin=0, qmax=255, *, parallel=None) -> np.ndarray:
    """uint8 requantized ``a + b`` of two same-shape uint8 tensors (convenience entry)."""
    a8, b8 = np.asarray(a), np.asarray(b)
    if a8.shape != b8.shape:
        raise ValueError(f"qu8_add needs same-shape operands, got {a8.shape} and {b8.shape}")
    ma, mb = add_multipliers(sa, sb, sy)
    out = np.empty(a8.shape, np.uint8)
    kernel(ADD_ID, _parallel(out.size, parallel))(
        _flat(a8, np.uint8), _flat(b8, np.uint8), out.reshape(-1), int(za), int(zb), ma, mb,
        int(zy), int(qmin), int(qmax))
    return out


def quantize_u8(x, s: float, z: int, *, parallel=None) -> np.ndarray:
    """uint8 ``clip(rint(x * f32(1 / s)) + z, 0, 255)`` (convenience entry)."""
    x = np.asarray(x, F32)
    out = np.empty(x.shape, np.uint8)
    kernel(QUANTIZE_ID, _parallel(out.size, parallel))(
        _flat(x, F32), out.reshape(-1), F32(1.0 / float(s)), int(z))
    return out


def dequantize_u8(q, s: float, z: int, *, parallel=None) -> np.ndarray:
    """float32 ``f32(q - z) * f32(s)`` (convenience entry)."""
    q = np.asarray(q, np.uint8)
    out = np.empty(q.shape, F32)
    kernel(DEQUANTIZE_ID, _parallel(out.size, parallel))(
        _flat(q, np.uint8), out.reshape(-1), F32(s), int(z))
    return out


def _references():
    from kernels import reference_q8 as rq
    return {ADD_ID: rq.qu8_add_reference, QUANTIZE_ID: rq.quantize_u8_reference,
            DEQUANTIZE_ID: rq.dequantize_u8_reference}


# The family's kernels and their numpy references (tests walk this table).
KERNELS = {ADD_ID: (qu8_add, lambda: _references()[ADD_ID]),
           QUANTIZE_ID: (quantize_u8, lambda: _references()[QUANTIZE_ID]),
           DEQUANTIZE_ID: (dequantize_u8, lambda: _references()[DEQUANTIZE_ID])}
