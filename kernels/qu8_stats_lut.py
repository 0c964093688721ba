"""qu8 per-channel lookup tables built from channel statistics: a chain of float ops on a
uint8 tensor that a pre-quantized (QDQ) model writes out, e.g. its instance norm::

    xf = DQ(x);  m = Q(mean_hw(xf));  v = Q(mean_hw(Q((xf - DQ(m))^2)));  r = Q(1 / sqrt(...))
    y  = Q(DQ(Q(xf * g)) + b')                    (g, b' per-channel, from m, r and the style)

Every full-size value of such a chain is a function of (channel c, the byte x[p, c]) only, and
every per-channel value a function of the channel's histogram of x. So one step computes:

1. ``hist[c, v]``: how many pixels of channel c hold byte v (one pass over x);
2. the chain on a [C, 256] table per register (row c, column v: the value the chain gives a
   pixel of channel c holding v), per-channel values replicated along v; a channel mean of a
   full-size register is ``sum_v hist[c, v] * r[c, v] / (H * W)``;
3. ``out[p, c] = lut[c, x[p, c]]`` with lut the output register (uint8 or float32).

The chain's float32 arithmetic is the one of onnxruntime's QDQ reference ops: DQ
``f32(q - z) * s``, Q ``clip(rint(x / s) + z, lo, hi)`` (a true division, rounding half to
even), element-wise ops in float32 without fused multiply-adds; only the channel means sum in
float64 (onnxruntime sums float32 in its own order: results differ only at rounding ties).

Program (``prog`` i32[K, 4], ``fpar`` f32[K, 4]); one row per op ``(opcode, dst, a, b)``,
registers numbered in a [R, 256] scratch per channel:
    DQ    dst = (a - z) * s                 fpar (s, z)
    Q     dst = clip(rint(a / s) + z, lo, hi)   fpar (s, z, lo, hi)
    ADD/SUB/MUL/DIV  dst = act(a op b)      fpar (act: 0 none, 1 relu)
    SQRT, RECIP, SIGMOID, RELU, TANH, NEG, EXP   dst = f(a)
    MEAN  dst = sum_v hist[c, v] * a[c, v] / count     (bins with no pixel skipped)
    COPY  dst = a                           (a RESHAPE between per-channel layouts)
Register inputs: ``x_reg`` holds v itself; ``ext_regs[k]`` holds ``ext[k][c]`` (a run-time
per-channel tensor, as float); ``const_regs[k]`` holds ``consts[k, c]``.

Layout contract: x u8[P, C] C-contiguous (NHWC flattened over pixels), read-only; ext f32[E, C]
(the binder converts); out u8[P, C] or f32[P, C], may not alias x.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from kernels import config

F32 = np.float32
OPS = ("DQ", "Q", "ADD", "SUB", "MUL", "DIV", "SQRT", "RECIP", "SIGMOID", "RELU", "TANH", "NEG",
       "EXP", "MEAN", "COPY")
OPCODE = {name: i for i, name in enumerate(OPS)}
KERNEL_U8, KERNEL_F32 = "qu8_stats_lut_nhwc_u8", "qu8_stats_lut_nhwc_f32"
# NOTE: exact float32 semantics (no FMA contraction, no reassociation): the tables must equal
# what the element-wise reference ops compute on each value.
_FLAGS = {"fastmath": False}
HIST_CHUNKS = 4          # pixel blocks histogrammed in parallel, then summed
BLOCK = 4096             # pixels per parallel task of the table lookup


@config.jit(**_FLAGS)
def run_program(hist, count, prog, fpar, regs, x_reg, ext, ext_regs, consts, const_regs, out_reg,
                lut):
    """Evaluate the program for every channel; writes ``lut[c, v]`` (u8 or f32: the output
    register holds whole bytes when the chain ends with a Q) from ``out_reg``."""
    c_n = hist.shape[0]
    for c in range(c_n):
        for v in range(256):
            regs[x_reg, v] = F32(v)
        for k in range(ext_regs.size):
            for v in range(256):
                regs[ext_regs[k], v] = ext[k, c]
        for k in range(const_regs.size):
            for v in range(256):
                regs[const_regs[k], v] = consts[k, c]
        for i in range(prog.shape[0]):
            op, d, a, b = prog[i, 0], prog[i, 1], prog[i, 2], prog[i, 3]
            p0, p1, p2, p3 = fpar[i, 0], fpar[i, 1], fpar[i, 2], fpar[i, 3]
            if op == 13:                                         # MEAN over the pixels
                acc = 0.0
                for v in range(256):
                    if hist[c, v]:
                        acc += np.float64(hist[c, v]) * np.float64(regs[a, v])
                m = F32(acc / count)
                for v in range(256):
                    regs[d, v] = m
                continue
            for v in range(256):
                x = regs[a, v]
                if op == 0:
                    y = (x - p1) * p0
                elif op == 1:
                    y = np.rint(x / p0) + p1
                    y = p2 if y < p2 else y
                    y = p3 if y > p3 else y
                elif op <= 5:
                    w = regs[b, v]
                    if op == 2:
                        y = x + w
                    elif op == 3:
                        y = x - w
                    elif op == 4:
                        y = x * w
                    else:
                        y = x / w
                    if p0 == F32(1) and y < F32(0):
                        y = F32(0)
                elif op == 6:
                    y = np.sqrt(x)
                elif op == 7:
                    y = F32(1) / x
                elif op == 8:
                    y = F32(1) / (F32(1) + np.exp(-x))
                elif op == 9:
                    y = x if x > F32(0) else F32(0)
                elif op == 10:
                    y = np.tanh(x)
                elif op == 11:
                    y = -x
                elif op == 12:
                    y = np.exp(x)
                else:
                    y = x
                regs[d, v] = y
        for v in range(256):
            lut[c, v] = regs[out_reg, v]


def _sources(parallel: bool):
    loop = numba.prange if parallel else range

    def histogram(x, parts):
        """parts[k, c, v] += pixels of block k; x u8[P, C]."""
        p_n, c_n = x.shape
        chunks = parts.shape[0]
        step = (p_n + chunks - 1) // chunks
        for k in loop(chunks):
            for p in range(k * step, min(p_n, (k + 1) * step)):
                for c in range(c_n):
                    parts[k, c, x[p, c]] += 1

    def apply_lut(x, lut, out):
        p_n, c_n = x.shape
        for blk in loop((p_n + BLOCK - 1) // BLOCK):
            for p in range(blk * BLOCK, min(p_n, (blk + 1) * BLOCK)):
                for c in range(c_n):
                    out[p, c] = lut[c, x[p, c]]

    return histogram, apply_lut


@functools.lru_cache(maxsize=None)
def kernels(parallel: bool):
    """(histogram, apply_lut) dispatchers, serial or ``prange``."""
    deco = config.pjit if parallel else config.jit
    return tuple(deco(fn, **_FLAGS) for fn in _sources(parallel))


def stats_lut(x, parts, hist, prog, fpar, regs, x_reg, ext, ext_regs, consts, const_regs, out_reg,
              lut, out, histogram, apply_lut):
    """One run: histogram, program, lookup (the step's call; all arrays preallocated; ``lut``
    has ``out``'s dtype)."""
    parts[...] = 0
    histogram(x, parts)
    np.sum(parts, axis=0, out=hist)
    run_program(hist, float(x.shape[0]), prog, fpar, regs, x_reg, ext, ext_regs, consts,
                const_regs, out_reg, lut)
    apply_lut(x, lut, out)


def reference(x, prog, fpar, x_reg, ext, ext_regs, consts, const_regs, out_reg, n_regs, out_dtype):
    """numpy reference of the whole step: the program evaluated on every pixel directly (no
    histogram, no table); x u8[P, C] -> out [P, C]."""
    x = np.asarray(x)
    p_n, c_n = x.shape
    regs = [None] * n_regs
    regs[x_reg] = x.astype(F32)
    for k, r in enumerate(ext_regs):
        regs[r] = np.broadcast_to(np.asarray(ext[k], F32)[None, :], (p_n, c_n))
    for k, r in enumerate(const_regs):
        regs[r] = np.broadcast_to(np.asarray(consts[k], F32)[None, :], (p_n, c_n))
    with np.errstate(all="ignore"):
        for (op, d, a, b), (p0, p1, p2, p3) in zip(prog, fpar.astype(F32)):
            name, xa = OPS[op], regs[a]
            if name == "DQ":
                y = (xa - p1) * p0
            elif name == "Q":
                y = np.clip(np.rint(xa / p0) + p1, p2, p3)
            elif name in ("ADD", "SUB", "MUL", "DIV"):
                y = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply,
                     "DIV": np.divide}[name](xa, regs[b])
                if p0 == 1:
                    y = np.maximum(y, F32(0))
            elif name == "MEAN":
                y = np.broadcast_to((xa.astype(np.float64).sum(axis=0) / p_n).astype(F32),
                                    (p_n, c_n))
            else:
                y = {"SQRT": np.sqrt, "RECIP": lambda t: F32(1) / t,
                     "SIGMOID": lambda t: F32(1) / (F32(1) + np.exp(-t)),
                     "RELU": lambda t: np.maximum(t, F32(0)), "TANH": np.tanh,
                     "NEG": np.negative, "EXP": np.exp, "COPY": lambda t: t}[name](xa)
            regs[d] = np.asarray(y, F32)
    return np.asarray(regs[out_reg]).astype(out_dtype)
