"""The kernel table: every kernel id a plan may name, in one row shape.

A ``KernelRow`` is one family's id grammar (``grammar``, a ``str.format`` pattern) with every
concrete id it produces and that id's parsed fields, the family's whole-array entry point (or
its dispatcher factory / serial dispatcher where the family has no whole-array entry; None for
the numpy steps), the compile-time weight packer (None: weights are used as the plan stores
them), and a loader of the numpy reference (a zero-argument callable returning the function, or
a tuple of functions for a kernel serving several ops, e.g. the strided copy's transpose and
slice; references load on first use). Ids are parsed here and nowhere else: a binder asks
``fields(kernel_id)`` for its tile, epilogue or channel count instead of splitting the string.

tests/kernels/test_table.py fails when a table id has no binder (``runtime.binders.BINDERS``)
or no reference, or a binder's id is not in the table.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Mapping

from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv2d_winograd as wino
from kernels import f32_conv_transpose2d as convt
from kernels import f32_dwconv2d as dw
from kernels import f32_elementwise as kew
from kernels import f32_gemm as kg
from kernels import f32_layout as lay
from kernels import f32_norm as knorm
from kernels import f32_norm_planar as knorm_planar
from kernels import f32_norm_qu8 as knq
from kernels import f32_pool as kpool
from kernels import f32_reduce as kred
from kernels import f32_resize as kres
from kernels import qu8_conv2d as qconv
from kernels import qu8_dwconv2d as qdw
from kernels import qu8_elementwise as qew
from kernels import qu8_requant_fp32ties as kties
from kernels import qu8_stats_lut as ksl


@dataclass(frozen=True)
class KernelRow:
    family: str                                   # the kernels module: "f32_conv2d"
    grammar: str                                  # "f32_conv2d_igemm_{mr}x{nr}_minmax"
    ids: Mapping[str, Mapping[str, object]]       # concrete id -> its parsed fields
    entry: Callable | None                        # whole-array entry / dispatcher factory
    packer: Callable | None                       # compile-time weight packer
    reference: Callable[[], Callable] | None      # loader of the numpy reference
    options: Callable[[Mapping], dict] = field(default=lambda f: {})   # entry kwargs of an id


def row(family: str, grammar: str, variants, entry=None, packer=None, reference=None,
        options=None) -> KernelRow:
    """A row from ``variants``: the field dicts of its ids (each formats ``grammar``)."""
    ids = {}
    for fields_ in variants:
        kid = grammar.format(**fields_)
        if kid in ids:
            raise ValueError(f"kernel table: {kid!r} twice in {grammar!r}")
        ids[kid] = dict(fields_)
    return KernelRow(family, grammar, ids, entry, packer, reference,
                     options or (lambda f: {}))


def grid(**axes) -> list[dict]:
    """Every combination of the named axes' values, as field dicts."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def _ref(name: str):
    """Loader of ``kernels.reference.<name>``."""
    def load():
        from kernels import reference
        return getattr(reference, name)
    return load


def _q8ref(name: str):
    def load():
        from kernels import reference_q8
        return getattr(reference_q8, name)
    return load


def _fixed(fn):
    """Loader of an already-loaded reference function."""
    return lambda: fn


ACTS = tuple(kew.EPILOGUES.items())               # (act code, id suffix)
LANE_TAGS = {"x32": 4, "x8": 1}


