"""int8 convolution binders (igemm with ``vpdpbusd``/``sdot`` and the depthwise kernel): checks
the packed weights, zero-point rows and requantization params against the kernel.
"""
from __future__ import annotations

import numpy as np

from kernels import config
from kernels import qu8_conv2d as qconv
from kernels import qu8_dwconv2d as qdw
from kernels import table
from kernels.f32_conv2d import readonly
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.conv import tables_from_params
from mobile_engine.runtime.binders.registry import binds

F32 = np.float32


# --- binders -------------------------------------------------------------------------------
# Every binder checks, before any kernel runs, what the kernel trusts (runtime/validate.py):
# params' types and ranges, the indirection tables built from them against the input and the
# output, the packed weights' exact shapes against the tile and the channel counts. A failed
# check raises ``validate.BindError``; Session._bind names the file, step and kernel.


def _weight(weights: dict, key: str, dtype, **kw) -> np.ndarray:
    if key not in weights:
        raise v.fail(f"weight {key!r} is missing")
    return v.array(f"weight {key!r}", weights[key], dtype, **kw)


def _contiguous(what: str, a: np.ndarray) -> np.ndarray:
    v.require(a.flags.c_contiguous, f"{what} {list(a.shape)} is not C-contiguous")
    return a


class ConvOperands:
    """The checked operands every qu8 conv kernel takes (``check_conv``)."""
    __slots__ = ("x", "out", "rowmap", "colmap", "zrow", "bias", "mult", "tail", "parallel")


def check_conv(params: dict, weights: dict, inputs: list, outputs: list,
               epilogue: str, threads: int | None = None) -> ConvOperands:
    """x u8[N, H, W, C], out u8 (requant) or f32 (fp32out) [N, OH, OW, Co], the indirection
    tables the geometry params give for x (their shapes against out), zrow u8[>= 1], bias
    i32[Co], mult f32[Co], and (zy, qmin, qmax, act, p0, p1) in range; ``parallel``: the
    variant ``use_parallel`` picks for ``threads`` threads."""
    ops = ConvOperands()
    ops.x = _contiguous("the input", v.array("the input", v.operand(iter(inputs), "the input"),
                                             np.uint8, ndim=4))
    ops.out = _contiguous("the output", v.array(
        "the output", v.operand(iter(outputs), "the output"),
        np.uint8 if epilogue == "requant" else F32, ndim=4))
    x, out = ops.x, ops.out
    v.require(out.shape[0] == x.shape[0], f"the output {list(out.shape)} and the input "
                                          f"{list(x.shape)} differ in batch")
    ops.rowmap, ops.colmap = tables_from_params(params, x.shape, out.shape[1:3])
    co = out.shape[3]
    ops.zrow = _weight(weights, "zrow", np.uint8, ndim=1)
    v.require(ops.zrow.size >= 1, "weight 'zrow' is empty")
    ops.bias = _weight(weights, "bias", np.int32, shape=(co,))
    ops.mult = _weight(weights, "mult", F32, shape=(co,))
    ap = params.get("act_params")
    v.require(isinstance(ap, list) and len(ap) == 2 and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) for p in ap),
        f"params['act_params']={ap!r}: expected two numbers")
    ops.tail = (v.integer(params, "zy", 0, 255), v.integer(params, "qmin", 0, 255),
                v.integer(params, "qmax", 0, 255), v.activation(params),
                F32(ap[0]), F32(ap[1]))
    ops.parallel = config.use_parallel(v.integer(params, "work") // config.MAC_WORK, x.shape[0] * out.shape[1],
                                       threads)
    return ops


def _bind_qconv(kernel: str):
    f = table.fields(kernel)
    mr, nr, epilogue = f["mr"], f["nr"], f["epilogue"]

    def bind(params, weights, inputs, outputs, threads=None):
        return bind_igemm(mr, nr, epilogue, params, weights, inputs, outputs, threads)

    return bind


