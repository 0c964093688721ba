"""fp32 convolutions (igemm, kdot, pixel-lane, depthwise, transposed, and igemm + instance norm):
every binder proves, before any kernel runs, that each index its kernel forms lies inside the
array it indexes (the kernels do no bounds checks). Kernel ids and step contract:
``mobile_engine/planning/families/conv.py``.
"""
from __future__ import annotations

import numpy as np

from kernels import config
from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv2d_winograd as wino
from kernels import f32_conv_transpose2d as convt
from kernels import f32_dwconv2d as dw
from kernels import f32_norm as knorm
from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.registry import binds

F32 = np.float32


# --- binders -------------------------------------------------------------------------------
# Every binder proves, before any kernel runs, that each index its kernel forms lies inside the
# array it indexes (the kernels do no bounds checks; runtime/validate.py): the tables' values
# against the input's rows and columns, the tables' shapes against the output, the packed
# weights' exact shapes against the tile and the channel counts, the params' types and ranges.
# A failed check raises ``validate.BindError``; Session._bind names the file, step and kernel.


def _weight(weights: dict, key: str) -> np.ndarray:
    if key not in weights:
        raise v.fail(f"weight {key!r} is missing")
    return weights[key]


def _f32(what: str, a, **kw) -> np.ndarray:
    return v.array(what, a, F32, contiguous=True, **kw)


def _index_table(weights: dict, key: str, rows: int | None, lo: int, hi: int, ndim: int = 2,
                 min_cols: int = 1) -> np.ndarray:
    """int32 table ``weights[key]`` of ``rows`` rows (None: any; ndim 2: at least ``min_cols``
    columns), every value in ``[lo, hi)``."""
    t = v.array(f"weight {key!r}", _weight(weights, key), np.int32, ndim=ndim, contiguous=True)
    v.require(rows is None or t.shape[0] == rows,
              f"weight {key!r} has shape {list(t.shape)}; the kernel needs {rows} rows")
    if ndim == 2:
        v.require(t.shape[1] >= min_cols, f"weight {key!r} has shape {list(t.shape)}; the "
                                          f"kernel needs at least {min_cols} columns")
    return v.table(f"weight {key!r}", t, lo, hi, dtype=np.int32)


def _epilogue(params: dict, weights: dict, inputs: list, out: np.ndarray,
              narrow_residual: bool = False):
    """(act, p0, p1, has_res, residual) of a conv step: ``residual`` is the second input or the
    weight ``residual`` (f32 of the output's shape) when ``has_residual``, else ``out``. With
    ``narrow_residual`` (igemm) the step's ``residual_channels`` param, when present, gives the
    residual fewer channels than the output (a zero-padded residual, read unpadded)."""
    act = v.activation(params)
    p0, p1 = v.numbers(params, "act_params", 2)
    has_res = v.flag(params, "has_residual")
    v.integer(params, "work")
    if not has_res:
        return act, F32(p0), F32(p1), False, out
    res = inputs[1] if len(inputs) > 1 else weights.get("residual")
    if res is None:
        raise v.fail("params['has_residual'] is set but the step has neither a second input "
                     "nor a weight 'residual'")
    shape = out.shape
    if narrow_residual and "residual_channels" in params:
        shape = (*out.shape[:3], v.integer(params, "residual_channels", 1, max(out.shape[3], 1)))
    _f32("the residual", res, shape=shape)
    return act, F32(p0), F32(p1), True, res