def _conv_rows() -> list[KernelRow]:
    tiles = [dict(mr=mr, nr=nr) for nr, mr in igemm.TILES.items()]
    return [
        row("f32_conv2d", "f32_conv2d_igemm_{mr}x{nr}_minmax", tiles, igemm.conv2d,
            igemm.pack_weights, igemm._reference,
            lambda f: dict(method="igemm", tile=(f["mr"], f["nr"]))),
        row("f32_conv2d", "f32_conv2d_kdot4_{mr}x{lanes}_minmax",
            [dict(mr=mr, cg=cg, lanes=4 * cg) for cg, mr in igemm.KDOT_TILES.items()],
            igemm.conv2d, igemm.pack_weights_kdot, igemm._reference,
            lambda f: dict(method="kdot")),
        row("f32_conv2d", "f32_conv2d_igemm_{mr}x{nr}_instnorm{add}{epilogue}",
            [dict(t, add=add, residual=bool(add), act=act, epilogue=sfx) for t in tiles
             for add in ("", "_add") for act, sfx in ACTS],
            igemm.igemm_kernel, igemm.pack_weights, _fixed(conv_instance_norm_reference)),
        row("f32_conv_transpose2d", "f32_conv_transpose2d_igemm_{mr}x{nr}_minmax", tiles,
            convt.conv_transpose2d, convt.pack_weights, convt._reference,
            lambda f: dict(tile=(f["mr"], f["nr"]))),
        row("f32_conv2d_pix", "f32_conv2d_pix{up}_{px}x{co}_minmax",
            [dict(co=co, phases=ph, up="up2" if ph == 2 else "",
                  px=pix.VL * pix.tile(co, ph)) for co in range(1, pix.MAX_CO + 1)
             for ph in (1, 2)],
            pix.conv2d, pix.PixPlan, pix._reference, lambda f: dict(upsample=f["phases"])),
        row("f32_dwconv2d", dw.KERNEL_ID, [{}], dw.dwconv2d, dw.pack_weights, dw._reference),
        row("f32_conv2d_winograd", wino.KERNEL_ID, [{}], wino.conv2d, wino.transform_weights,
            wino._reference),
    ]


def _qconv_rows() -> list[KernelRow]:
    tiles = [dict(mr=mr, nr=nr) for nr, mr in qconv.TILES.items()]
    return [
        row("qu8_conv2d", "qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}",
            [dict(t, epilogue=e) for t in tiles for e in qconv.EPILOGUES], qconv.conv2d,
            qconv.pack_qu8_weights, qconv._reference),
        row("qu8_conv2d", "qu8_conv2d_kdot16_{mr}x{lanes}_{epilogue}",
            [dict(mr=mr, cg=cg, lanes=4 * cg, epilogue=e) for cg, mr in qconv.KDOT_TILES.items()
             for e in qconv.EPILOGUES], qconv.conv2d, qconv.pack_qu8_weights_kdot,
            qconv._reference),
        row("qu8_conv2d", "qu8_conv2d_igemm_{mr}x{nr}c4_instance_norm{suffix}",
            [dict(t, suffix=s, residual=bool(s)) for t in tiles for s in qconv.INSTNORM_SUFFIXES],
            qconv.conv2d_instnorm, qconv.pack_qu8_weights, qconv._instnorm_reference),
        # an fp32out conv into a scratch tensor, then qu8_requant_fp32ties (QDQ models' convs)
        row("qu8_requant_fp32ties", "qu8_conv2d_igemm_{mr}x{nr}c4_requant_fp32ties", tiles,
            kties.kernel, qconv.pack_qu8_weights, _fixed(kties.reference)),
        row("qu8_requant_fp32ties", "qu8_conv2d_kdot16_{mr}x{lanes}_requant_fp32ties",
            [dict(mr=mr, cg=cg, lanes=4 * cg) for cg, mr in qconv.KDOT_TILES.items()],
            kties.kernel, qconv.pack_qu8_weights_kdot, _fixed(kties.reference)),
        row("qu8_dwconv2d", "qu8_dwconv2d_{epilogue}", grid(epilogue=qdw.EPILOGUES),
            qdw.dwconv2d, qdw.pack_weights, qdw._reference),
    ]


def _elementwise_rows() -> list[KernelRow]:
    return [
        row("f32_elementwise", "f32_v{name}", grid(name=tuple(kew.UNARY_CODES)), kew.unary,
            reference=_fixed(kew._ref_unary), options=lambda f: dict(name=f["name"])),
        row("f32_elementwise", "f32_vbinary_{name}{pattern}{epilogue}",
            [dict(name=n, pattern=p, act=a, epilogue=s) for n in kew.BINARY_CODES
             for p in ("", "_scalar", "_rows", "_bcast") for a, s in ACTS],
            kew.binary, reference=_fixed(kew._ref_binary),
            options=lambda f: dict(name=f["name"], act=f["act"])),
        row("numpy", "np_unary_{name}",
            grid(name=("relu", "clip", "neg", "sqrt", "exp", "reciprocal")),
            reference=_ref("unary")),
        row("numpy", "np_binary_{name}", grid(name=("add", "sub", "mul", "div", "pow")),
            reference=_ref("binary")),
    ]


