"""Benchmark the fp32 conv kernels: ``.venv/bin/python -m kernels.bench_conv [--repeat N]``.

Reports median GFLOP/s (2 * MACs / time) of the 3x3 128->128 conv on 64x64 (DESIGN.md: ~200
GFLOP/s on 1 core is reachable) and of multistyle26's conv layers at 480x640 with the kernels
and layouts the plan uses (the upsampled 3x3 layers count the MACs of the plain 3x3 conv: the
pixel kernel folds them 2.25x, so their GFLOP/s is "equivalent"), serial (1 thread,
timed by the thread's CPU time, so a busy machine does not distort it) and parallel (Numba's
thread count, wall time). Weights are packed and tables built once, as in a plan.
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from kernels import config
from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv2d_winograd as wino

# multistyle26 at 480x640: (name, input H, W, Ci, Co, k, stride, upsample, count, layouts of the
# input and output as the plan has them: the few-channel tail runs planar, passes/nchw_tail.py)
MULTISTYLE26 = [
    ("contract.0 9x9 3->32", 480, 640, 3, 32, 9, 1, 1, 1, "nhwc", "nhwc"),
    ("contract.1 3x3s2 32->32", 480, 640, 32, 32, 3, 2, 1, 1, "nhwc", "nhwc"),
    ("contract.2 3x3s2 32->32", 240, 320, 32, 32, 3, 2, 1, 1, "nhwc", "nhwc"),
    ("res 3x3 32->32", 120, 160, 32, 32, 3, 1, 1, 12, "nhwc", "nhwc"),
    ("expand.0 up2 3x3 32->8", 120, 160, 32, 8, 3, 1, 2, 1, "nhwc", "nchw"),
    ("expand.1 up2 3x3 8->4", 240, 320, 8, 4, 3, 1, 2, 1, "nchw", "nchw"),
    ("expand.2 9x9 4->3", 480, 640, 4, 3, 9, 1, 1, 1, "nchw", "nchw"),
]
# 3x3 stride-1 convs of real networks (name, H, W, Ci, Co): the igemm against Winograd
REAL_3X3 = [
    ("resnet50 stage 1", 56, 56, 64, 64), ("resnet50 stage 2", 28, 28, 128, 128),
    ("resnet50 stage 3", 14, 14, 256, 256), ("resnet50 stage 4", 7, 7, 512, 512),
    ("vgg19 block 2", 112, 112, 64, 64), ("inception_v2 3x3", 28, 28, 96, 96),
    ("densenet growth", 14, 14, 128, 32), ("yolov8n 320", 80, 80, 16, 32),
    ("few channels", 56, 56, 16, 16),
]


def prepare(h, w, ci, co, k, stride=1, upsample=1, pad_mode="reflect", tile=None, parallel=False,
            method=None, layouts=("nhwc", "nhwc")):
    """(fn, args, flops, tile name) of one conv as a bound plan step would call it: the pixel-
    lane kernel for few output channels (``pix.applicable``), then kdot, else igemm; ``tile``
    forces an igemm tile, ``method`` ("pix", "kdot", "igemm", "winograd") a kernel family."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, h, w, ci)).astype(np.float32)
    wt = (rng.standard_normal((co, ci, k, k)) / np.sqrt(ci * k * k)).astype(np.float32)
    p = k // 2
    rowmap, colmap = igemm.conv_tables(x.shape, (k, k), (stride, stride), (1, 1), (p, p, p, p),
                                       pad_mode, upsample)
    out = np.empty((1, rowmap.shape[0], colmap.shape[0], co), np.float32)
    ro = igemm.readonly
    head = (ro(x), ro(rowmap), ro(colmap))
    tail = (ro(np.zeros(co, np.float32)), ro(out), out)
    flops = 2 * out.size * ci * k * k
    if method is None and tile is None:
        method = "pix" if pix.applicable(co, 1, stride) else \
            "kdot" if igemm.use_kdot(co, 1) else "igemm"
    if method == "pix":
        in_nchw, out_nchw = (lay == "nchw" for lay in layouts)
        plan = pix.PixPlan(wt, rowmap, colmap, upsample, 1)
        xs = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if in_nchw else x
        o = np.empty((1, co, rowmap.shape[0], colmap.shape[0]), np.float32) if out_nchw else out
        scratch, tags = pix.scratch_for(plan, ci, pix.blocks_for(rowmap.shape[0], parallel))
        args = (ro(xs), ro(plan.rowtap), ro(plan.rowsel), ro(plan.coloff), ro(plan.bufsrc),
                ro(plan.wbank), ro(np.zeros(co, np.float32)), ro(o), o, scratch, tags, in_nchw,
                out_nchw, 1, np.float32(0), np.float32(0), False)
        name = f"p{pix.VL * plan.nvx}x{co}"          # the tile this machine runs
        return pix.pix_kernel(plan.nvx, co, plan.phases, parallel), args, flops, name
    if method == "winograd":
        prow, pcol = wino.padded_maps(rowmap, colmap, out.shape[1], out.shape[2])
        nr = wino.choose_nr(co)
        tiles = wino.tiles_of(*out.shape[:3])
        vs, ms = wino.scratch_split(np.zeros(wino.scratch_floats(tiles, ci, co), np.float32),
                                    tiles, ci, co)
        args = (ro(x), ro(prow), ro(pcol), ro(wino.transform_weights(wt, nr)),
                ro(wino.direct_weights(wt))) + tail + (1, np.float32(0), np.float32(0), False,
                                                      vs, ms, np.zeros(vs.shape[0], np.bool_))
        name = f"w{igemm.machine_rows(wino.MR, nr)}x{nr}"
        return wino.winograd_kernel(nr, parallel), args, flops, name
    if method == "kdot":
        mr, cg = igemm.kdot_tile(co)
        wrun, wtap = igemm.pack_weights_kdot(wt, cg)
        args = head + (ro(wrun), ro(wtap)) + tail + (1, np.float32(0), np.float32(0), False)
        rows = config.fit_rows(mr, cg * igemm.VL)
        return igemm.kdot_kernel(mr, cg, parallel), args, flops, f"k{rows}x{4 * cg}"
    mr, nr = tile or igemm.choose_tile(co)
    args = head + (ro(igemm.pack_weights(wt, nr)),) + tail + (1, 1, 1, np.float32(0),
                                                              np.float32(0), ro(igemm.NO_SLOPES),
                                                              False, igemm.NO_SUMS, False, False,
                                                              1)
    return igemm.igemm_kernel(mr, nr, parallel), args, flops, f"{igemm.machine_rows(mr, nr)}x{nr}"