def _operands(params, weights, inputs, outputs, in_nchw: bool = False,
              narrow_residual: bool = False):
    """Checked (x, rowmap, colmap, bias, res, out, act, p0, p1, has_res) of a conv over
    indirection tables (igemm, kdot, depthwise, transposed): x f32[N, H, W, C] (``in_nchw``:
    [N, C, H, W]), out f32[N, OH, OW, Co], rowmap i32[OH, KH] in [-1, H), colmap i32[OW, KW] in
    [-1, W) (negative: a zero tap), bias f32[Co]."""
    x = _f32("the input", v.operand(iter(inputs), "the input"), ndim=4)
    out = _f32("the output", outputs[0], ndim=4)
    n, h, w = (x.shape[0], x.shape[2], x.shape[3]) if in_nchw else x.shape[:3]
    v.require(out.shape[0] == n, f"the output {list(out.shape)} and the input {list(x.shape)} "
                                 f"differ in batch")
    rowmap = _index_table(weights, "rowmap", out.shape[1], -1, h)
    colmap = _index_table(weights, "colmap", out.shape[2], -1, w)
    _f32("weight 'bias'", _weight(weights, "bias"), shape=(out.shape[3],))
    act, p0, p1, has_res, res = _epilogue(params, weights, inputs, out, narrow_residual)
    ro = igemm.readonly
    return (ro(x), ro(rowmap), ro(colmap), ro(weights["bias"]), ro(res), out, act, p0, p1,
            has_res)