def _gemm_rows() -> list[KernelRow]:
    variants = [dict(mr=kg.MR, nr=nr, packb="_packb" if rt else "", runtime_b=rt, act=a,
                     epilogue=s) for nr in kg.NR_CHOICES for rt in (False, True) for a, s in ACTS]
    return [
        row("f32_gemm", "f32_gemm_{mr}x{nr}{packb}{epilogue}", variants, kg.gemm, kg.pack_b,
            _fixed(kg._ref_gemm)),
        row("f32_gemm", "f32_matmul_{mr}x{nr}{packb}{epilogue}", variants, kg.matmul, kg.pack_b,
            _fixed(kg._ref_matmul)),
        row("numpy", "np_matmul", [{}], reference=_ref("matmul")),
    ]


def _layout_rows() -> list[KernelRow]:
    """Layout kernels move lanes of 4 (``x32_*``) or 1 byte (``x8_*``) with one body; the entry
    is the serial dispatcher (``*_parallel`` beside it), or the factory of the small transposes;
    np_cast is numpy's copyto into the output view."""
    lanes = [dict(lane_tag=t, lane=b) for t, b in LANE_TAGS.items()]

    def lay_row(grammar: str, entry, ref, variants=lanes):
        return row("f32_layout", grammar, variants, entry, reference=_fixed(ref))

    return [
        lay_row("copy_bytes", lay.copy_serial, _copy_reference, [{}]),
        lay_row("{lane_tag}_pad_nd", lay.pad_serial, lay._ref_pad),
        lay_row("{lane_tag}_concat", lay.concat_serial, lay._ref_concat),
        lay_row("{lane_tag}_copy_strided_nd", lay.strided_serial,
                (lay._ref_transpose, lay._ref_slice)),
        lay_row("{lane_tag}_transpose_b2d_tiled", lay.tiled_serial, lay._ref_transpose),
        lay_row("{lane_tag}_transpose_nchw_to_nhwc", lay.small_transpose, lay._ref_transpose),
        lay_row("{lane_tag}_transpose_nhwc_to_nchw", lay.small_transpose, lay._ref_transpose),
        lay_row("{lane_tag}_gather", lay.gather_serial, lay._ref_gather),
        lay_row("np_cast", None, lay._ref_cast, [{}]),
        row("f32_resize", "{lane_tag}_resize_nearest_nhwc", lanes, kres.nearest_serial,
            reference=_ref("resize")),
        row("f32_resize", "f32_resize_bilinear_nhwc", [{}], kres.bilinear_serial,
            reference=_ref("resize")),
        row("f32_resize", "f32_resize_taps_nhwc", [{}], kres.taps_serial,
            reference=_ref("resize")),
    ]


def _norm_rows() -> list[KernelRow]:
    acts = [dict(act=a, epilogue=s) for a, s in ACTS]
    return [
        row("f32_norm", "f32_instance_norm_nhwc{epilogue}", acts, knorm.instance_norm,
            reference=_fixed(knorm._ref_instance_norm)),
        row("f32_norm_planar", "f32_instance_norm_nchw{epilogue}", acts,
            knorm_planar.instance_norm_nchw,
            reference=_fixed(knorm_planar._ref_instance_norm_nchw)),
        row("f32_norm", "f32_batch_norm_nhwc{epilogue}", acts, knorm.batch_norm,
            knorm.batch_norm_fold, _fixed(knorm._ref_batch_norm)),
        row("f32_norm", "f32_batch_norm_nhwc_rt{epilogue}", acts, knorm.batch_norm,
            reference=_fixed(knorm._ref_batch_norm)),
        row("f32_norm_qu8", "f32_instance_norm_nhwc{add}_qu8",
            [dict(add=a, residual=bool(a)) for a in ("", "_add")], knq.instance_norm_qu8,
            reference=_fixed(knq._reference)),
        row("f32_norm_qu8", knq.NORM_ADD_F32, [{}], knq.instance_norm_add_f32_call,
            reference=_fixed(knq.norm_add_f32_reference)),
    ]