def median_seconds(fn, args, repeat, clock=time.perf_counter):
    """Median duration of ``fn(*args)``; ``clock=time.thread_time`` measures a serial kernel's
    CPU time, which stays meaningful when other processes share the cores."""
    fn(*args)
    times = []
    for _ in range(repeat):
        t = clock()
        fn(*args)
        times.append(clock() - t)
    return float(np.median(times))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--tile", help="force the igemm tile MRxNR, e.g. 8x32")
    args = ap.parse_args(argv)
    tile = tuple(int(v) for v in args.tile.split("x")) if args.tile else None
    threads = numba.get_num_threads()
    fn, a, flops, t = prepare(64, 64, 128, 128, 3, pad_mode="constant", tile=tile)
    s = median_seconds(fn, a, args.repeat, time.thread_time)
    print(f"3x3 128->128 64x64 tile {t}: {flops / s / 1e9:6.1f} GFLOP/s (1 thread, CPU time)")
    fn, a, flops, t = prepare(64, 64, 128, 128, 3, pad_mode="constant", tile=tile, parallel=True)
    s = median_seconds(fn, a, args.repeat)
    print(f"3x3 128->128 64x64 tile {t}: {flops / s / 1e9:6.1f} GFLOP/s ({threads} threads)")
    print(f"\nmultistyle26 convs at 480x640 (1t: CPU time; {threads}t: wall time):")
    print(f"{'layer':28s} {'tile':>6s} {'GFLOP':>6s} {'ms 1t':>7s} {'GF/s 1t':>8s} "
          f"{'ms {0}t'.format(threads):>7s} {'GF/s':>6s}")
    total = [0.0, 0.0, 0.0]
    for name, h, w, ci, co, k, stride, up, count, lin, lout in MULTISTYLE26:
        row = []
        for parallel in (False, True):
            fn, a, flops, t = prepare(h, w, ci, co, k, stride, up, tile=tile, parallel=parallel,
                                      layouts=(lin, lout))
            clock = time.perf_counter if parallel else time.thread_time
            row.append(median_seconds(fn, a, max(3, args.repeat // 2), clock))
        total[0] += flops * count
        total[1] += row[0] * count
        total[2] += row[1] * count
        print(f"{name + (f' x{count}' if count > 1 else ''):28s} {t:>6s} "
              f"{flops * count / 1e9:6.3f} {row[0] * count * 1e3:7.2f} {flops / row[0] / 1e9:8.1f} "
              f"{row[1] * count * 1e3:7.2f} {flops / row[1] / 1e9:6.1f}")
    print(f"{'total':28s} {'':6s} {total[0] / 1e9:6.3f} {total[1] * 1e3:7.2f} "
          f"{total[0] / total[1] / 1e9:8.1f} {total[2] * 1e3:7.2f} {total[0] / total[2] / 1e9:6.1f}")
    print("\n3x3 stride-1 convs of real networks, igemm against Winograd F(4x4, 3x3) (1 thread, "
          "CPU time; GF/s counts the direct conv's MACs; * = the planner's choice):")
    print(f"{'layer':34s} {'igemm ms':>9s} {'GF/s':>6s} {'winograd ms':>12s} {'GF/s':>6s} "
          f"{'speedup':>8s}")
    for name, h, w, ci, co in REAL_3X3:
        ms = []
        for method in ("igemm", "winograd"):
            fn, a, flops, _ = prepare(h, w, ci, co, 3, pad_mode="constant", method=method)
            ms.append(median_seconds(fn, a, args.repeat, time.thread_time))
        chosen = wino.applicable(3, 3, (1, 1), (1, 1), 1, ci, co, wino.tiles_of(1, h, w))
        print(f"{f'{name} {h}x{w} {ci}->{co}':34s} {ms[0] * 1e3:9.3f} {flops / ms[0] / 1e9:6.1f} "
              f"{ms[1] * 1e3:11.3f}{'*' if chosen else ' '} {flops / ms[1] / 1e9:6.1f} "
              f"{ms[0] / ms[1]:8.2f}")


if __name__ == "__main__":
    main()