def _row_parts(params: dict, rows: int, cols: int, channels: int, mr: int, threads, kernel,
               whole_rows: bool = False):
    """(dispatcher, column parts per row) of a row-parallel conv kernel (``kernel(parallel)``):
    the parallel variant when the parts give its tasks (``config.use_parallel``), the parts
    for the threads it runs on (``f32_conv2d.row_splits``); ``whole_rows``: one part a row."""
    if whole_rows:
        return kernel(config.use_parallel(params["work"] // config.MAC_WORK, rows, threads)), 1
    many = config.numba_config.NUMBA_NUM_THREADS if threads is None else threads
    splits = igemm.row_splits(rows, cols, channels, mr, many)
    if config.use_parallel(params["work"] // config.MAC_WORK, rows * splits, threads):
        return kernel(True), splits
    return kernel(False), igemm.row_splits(rows, cols, channels, mr, 1)


def _pointwise(rowmap: np.ndarray, colmap: np.ndarray, x_shape: tuple) -> bool:
    """A 1x1 conv with stride 1 and no padding: output pixel (i, j) reads input pixel (i, j)."""
    h, w = x_shape[1:3]
    return (rowmap.shape == (h, 1) and colmap.shape == (w, 1)
            and np.array_equal(rowmap[:, 0], np.arange(h))
            and np.array_equal(colmap[:, 0], np.arange(w)))


def _flat_pointwise(x, res, out):
    """A pointwise conv over ``[N, 1, H * W, C]`` views: one row of H * W pixels per image, so
    its tiles run across the image's rows and each weight block is read once per row part, not
    once per image row (a 1x1 conv on 13x13 pixels with 1000 outputs: 2 MB of weights read 13
    times)."""
    n, h, w, _ = x.shape
    flat = [a.reshape(n, 1, h * w, a.shape[3]) for a in (x, res, out)]
    rowmap = igemm.readonly(np.zeros((1, 1), np.int32))
    colmap = igemm.readonly(np.arange(h * w, dtype=np.int32).reshape(-1, 1))
    return (*flat, rowmap, colmap)


def _bind_igemm(kernel: str):
    tile = table.fields(kernel)
    mr, nr = tile["mr"], tile["nr"]
    transposed = table.row_of(kernel).family == "f32_conv_transpose2d"

    def bind(params, weights, inputs, outputs, threads=None, stats=False):
        """``stats``: the kernel also writes each row's norm statistics (one task per row)."""
        in_nchw = v.flag(params, "in_nchw") if "in_nchw" in params else False
        x, rowmap, colmap, bias, res, out, act, p0, p1, has_res = _operands(
            params, weights, inputs, outputs, in_nchw, narrow_residual=not (stats or transposed))
        c, co = (x.shape[1] if in_nchw else x.shape[3]), out.shape[3]
        group = v.integer(params, "group", 1, max(c, 1))
        v.require(c % group == 0 and co % group == 0,
                  f"params['group']={group} does not divide input channels {c} and output "
                  f"channels {co}")
        # the tile's pixel stride: any value >= 1 gives the same output (a transposed conv's
        # column stride makes tiles share their holes); a plain conv's is 1
        step = v.integer(params, "step", 1, v.MAX_INT if transposed else 1)
        kh, kw, cig = rowmap.shape[1], colmap.shape[1], c // group
        nblk = group * -(-(co // group) // nr)
        expect = (nblk, kh, cig, kw, nr) if in_nchw else (nblk, kh, kw, cig, nr)
        w = _f32("weight 'w' (packed weights)", _weight(weights, "w"), shape=expect)
        if not (transposed or in_nchw or stats) and _pointwise(rowmap, colmap, x.shape):
            x, res, out, rowmap, colmap = _flat_pointwise(x, res, out)
        slopes = igemm.NO_SLOPES
        if "slopes" in weights:         # a PReLU after the conv (passes/fusions/conv_prelu.py)
            slopes = _f32("weight 'slopes'", weights["slopes"], shape=(co,))
        fn, splits = _row_parts(params, x.shape[0] * out.shape[1], out.shape[2], co, mr, threads,
                                lambda parallel: igemm.igemm_kernel(mr, nr, parallel), stats)
        return fn, (x, rowmap, colmap, igemm.readonly(w), bias, res, out, group,
                    min(step, max(out.shape[2], 1)), act, p0, p1, igemm.readonly(slopes),
                    has_res, igemm.NO_SUMS, False, in_nchw, splits)

    return bind


for _grammar in ("f32_conv2d_igemm_{mr}x{nr}_minmax", "f32_conv_transpose2d_igemm_{mr}x{nr}_minmax"):
    for _kernel in table.ids(_grammar):
        binds(_kernel)(_bind_igemm(_kernel))


@binds(wino.KERNEL_ID)
def bind_winograd(params, weights, inputs, outputs, threads=None):
    """3x3 stride-1 conv by Winograd F(4x4, 3x3): outputs [y] and its scratch; the weights
    ``[Co, C, 3, 3]`` are transformed here, once."""
    x, rowmap, colmap, bias, res, out, act, p0, p1, has_res = _operands(
        params, weights, inputs, outputs)
    v.integer(params, "group", 1, 1)
    n, c, co = x.shape[0], x.shape[3], out.shape[3]
    w = _f32("weight 'w'", _weight(weights, "w"), shape=(co, c, 3, 3))
    maps = wino.padded_maps(rowmap, colmap, out.shape[1], out.shape[2])
    v.require(maps is not None, "weights 'rowmap'/'colmap' are not a 3x3 stride-1 conv's")
    tiles = wino.tiles_of(n, out.shape[1], out.shape[2])
    v.require(len(outputs) == 2, f"{len(outputs)} outputs and scratch tensors; the step has "
                                 f"one output and one scratch")
    flat = _f32("the scratch", outputs[1], ndim=1)
    need = wino.scratch_floats(tiles, c, co)
    v.require(flat.size >= need, f"the scratch has {flat.size} floats; the step needs {need}")
    vs, ms = wino.scratch_split(flat, tiles, c, co)
    nr = wino.choose_nr(co)
    parallel = config.use_parallel(params["work"] // config.MAC_WORK, tiles, threads)
    ro = igemm.readonly
    return wino.winograd_kernel(nr, parallel), (
        x, ro(maps[0]), ro(maps[1]), ro(wino.transform_weights(w, nr)),
        ro(wino.direct_weights(w)), bias, res, out, act, p0, p1, has_res, vs, ms,
        np.zeros(vs.shape[0], np.bool_))


NORM_TAGS = ("scale", "bias", "style_scale", "style_bias", "residual")


def _bind_igemm_norm(kernel: str):
    """conv (igemm, statistics in its epilogue) -> instance norm in place over its output."""
    conv_bind = _bind_igemm(kernel)

    def bind(params, weights, inputs, outputs, threads=None):
        has_res = v.flag(params, "has_residual")
        n_conv = 2 if has_res and "residual" not in weights else 1
        fn, args = conv_bind(params, weights, inputs[:n_conv], outputs, threads, stats=True)
        out = outputs[0]
        n, h, w, c = out.shape
        v.require(h * w >= 1 and c >= 1, f"the output {list(out.shape)} is empty: an instance "
                                         f"norm needs pixels and channels")
        names = v.strings(params, "norm_inputs", NORM_TAGS)
        v.require(len(inputs) == n_conv + len(names),
                  f"{len(inputs)} inputs for the conv's {n_conv} and params['norm_inputs']="
                  f"{names}")
        rt = dict(zip(names, inputs[n_conv:]))
        residual = rt.get("residual")
        if residual is not None:
            _f32("the norm's residual", residual, shape=out.shape)
        from mobile_engine.runtime.binders.norm import checked_norm_params
        scale, bias = checked_norm_params(rt, weights, n, c, "norm_")
        eps = v.number(params, "norm_epsilon")
        act = v.activation(params, "norm_act")
        p = (v.number(params, "norm_p0"), v.number(params, "norm_p1"))
        sums = np.zeros((n * h, 2, c), np.float64)
        args = args[:-4] + (sums.reshape(-1), True) + args[-2:]  # sums, want_sums
        norm_fn, norm_args = knorm.instance_norm_call(
            igemm.readonly(out), scale, bias, out, eps, act, p, row_sums=sums,
            residual=None if residual is None else igemm.readonly(residual), threads=threads)

        def run():
            fn(*args)
            norm_fn(*norm_args)
        return run, ()

    return bind


for _kernel in table.ids("f32_conv2d_igemm_{mr}x{nr}_instnorm{add}{epilogue}"):
    binds(_kernel)(_bind_igemm_norm(_kernel))


def _bind_kdot(kernel: str):
    mr, cg = table.fields(kernel)["mr"], table.fields(kernel)["cg"]

    def bind(params, weights, inputs, outputs, threads=None):
        x, rowmap, colmap, bias, res, out, act, p0, p1, has_res = _operands(
            params, weights, inputs, outputs)
        v.integer(params, "group", 1, 1)
        v.integer(params, "step", 1, 1)
        kh, kw, c, co = rowmap.shape[1], colmap.shape[1], x.shape[3], out.shape[3]
        v.require(co <= 4 * cg, f"the output {list(out.shape)} has more than {4 * cg} channels")
        wrun = _f32("weight 'w' (kernel-row runs)", _weight(weights, "w"),
                    shape=(kh, -(-kw * c // 4), cg, 16))
        wtap = _f32("weight 'wtap'", _weight(weights, "wtap"), shape=(kh, kw, -(-c // 4), cg, 16))
        parallel = config.use_parallel(params["work"] // config.MAC_WORK,
                                       x.shape[0] * out.shape[1], threads)
        fn = igemm.kdot_kernel(mr, cg, parallel)
        ro = igemm.readonly
        return fn, (x, rowmap, colmap, ro(wrun), ro(wtap), bias, res, out, act, p0, p1, has_res)

    return bind


for _kernel in table.ids("f32_conv2d_kdot4_{mr}x{lanes}_minmax"):
    binds(_kernel)(_bind_kdot(_kernel))


def tables_from_params(params: dict, x_shape: tuple, out_hw: tuple) -> tuple[np.ndarray, ...]:
    """Bind time: (rowmap, colmap) of ``geometry_params`` over NHWC ``x_shape``, checked against
    the output's (OH, OW)."""
    kernel = v.integers(params, "kernel", 2, 1, 1 << 12)
    strides = v.integers(params, "strides", 2, 1, 1 << 12)
    dilations = v.integers(params, "dilations", 2, 1, 1 << 12)
    pads = v.integers(params, "pads", 4, 0, 1 << 16)
    try:
        if params.get("transposed", False) is True:
            rowmap, colmap = convt.transpose_tables(
                x_shape, tuple(kernel), strides, dilations, pads,
                v.integers(params, "output_padding", 2, 0, 1 << 12))
        else:
            rowmap, colmap = igemm.conv_tables(
                x_shape, tuple(kernel), strides, dilations, pads,
                v.choice(params, "pad_mode", ("constant", "reflect", "edge")),
                v.integer(params, "upsample", 1, 64))
    except (ValueError, IndexError) as exc:
        raise v.fail(f"geometry params do not fit input {list(x_shape)}: {exc}") from None
    v.require((rowmap.shape[0], colmap.shape[0]) == tuple(out_hw),
              f"tables {list(rowmap.shape)}/{list(colmap.shape)} do not fit output rows and "
              f"columns {list(out_hw)}")
    return rowmap, colmap


def _pix_tables(params: dict, x_shape: tuple, out_hw: tuple) -> dict:
    """Bind time: the pix kernel's row and column plans (``rowtap``, ``rowsel``, ``coloff``,
    ``bufsrc``, and ``nslot``), rebuilt from the geometry params as at compile time."""
    rowmap, colmap = tables_from_params(params, x_shape, out_hw)
    rowtap, rowsel, _, nslot = pix.row_plan(rowmap)
    phases = params["strides"][1] if params.get("transposed", False) is True \
        else params["upsample"]
    found = pix.column_plan(colmap, phases, params["dilations"][1], pix.VL * pix.MAX_NVX)
    if found is None:
        raise v.fail(f"geometry params {params['strides']} give columns the pix kernel cannot "
                     f"run (column stride > 1?)")
    _, coloff, _, bufsrc = found
    return dict(rowtap=rowtap, rowsel=rowsel, coloff=coloff, bufsrc=bufsrc, nslot=nslot)


def _bind_pix(kernel: str):
    co, phases = table.fields(kernel)["co"], table.fields(kernel)["phases"]
    nvx = pix.machine_tile(co, phases)
    px = pix.VL * nvx                               # output columns (per phase) of one tile

    def bind(params, weights, inputs, outputs, threads=None):
        in_nchw, out_nchw = v.flag(params, "in_nchw"), v.flag(params, "out_nchw")
        x = _f32("the input", v.operand(iter(inputs), "the input"), ndim=4)
        out = _f32("the output", outputs[0], ndim=4)
        n, h, w, c = (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) if in_nchw else x.shape
        on, oh, ow, oc = (out.shape[0], out.shape[2], out.shape[3], out.shape[1]) \
            if out_nchw else out.shape
        v.require(on == n and oc == co, f"the output {list(out.shape)} (out_nchw {out_nchw}) "
                                        f"needs batch {n} and {co} channels")
        v.integer(params, "group", 1, 1)
        v.integer(params, "step", 1, 1)
        tables = _pix_tables(params, (n, h, w, c), (oh, ow))
        # NOTE: the checks below prove the rebuilt tables against the kernel's indexing, so
        # a geometry the planner never makes cannot slip through either.
        # the row ring: rowtap[oh, t] is an input row (negative: none), rowsel[oh, t] a row
        # set of the weight bank
        rowtap = _index_table(tables, "rowtap", oh, -1, h)
        wbank = _f32("weight 'w' (weight bank)", _weight(weights, "w"), ndim=5)
        v.require(wbank.shape[0] >= 1 and wbank.shape[1] == phases and
                  wbank.shape[3:] == (c, co),
                  f"weight 'w' (weight bank) has shape {list(wbank.shape)}; the kernel needs "
                  f"[NW >= 1, {phases}, TC, {c}, {co}]")
        rowsel = _index_table(tables, "rowsel", oh, 0, wbank.shape[0])
        v.require(rowsel.shape == rowtap.shape, f"weight 'rowsel' has shape "
                                                f"{list(rowsel.shape)}; weight 'rowtap' "
                                                f"{list(rowtap.shape)}")
        # a row's taps must sit in distinct slots of the ring: nslot >= the rows they span
        taps = rowtap.astype(np.int64)
        valid = taps >= 0
        span = np.where(valid.any(1), np.where(valid, taps, -1).max(1)
                        - np.where(valid, taps, h).min(1) + 1, 1)
        nslot = v.integer(tables, "nslot", max(1, int(span.max(initial=1))), max(h, 1))
        # columns: a tile reads buffer columns j0 + coloff[ph, tc] + [0, px) with j0 < OJ a
        # multiple of px; the buffer's WB columns copy input columns bufsrc[jb] (negative: 0)
        bufsrc = _index_table(tables, "bufsrc", None, -1, w, ndim=1)
        oj = -(-ow // phases)                           # output columns per phase
        reach = -(-oj // px) * px                       # the tiles' columns
        v.require(reach <= bufsrc.shape[0], f"weight 'bufsrc' has {bufsrc.shape[0]} buffer "
                                            f"columns; tiles over {ow} output columns need at "
                                            f"least {reach}")
        coloff = _index_table(tables, "coloff", phases, 0, bufsrc.shape[0] - reach + 1)
        v.require(coloff.shape[1] == wbank.shape[2], f"weight 'coloff' has shape "
                                                     f"{list(coloff.shape)}; the weight bank "
                                                     f"{list(wbank.shape)}")
        bias = _f32("weight 'bias'", _weight(weights, "bias"), shape=(co,))
        act, p0, p1, has_res, res = _epilogue(params, weights, inputs, out)
        par = config.use_parallel(params["work"] // config.MAC_WORK, n * oh, threads)
        nblk = pix.blocks_for(n * oh, par)
        scratch, tags = pix.scratch(nslot, c, bufsrc.shape[0], nblk)
        fn = pix.pix_kernel(nvx, co, phases, par)
        ro = igemm.readonly
        return fn, (ro(x), ro(rowtap), ro(rowsel), ro(coloff), ro(bufsrc), ro(wbank), ro(bias),
                    ro(res), out, scratch, tags, in_nchw, out_nchw, act, p0, p1, has_res)

    return bind


for _kernel in table.ids("f32_conv2d_pix{up}_{px}x{co}_minmax"):
    binds(_kernel)(_bind_pix(_kernel))


@binds(dw.KERNEL_ID)
def bind_dwconv(params, weights, inputs, outputs, threads=None):
    x, rowmap, colmap, bias, res, out, act, p0, p1, has_res = _operands(
        params, weights, inputs, outputs)
    c, co, kh, kw = x.shape[3], out.shape[3], rowmap.shape[1], colmap.shape[1]
    v.integer(params, "group", c, c)
    v.integer(params, "step", 1, 1)
    mult = v.integer(params, "mult", 1)
    v.require(co == mult * c, f"params['mult']={mult}: output channels {co} should be "
                              f"{mult} x input channels {c}")
    # the kernel lists one pixel's valid taps in stack arrays of MAX_TAPS entries
    v.require(kh * kw <= dw.MAX_TAPS, f"weights 'rowmap'/'colmap' give {kh}x{kw} taps; the "
                                      f"kernel holds at most {dw.MAX_TAPS}")
    w = _f32("weight 'w' (packed weights)", _weight(weights, "w"), shape=(kh, kw, co))
    # the kernel stores a map's last Co % 4 channels twice (the last 4 lanes once more)
    v.require(not (has_res and np.may_share_memory(res, out)),
              "the residual overlaps the output")
    kw_stride = dw.variant(colmap)
    fn, splits = _row_parts(params, x.shape[0] * out.shape[1], out.shape[2], co,
                            dw.machine_pixels(), threads,
                            lambda parallel: dw.dwconv_kernel(parallel, *kw_stride))
    return fn, (x, rowmap, colmap, igemm.readonly(w), bias, res, out, mult, act, p0, p1,
                has_res, splits)