def bind_igemm(mr: int, nr: int, epilogue: str, params: dict, weights: dict, inputs: list,
               outputs: list, threads: int | None = None):
    """(dispatcher, args) of a checked ``qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}`` step."""
    ops = check_conv(params, weights, inputs, outputs, epilogue, threads)
    c, co = ops.x.shape[3], ops.out.shape[3]
    kh, kw = ops.rowmap.shape[1], ops.colmap.shape[1]
    group = v.integer(params, "group", 1, c)
    v.require(c % group == 0 and co % group == 0,
              f"params['group']={group} does not divide {c} input / {co} output channels")
    gnb, qt, qr = group * -(-(co // group) // nr), -(-(c // group) // 4), -(-(kw * c) // 4)
    wp = _weight(weights, "wp", np.int8, shape=(gnb, kh, kw, qt, nr, 4))
    if "wrun" in weights:
        wrun = _weight(weights, "wrun", np.int8, shape=(gnb, kh, qr, nr, 4))
        v.require(group == 1, "weight 'wrun' is for group 1 only")
    elif group == 1:
        # NOTE: for C % 4 == 0 the per-row layout holds wp's bytes: [NB, KH, KW * QT, NR, 4]
        # (a view; the kernel reads QR from this array's shape, so pass the 5-d form)
        v.require(c % 4 == 0, f"weight 'wrun' is missing ({c} input channels)")
        wrun = wp.reshape(gnb, kh, kw * qt, nr, 4)
    else:
        wrun = wp
    v.require(ops.zrow.size >= 4 * max(qt, qr if group == 1 else 0),
              f"weight 'zrow' has {ops.zrow.size} bytes; a kernel row reads {4 * max(qt, qr)}")
    _, fn = qconv.select_qu8_conv(mr, nr, epilogue, ops.parallel)
    ro = readonly
    return fn, (ro(ops.x), ro(ops.zrow), ro(ops.rowmap), ro(ops.colmap), ro(wp), ro(wrun),
                ro(ops.bias), ro(ops.mult), ops.out, group, *ops.tail)


def _bind_kdot(kernel: str):
    """``qu8_conv2d_kdot16_{mr}x{4*cg}_{epilogue}``: few output channels, group 1."""
    f = table.fields(kernel)
    mr, cg, epilogue = f["mr"], f["cg"], f["epilogue"]

    def bind(params, weights, inputs, outputs, threads=None):
        ops = check_conv(params, weights, inputs, outputs, epilogue, threads)
        c, co = ops.x.shape[3], ops.out.shape[3]
        kh, kw = ops.rowmap.shape[1], ops.colmap.shape[1]
        v.integer(params, "group", 1, 1)
        v.require(co <= 4 * cg, f"{co} output channels; the kernel holds at most {4 * cg}")
        qr, qt = -(-(kw * c) // 16), -(-c // 16)
        wrun = _weight(weights, "wrun", np.int8, shape=(kh, qr, cg, 64))
        wtap = _weight(weights, "wtap", np.int8, shape=(kh, kw, qt, cg, 64))
        v.require(ops.zrow.size >= 16 * max(qr, qt),
                  f"weight 'zrow' has {ops.zrow.size} bytes; a kernel row reads {16 * max(qr, qt)}")
        _, fn = qconv.select_qu8_conv_kdot(mr, cg, epilogue, ops.parallel)
        ro = readonly
        return fn, (ro(ops.x), ro(ops.zrow), ro(ops.rowmap), ro(ops.colmap), ro(wrun), ro(wtap),
                    ro(ops.bias), ro(ops.mult), ops.out, *ops.tail)

    return bind


def _bind_qdw(kernel: str):
    epilogue = table.fields(kernel)["epilogue"]

    def bind(params, weights, inputs, outputs, threads=None):
        ops = check_conv(params, weights, inputs, outputs, epilogue, threads)
        c, co = ops.x.shape[3], ops.out.shape[3]
        chmult = v.integer(params, "chmult", 1, co)
        v.require(co == chmult * c, f"{co} output channels are not params['chmult']={chmult} "
                                    f"x {c} input channels")
        wp = _weight(weights, "wp", np.int8, shape=(ops.rowmap.shape[1], ops.colmap.shape[1],
                                                    co))
        v.require(ops.zrow.size >= c, f"weight 'zrow' has {ops.zrow.size} bytes, not {c}")
        ro = readonly
        return qdw.dwconv_kernel(epilogue, ops.parallel), (
            ro(ops.x), ro(ops.zrow), ro(ops.rowmap), ro(ops.colmap), ro(wp), ro(ops.bias),
            ro(ops.mult), ops.out, chmult, *ops.tail)

    return bind


for _kernel in table.ids("qu8_dwconv2d_{epilogue}"):
    binds(_kernel)(_bind_qdw(_kernel))
for _kernel in table.ids("qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}"):
    binds(_kernel)(_bind_qconv(_kernel))
for _kernel in table.ids("qu8_conv2d_kdot16_{mr}x{lanes}_{epilogue}"):
    binds(_kernel)(_bind_kdot(_kernel))