def _other_rows() -> list[KernelRow]:
    return [
        row("f32_pool", "f32_maxpool2d_nhwc", [{}], kpool.maxpool_serial,
            reference=_ref("max_pool")),
        row("f32_pool", "f32_avgpool2d_nhwc", [{}], kpool.avgpool_serial,
            reference=_ref("avg_pool")),
        row("f32_pool", "f32_global_avgpool_nhwc", [{}], kpool.global_avgpool_serial,
            reference=_ref("global_avg_pool")),
        row("f32_reduce", "f32_reduce_{op}_{kind}", grid(op=("mean", "sum"), kind=("ori", "nd")),
            kred.reduce, reference=_fixed(kred._ref_reduce),
            options=lambda f: dict(op=f"reduce_{f['op']}")),
        row("f32_reduce", "f32_softmax_{kind}", grid(kind=("lastaxis", "strided")), kred.softmax,
            reference=_fixed(kred._ref_softmax)),
        row("numpy", "np_reduce_{op}", grid(op=("mean", "sum")), reference=_ref("reduce")),
        row("qu8_elementwise", qew.ADD_ID, [{}], qew.qu8_add,
            reference=_q8ref("qu8_add_reference")),
        row("qu8_elementwise", qew.QUANTIZE_ID, [{}], qew.quantize_u8,
            reference=_q8ref("quantize_u8_reference")),
        row("qu8_elementwise", qew.DEQUANTIZE_ID, [{}], qew.dequantize_u8,
            reference=_q8ref("dequantize_u8_reference")),
        row("qu8_elementwise", "qs8_dequantize_const", [{}],
            reference=_fixed(dequantize_const_reference)),
        row("qu8_elementwise", "int8_recode", [{}], reference=_fixed(int8_recode_reference)),
        row("qu8_stats_lut", "qu8_stats_lut_nhwc_{out}", grid(out=("u8", "f32")), ksl.kernels,
            reference=_fixed(ksl.reference)),
    ]


# --- references of fused steps no single family owns ---------------------------------------
def _copy_reference(x):
    return x.copy()


def conv_instance_norm_reference(x, w, bias, scale, norm_bias, residual=None, *, epsilon=1e-5,
                                 activation_kind=0, act_params=(), **conv):
    """fp32 conv, then instance norm (+ residual) and activation: the fused igemm step."""
    from kernels import reference
    y = reference.instance_norm(reference.conv2d(x, w, bias, **conv), scale, norm_bias,
                                epsilon=epsilon)
    if residual is not None:
        y = y + residual
    return reference.activation(y, activation_kind, act_params)


def dequantize_const_reference(q, scale, zero=0):
    """float32 ``(q - zero) * scale`` of an int8 constant (per-axis scale/zero broadcast)."""
    import numpy as np
    return ((np.asarray(q, np.int32) - zero).astype(np.float32) * np.asarray(scale, np.float32))


def int8_recode_reference(x):
    """int8 <-> uint8 of the same real values: q + 128 (int8 -> uint8) or q - 128."""
    import numpy as np
    x = np.asarray(x)
    if x.dtype == np.int8:
        return (x.astype(np.int16) + 128).astype(np.uint8)
    return (x.astype(np.int16) - 128).astype(np.int8)


ROWS: tuple[KernelRow, ...] = tuple(_conv_rows() + _qconv_rows() + _elementwise_rows()
                                    + _gemm_rows() + _layout_rows() + _norm_rows()
                                    + _other_rows())


def _index(rows) -> dict[str, tuple[KernelRow, Mapping]]:
    out = {}
    for r in rows:
        for kid, f in r.ids.items():
            if kid in out:
                raise ValueError(f"kernel table: {kid!r} in {out[kid][0].grammar!r} and "
                                 f"{r.grammar!r}")
            out[kid] = (r, f)
    return out


TABLE: dict[str, tuple[KernelRow, Mapping]] = _index(ROWS)


def fields(kernel_id: str) -> Mapping[str, object]:
    """The parsed fields of ``kernel_id`` (its tile, epilogue, channels ...); KeyError naming
    the id when the table has no such kernel."""
    try:
        return TABLE[kernel_id][1]
    except KeyError:
        raise KeyError(f"kernel {kernel_id!r} is not in kernels/table.py") from None


def row_of(kernel_id: str) -> KernelRow:
    return TABLE[kernel_id][0]


def entry_and_reference(kernel_id: str) -> tuple[Callable, Callable]:
    """(whole-array entry, numpy reference) of ``kernel_id``'s row (tests)."""
    r = row_of(kernel_id)
    return r.entry, r.reference()


def ids(grammar: str) -> dict[str, Mapping[str, object]]:
    """id -> fields of the row with ``grammar`` (binders register over these)."""
    for r in ROWS:
        if r.grammar == grammar:
            return dict(r.ids)
    raise KeyError(f"no kernel row with grammar {grammar!r}")
