"""Benchmark the qu8 conv kernels: ``.venv/bin/python -m kernels.bench_qu8 [--repeat N] [--isa I]``.

Reports median GOP/s (2 * MACs / time) of the 3x3 128->128 conv on 64x64 (DESIGN.md: ~855 GOP/s
on 1 core with vpdpbusd) and of multistyle26's conv layers at 480x640, serial (1 thread, timed
by the thread's CPU time, so a busy machine distorts it less) and parallel (Numba's thread
count, wall time). Weights are packed and tables built once, as in a plan; requant epilogue
(uint8 out) unless ``--fp32out``; ``--stats`` adds the instance-norm statistics epilogue of the
fused conv + norm step (fp32out with row sums, igemm only).
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from kernels import qu8_conv2d as qc
from kernels.bench_conv import median_seconds

# multistyle26's convs at 480x640 (DESIGN.md's layer list; reflect padding k // 2):
# (name, input H, W, Ci, Co, k, stride, upsample, count)
MULTISTYLE26 = [
    ("contract.0 9x9 3->32", 480, 640, 3, 32, 9, 1, 1, 1),
    ("contract.1 3x3s2 32->32", 480, 640, 32, 32, 3, 2, 1, 1),
    ("contract.2 3x3s2 32->32", 240, 320, 32, 32, 3, 2, 1, 1),
    ("res 3x3 32->32", 120, 160, 32, 32, 3, 1, 1, 12),
    ("expand.0 up2 3x3 32->8", 120, 160, 32, 8, 3, 1, 2, 1),
    ("expand.1 up2 3x3 8->4", 240, 320, 8, 4, 3, 1, 2, 1),
    ("expand.2 9x9 4->3", 480, 640, 4, 3, 9, 1, 1, 1),
]


def prepare(h, w, ci, co, k, stride=1, upsample=1, pad_mode="reflect", tile=None,
            parallel=False, isa=None, epilogue="requant", method=None, stats=False):
    """(fn, args, ops, tile, kernel id) of one qu8 conv as a bound plan step would call it."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, h, w, ci)).astype(np.uint8)
    wt = rng.integers(-127, 128, (co, ci, k, k)).astype(np.int8)
    p = k // 2
    rowmap, colmap = qc.conv_tables(x.shape, (k, k), (stride, stride), (1, 1), (p, p, p, p),
                                    pad_mode, upsample)
    dtype = np.uint8 if epilogue == "requant" else np.float32
    out = np.empty((1, rowmap.shape[0], colmap.shape[0], co), dtype)
    ro = qc.readonly
    head = (ro(x), ro(qc.qu8_zero_row(3, ci, k)), ro(rowmap), ro(colmap))
    tail = (ro(qc.qu8_conv_bias(None, wt, 1.0, 1.0, 3)), ro(np.full(co, 1e-4, np.float32)), out)
    params = (128, 0, 255, 0, np.float32(0), np.float32(0))
    if (method or ("kdot" if qc.use_kdot(co, 1) else "igemm")) == "kdot":
        mr, cg = qc.kdot_tile(co)
        wrun, wtap = qc.pack_qu8_weights_kdot(wt, cg)
        kid, fn = qc.select_qu8_conv_kdot(mr, cg, epilogue, parallel, isa)
        args = (*head, ro(wrun), ro(wtap), *tail, *params)
        mr, nr = mr, 4 * cg
    else:
        mr, nr = tile or qc.choose_tile(co)
        wp = qc.pack_qu8_weights(wt, nr)
        kid, fn = qc.select_qu8_conv(mr, nr, epilogue, parallel, isa)
        args = (*head, ro(wp), ro(qc.qu8_run_weights(wt, wp, nr)), *tail, 1, *params)
        if stats:           # the fused conv + norm step's row sums
            args = args + (np.zeros(out.shape[0] * out.shape[1] * 2 * co),)
    return fn, args, 2 * out.size * ci * k * k, (mr, nr), kid


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--tile", help="force MRxNR, e.g. 12x32")
    ap.add_argument("--isa", choices=sorted(qc.ISAS), help="default: this CPU's best")
    ap.add_argument("--fp32out", action="store_true", help="float32 epilogue")
    ap.add_argument("--method", choices=["igemm", "kdot"], help="default: kdot for Co <= 8")
    ap.add_argument("--stats", action="store_true",
                    help="fp32out with the instance-norm statistics epilogue (igemm)")
    args = ap.parse_args(argv)
    tile = tuple(int(v) for v in args.tile.split("x")) if args.tile else None
    epi = "fp32out" if args.fp32out or args.stats else "requant"
    method = "igemm" if args.stats else args.method
    threads = numba.get_num_threads()
    for parallel in (False, True):
        fn, a, ops, _, kid = prepare(64, 64, 128, 128, 3, pad_mode="constant", tile=tile,
                                     parallel=parallel, isa=args.isa, epilogue=epi,
                                     stats=args.stats)
        clock = time.perf_counter if parallel else time.thread_time
        s = median_seconds(fn, a, args.repeat, clock)
        print(f"3x3 128->128 64x64 {kid}: {ops / s / 1e9:7.1f} GOP/s "
              f"({threads if parallel else 1} thread{'s' if parallel else ''})")
    print(f"\nmultistyle26 convs at 480x640 (1t: CPU time; {threads}t: wall time):")
    print(f"{'layer':28s} {'tile':>6s} {'GOP':>6s} {'ms 1t':>7s} {'GOP/s 1t':>9s} "
          f"{'ms {0}t'.format(threads):>7s} {'GOP/s':>6s}")
    total = [0.0, 0.0, 0.0]
    for name, h, w, ci, co, k, stride, up, count in MULTISTYLE26:
        row = []
        for parallel in (False, True):
            fn, a, ops, t, _ = prepare(h, w, ci, co, k, stride, up, tile=tile,
                                       parallel=parallel, isa=args.isa, epilogue=epi,
                                       method=method, stats=args.stats)
            clock = time.perf_counter if parallel else time.thread_time
            row.append(median_seconds(fn, a, max(3, args.repeat // 2), clock))
        total[0] += ops * count
        total[1] += row[0] * count
        total[2] += row[1] * count
        label = f"{name} x{count}" if count > 1 else name
        print(f"{label:28s} {t[0]:>2d}x{t[1]:<3d} {ops / 1e9:6.2f} {row[0] * 1e3:7.2f} "
              f"{ops / row[0] / 1e9:9.1f} {row[1] * 1e3:7.2f} {ops / row[1] / 1e9:6.1f}")
    print(f"{'all convs':28s} {'':6s} {total[0] / 1e9:6.2f} {total[1] * 1e3:7.2f} "
          f"{total[0] / total[1] / 1e9:9.1f} {total[2] * 1e3:7.2f} "
          f"{total[0] / total[2] / 1e9:6.1f}")


if __name__ == "__main__":
    main()
