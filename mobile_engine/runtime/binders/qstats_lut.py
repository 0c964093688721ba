"""The int8 statistics/lookup-table kernel: a channel-wise program (registers, unary and binary
ops, means) over uint8 or float tensors, checked before it runs.
"""
from __future__ import annotations

import numpy as np

from kernels import config
from kernels import qu8_stats_lut as ksl
from mobile_engine.runtime.binders.registry import binds

F32 = np.float32
MAX_REGS = 1 << 12          # a plan asking for more registers is refused at bind time


# --- binder --------------------------------------------------------------------------------
def _bind(kernel: str):
    def bind(params, weights, inputs, outputs, threads=None):
        x, exts, (y,) = inputs[0], inputs[1:], outputs
        want = np.uint8 if kernel == ksl.KERNEL_U8 else F32
        prog, fpar, consts = weights["prog"], weights["fpar"], weights["consts"]
        n_regs = int(params["n_regs"])
        ext_regs = np.asarray(params["ext_regs"], np.int64)
        const_regs = np.asarray(params["const_regs"], np.int64)
        if x.dtype != np.uint8 or x.ndim != 4 or y.dtype != want or y.shape != x.shape:
            raise ValueError(f"{kernel}: input {x.dtype} {x.shape} -> output {y.dtype} {y.shape}")
        c = x.shape[3]
        if prog.ndim != 2 or prog.shape[1] != 4 or fpar.shape != prog.shape \
                or prog.size and (prog[:, 1:].max() >= n_regs or prog[:, 1:3].min() < -1
                                  or prog[:, 0].min() < 0 or prog[:, 0].max() >= len(ksl.OPS)) \
                or ext_regs.size != len(exts) or consts.ndim != 2 or consts.shape[1] != c \
                or consts.shape[0] < const_regs.size \
                or any(e.size != c for e in exts) or not 0 < n_regs <= MAX_REGS \
                or any(not 0 <= int(r) < n_regs for r in [params["x_reg"], params["out_reg"]]
                       + list(ext_regs) + list(const_regs)):
            raise ValueError(f"{kernel}: program {prog.shape} / consts {consts.shape} / "
                             f"{len(exts)} per-channel inputs do not fit {n_regs} registers and "
                             f"{c} channels")
        x2, y2 = x.reshape(-1, c), y.reshape(-1, c)
        parallel = config.use_parallel(x.size, threads=threads)
        histogram, apply_lut = ksl.kernels(parallel)
        # NOTE: scratch allocated once, here (Session.run allocates nothing)
        parts = np.zeros((ksl.HIST_CHUNKS if parallel else 1, c, 256), np.int32)
        hist = np.zeros((c, 256), np.int32)
        regs = np.zeros((n_regs, 256), F32)
        lut = np.zeros((c, 256), want)
        ext = np.zeros((len(exts), c), F32)
        ext_views = [e.reshape(-1) for e in exts]
        x_reg, out_reg = int(params["x_reg"]), int(params["out_reg"])
        run_program, count = ksl.run_program, float(x2.shape[0])

        def run():
            for k, e in enumerate(ext_views):
                ext[k] = e
            parts.fill(0)
            histogram(x2, parts)
            np.sum(parts, axis=0, out=hist)
            run_program(hist, count, prog, fpar, regs, x_reg, ext, ext_regs, consts, const_regs,
                        out_reg, lut)
            apply_lut(x2, lut, y2)
        return run, ()
    return bind


for _kernel in (ksl.KERNEL_U8, ksl.KERNEL_F32):
    binds(_kernel)(_bind(_kernel))
