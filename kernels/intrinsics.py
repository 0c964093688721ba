"""Small LLVM-level helpers for Numba kernels (``numba.extending.intrinsic``).

``stack_array(size, dtype)`` gives a fixed-size array in the calling function's stack frame (a
64-byte aligned ``alloca`` of ``[size x dtype]`` in the entry block, left uninitialised).

``vfma``/``vfill``/``vcopy`` operate on ``lanes`` consecutive float32 elements of 1-D arrays as
one LLVM vector (``<lanes x float>``, a zmm register at 16 lanes on AVX-512, 4 NEON q registers
on aarch64). Why not plain loops: LLVM fully unrolls a short constant loop over output channels
and then vectorises the *reduction* loop around it, with gathers (DESIGN.md: 60x slower). Vector
IR is never re-vectorised, so the register tile of the igemm kernels stays what it says: a stack
array touched only at compile-time-constant offsets, which SROA turns into vector registers.

Contract: offsets are element indices, no bounds checks; ``lanes`` must be an int literal (a
closure or global constant of the calling kernel).
"""
from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_F32 = ir.FloatType()


def _literal(t) -> int | None:
    return t.literal_value if isinstance(t, types.IntegerLiteral) else None


def _f32_array(t) -> bool:
    return isinstance(t, types.Array) and t.dtype == types.float32 and t.ndim == 1


def _f32_source(t) -> bool:
    """A float32 array, or the raw address (int) of float32 data: what ``vfma2``, ``vadd`` and
    ``vcopy`` take besides their register tile.
    NOTE: an inlined helper that takes arrays costs NRT reference-count calls per call (as
    ``_int8_source``); the depthwise kernel's tiles take addresses."""
    return _f32_array(t) or isinstance(t, types.Integer)


@intrinsic
def _stack_ptr(typingctx, size, dtype):
    if _literal(size) is None or not isinstance(dtype, types.NumberClass):
        return None
    n, elem = size.literal_value, dtype.instance_type

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(elem)
        with builder.goto_entry_block():      # a static alloca: SROA can promote it
            arr = builder.alloca(ir.ArrayType(ty, n))
            arr.align = 64
        return builder.bitcast(arr, ty.as_pointer())

    return types.CPointer(elem)(size, dtype), codegen


@numba.njit(inline="always")
def stack_array(size, dtype):
    """A 1-D array of ``size`` (a compile-time constant) ``dtype`` elements on the stack.

    Contents start undefined; the array must not outlive the calling kernel. Inlined, so the
    ``alloca`` lands in the caller's frame.
    """
    return numba.carray(_stack_ptr(size, dtype), (size,))


def _vec_ptr(context, builder, arrty, arr, off, offty, lanes):
    if isinstance(arrty, types.Integer):        # a raw address of float32 data
        data = builder.inttoptr(context.cast(builder, arr, arrty, types.intp), _F32.as_pointer())
    else:
        data = context.make_array(arrty)(context, builder, arr).data
    off = context.cast(builder, off, offty, types.intp)
    return builder.bitcast(builder.gep(data, [off]), ir.VectorType(_F32, lanes).as_pointer())


def _splat(builder, value, lanes):
    vt = ir.VectorType(_F32, lanes)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


@intrinsic
def fma_f32(typingctx, a, b, c):
    """float32 ``a * b + c`` rounded once (``llvm.fma.f32``: one instruction on FMA CPUs)."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_F32, [_F32, _F32, _F32]), "llvm.fma.f32")
        return builder.call(fma, list(args))

    return types.float32(a, b, c), codegen


@intrinsic
def vfma(typingctx, acc, aoff, x, w, woff, lanes):
    """``acc[aoff:aoff+lanes] += x * w[woff:woff+lanes]`` as one fused vector multiply-add."""
    n = _literal(lanes)
    if (n is None or not (_f32_array(acc) and _f32_array(w)) or x != types.float32
            or not isinstance(aoff, types.Integer) or not isinstance(woff, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        a_arr, a_off, xv, w_arr, w_off, _ = args
        pa = _vec_ptr(context, builder, sig.args[0], a_arr, a_off, sig.args[1], n)
        pw = _vec_ptr(context, builder, sig.args[3], w_arr, w_off, sig.args[4], n)
        vt = ir.VectorType(_F32, n)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{n}f32")
        a = builder.load(pa, align=4)
        wv = builder.load(pw, align=4)
        builder.store(builder.call(fma, [_splat(builder, xv, n), wv, a]), pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, aoff, x, w, woff, lanes), codegen


@intrinsic
def vfill(typingctx, dst, off, value, lanes):
    """``dst[off:off+lanes] = value``."""
    n = _literal(lanes)
    if n is None or not _f32_array(dst) or value != types.float32:
        return None

    def codegen(context, builder, sig, args):
        p = _vec_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], n)
        builder.store(_splat(builder, args[2], n), p, align=4)
        return context.get_dummy_value()

    return types.none(dst, off, value, lanes), codegen


@intrinsic
def vclamp(typingctx, dst, off, lo, hi, lanes):
    """``dst[off:off+lanes] = min(max(dst, lo), hi)`` as compare-and-select, so NaN passes
    through (as ``kernels.activation``'s clamps)."""
    n = _literal(lanes)
    if n is None or not _f32_array(dst) or lo != types.float32 or hi != types.float32:
        return None

    def codegen(context, builder, sig, args):
        p = _vec_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], n)
        y = builder.load(p, align=4)
        vlo, vhi = _splat(builder, args[2], n), _splat(builder, args[3], n)
        y = builder.select(builder.fcmp_ordered("<", y, vlo), vlo, y)
        y = builder.select(builder.fcmp_ordered(">", y, vhi), vhi, y)
        builder.store(y, p, align=4)
        return context.get_dummy_value()

    return types.none(dst, off, lo, hi, lanes), codegen


@intrinsic
def vcopy(typingctx, dst, doff, src, soff, lanes):
    """``dst[doff:doff+lanes] = src[soff:soff+lanes]`` (either an array or an address)."""
    n = _literal(lanes)
    if n is None or not (_f32_source(dst) and _f32_source(src)):
        return None

    def codegen(context, builder, sig, args):
        pd = _vec_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], n)
        ps = _vec_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3], n)
        builder.store(builder.load(ps, align=4), pd, align=4)
        return context.get_dummy_value()

    return types.none(dst, doff, src, soff, lanes), codegen


@intrinsic
def vfma2(typingctx, acc, aoff, x, xoff, w, woff, lanes):
    """``acc[aoff:aoff+lanes] += x[xoff:xoff+lanes] * w[woff:woff+lanes]`` (element-wise; ``x``
    and ``w`` arrays or addresses)."""
    n = _literal(lanes)
    if n is None or not (_f32_array(acc) and _f32_source(x) and _f32_source(w)):
        return None

    def codegen(context, builder, sig, args):
        a_arr, a_off, x_arr, x_off, w_arr, w_off, _ = args
        pa = _vec_ptr(context, builder, sig.args[0], a_arr, a_off, sig.args[1], n)
        px = _vec_ptr(context, builder, sig.args[2], x_arr, x_off, sig.args[3], n)
        pw = _vec_ptr(context, builder, sig.args[4], w_arr, w_off, sig.args[5], n)
        vt = ir.VectorType(_F32, n)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{n}f32")
        a = builder.load(pa, align=4)
        r = builder.call(fma, [builder.load(px, align=4), builder.load(pw, align=4), a])
        builder.store(r, pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, aoff, x, xoff, w, woff, lanes), codegen


@intrinsic
def vfma4(typingctx, acc, aoff, src, soff, w, woff, lanes):
    """``acc[aoff:aoff+lanes] += tile4(src[soff:soff+4]) * w[woff:woff+lanes]``: four
    consecutive ``src`` values repeated across the vector (``vbroadcastf32x4``), for kernels
    whose lanes are (output channel, 4 consecutive reduction elements)."""
    n = _literal(lanes)
    if n is None or n % 4 or not (_f32_array(acc) and _f32_array(src) and _f32_array(w)):
        return None

    def codegen(context, builder, sig, args):
        a_arr, a_off, s_arr, s_off, w_arr, w_off, _ = args
        pa = _vec_ptr(context, builder, sig.args[0], a_arr, a_off, sig.args[1], n)
        ps = _vec_ptr(context, builder, sig.args[2], s_arr, s_off, sig.args[3], 4)
        pw = _vec_ptr(context, builder, sig.args[4], w_arr, w_off, sig.args[5], n)
        vt = ir.VectorType(_F32, n)
        q = builder.load(ps, align=4)
        xs = builder.shuffle_vector(q, ir.Constant(ir.VectorType(_F32, 4), ir.Undefined),
                                    ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                [i % 4 for i in range(n)]))
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                             f"llvm.fma.v{n}f32")
        a = builder.load(pa, align=4)
        builder.store(builder.call(fma, [xs, builder.load(pw, align=4), a]), pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, aoff, src, soff, w, woff, lanes), codegen


# --- int8 (qu8 kernels) ----------------------------------------------------------------------
# Integer lanes are int32 accumulators; a "dot4" lane j adds the dot product of 4 unsigned
# activation bytes (one 32-bit word broadcast to every lane) with the 4 signed weight bytes
# w[woff + 4j : woff + 4j + 4]. ISA codes (an int literal, chosen by the kernel factory):
DOT_PORTABLE = 0    # plain LLVM vector IR (zext * sext, add the 4 products): any CPU
DOT_VNNI = 1        # llvm.x86.avx512.vpdpbusd.512: x86 AVX-512 VNNI, lanes % 16 == 0
DOT_SDOT = 2        # llvm.aarch64.neon.sdot: aarch64 dotprod, lanes % 4 == 0; computes
                    # (x - 128) * w: the caller adds 128 * sum(w) to its bias
DOT_SDOT_EMULATED = 3   # DOT_SDOT's arithmetic in portable IR (tests the sdot kernels on x86)
DOT_ISAS = (DOT_PORTABLE, DOT_VNNI, DOT_SDOT, DOT_SDOT_EMULATED)

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)


def _int_array(t, dtype) -> bool:
    return isinstance(t, types.Array) and t.dtype == dtype and t.ndim == 1


def _typed_ptr(context, builder, arrty, arr, off, offty, elem):
    data = context.make_array(arrty)(context, builder, arr).data
    off = context.cast(builder, off, offty, types.intp)
    return builder.bitcast(builder.gep(data, [off]), elem.as_pointer())


def _bytes_ptr(context, builder, ty, val, off, offty, elem):
    """Pointer to ``elem`` at byte array ``val[off]``, or at raw address ``val + off``."""
    if isinstance(ty, types.Integer):
        a = builder.add(context.cast(builder, val, ty, types.intp),
                        context.cast(builder, off, offty, types.intp))
        return builder.inttoptr(a, elem.as_pointer())
    return _typed_ptr(context, builder, ty, val, off, offty, elem)


def _int8_source(t) -> bool:
    """An int8 array or a raw address (int): what the dot intrinsics take as weights.
    NOTE: kernels pass addresses to switch weight arrays inside loops, since assigning an
    array variable costs two NRT reference-count calls."""
    return _int_array(t, types.int8) or isinstance(t, types.Integer)


@intrinsic
def load_u32(typingctx, addr):
    """The 4 bytes at raw address ``addr`` (any alignment) as one uint32 (little-endian)."""
    if not isinstance(addr, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        a = context.cast(builder, args[0], sig.args[0], types.intp)
        p = builder.inttoptr(a, _I32.as_pointer())
        return builder.load(p, align=1)

    return types.uint32(addr), codegen


def _splat_i32(builder, value, lanes):
    vt = ir.VectorType(_I32, lanes)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _dot4_portable(builder, a, xs, wb, n):
    """a + per-lane sum of 4 zext(x byte) * sext(w byte): <n x i32>."""
    wide = ir.VectorType(_I32, 4 * n)
    xb = builder.bitcast(xs, ir.VectorType(_I8, 4 * n))
    p = builder.mul(builder.zext(xb, wide), builder.sext(wb, wide))
    parts = [builder.shuffle_vector(p, ir.Constant(wide, ir.Undefined),
                                    ir.Constant(ir.VectorType(_I32, n),
                                                [4 * i + k for i in range(n)]))
             for k in range(4)]
    return builder.add(a, builder.add(builder.add(parts[0], parts[1]),
                                      builder.add(parts[2], parts[3])))


def _dot4_shifted(builder, a, xs, wb, n):
    """What DOT_SDOT computes, in portable IR: a + dot4(x, w) - dot4(128, w) per lane.

    NOTE: the direct form, sext(x ^ 0x80) * sext(w), made LLVM 22's x86 backend run out of
    memory inside the unrolled conv kernel."""
    k128 = _splat_i32(builder, ir.Constant(_I32, 0x80808080), n)
    return builder.sub(_dot4_portable(builder, a, xs, wb, n),
                       _dot4_portable(builder, ir.Constant(a.type, [0] * n), k128, wb, n))


def _chunks(builder, v, n, width, elem):
    """``v`` (<n x elem>) as n // width consecutive <width x elem> pieces."""
    if n == width:
        return [v]
    return [builder.shuffle_vector(v, ir.Constant(ir.VectorType(elem, n), ir.Undefined),
                                   ir.Constant(ir.VectorType(_I32, width),
                                               list(range(i, i + width))))
            for i in range(0, n, width)]


def _concat(builder, parts, elem):
    while len(parts) > 1:
        w = parts[0].type.count
        parts = [builder.shuffle_vector(parts[i], parts[i + 1],
                                        ir.Constant(ir.VectorType(_I32, 2 * w), list(range(2 * w))))
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _dot4_vnni(builder, a, xs, wb, n):
    """vpdpbusd per 16 lanes: unsigned bytes of xs times signed bytes of wb."""
    from llvmlite import binding as llvm
    v16 = ir.VectorType(_I32, 16)
    # NOTE: LLVM 21 retyped the byte operands as <64 x i8>; older versions take <16 x i32>.
    new = llvm.llvm_version_info >= (21,)
    bty = ir.VectorType(_I8, 64) if new else v16
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16, bty, bty]),
                                        "llvm.x86.avx512.vpdpbusd.512")
    xb = builder.bitcast(_chunks(builder, xs, n, 16, _I32)[0], bty)
    outs = []
    for i, (ai, wi) in enumerate(zip(_chunks(builder, a, n, 16, _I32),
                                     _chunks(builder, wb, 4 * n, 64, _I8))):
        outs.append(builder.call(fn, [ai, xb, builder.bitcast(wi, bty)]))
    return _concat(builder, outs, _I32)


def _dot4_sdot(builder, a, xs, wb, n):
    """aarch64 sdot per 4 lanes of (x ^ 0x80) as signed bytes times signed wb: (x - 128) * w."""
    v4, b16 = ir.VectorType(_I32, 4), ir.VectorType(_I8, 16)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v4, [v4, b16, b16]),
                                        "llvm.aarch64.neon.sdot.v4i32.v16i8")
    x4 = _chunks(builder, xs, n, 4, _I32)[0]
    xb = builder.xor(builder.bitcast(x4, b16), ir.Constant(b16, [0x80] * 16))
    outs = [builder.call(fn, [ai, xb, wi])
            for ai, wi in zip(_chunks(builder, a, n, 4, _I32), _chunks(builder, wb, 4 * n, 16, _I8))]
    return _concat(builder, outs, _I32)


_DOT4 = {DOT_PORTABLE: _dot4_portable, DOT_VNNI: _dot4_vnni, DOT_SDOT: _dot4_sdot,
         DOT_SDOT_EMULATED: _dot4_shifted}
_DOT4_MULTIPLE = {DOT_PORTABLE: 1, DOT_VNNI: 16, DOT_SDOT: 4, DOT_SDOT_EMULATED: 1}


@intrinsic
def vdot4(typingctx, acc, aoff, xw, w, woff, lanes, isa):
    """``acc[aoff + j] += sum_k u8(xw byte k) * w[woff + 4j + k]`` for j < lanes (int32 lanes,
    int8 weights (an array, or a raw address), exact: no saturation). ``isa`` selects the instruction (``DOT_*``); with
    ``DOT_SDOT`` and ``DOT_SDOT_EMULATED`` the activation bytes count as ``x - 128``."""
    n, k = _literal(lanes), _literal(isa)
    if (n is None or k not in _DOT4 or n % _DOT4_MULTIPLE[k] or not _int_array(acc, types.int32)
            or not _int8_source(w) or not isinstance(xw, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        a_arr, a_off, x, w_arr, w_off, _, _ = args
        pa = _typed_ptr(context, builder, sig.args[0], a_arr, a_off, sig.args[1],
                        ir.VectorType(_I32, n))
        pw = _bytes_ptr(context, builder, sig.args[3], w_arr, w_off, sig.args[4],
                        ir.VectorType(_I8, 4 * n))
        x32 = context.cast(builder, x, sig.args[2], types.uint32)
        a = builder.load(pa, align=4)
        r = _DOT4[k](builder, a, _splat_i32(builder, x32, n), builder.load(pw, align=1), n)
        builder.store(r, pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, aoff, xw, w, woff, lanes, isa), codegen


@intrinsic
def vfill_i32(typingctx, dst, off, value, lanes):
    """``dst[off:off+lanes] = value`` (int32)."""
    n = _literal(lanes)
    if n is None or not _int_array(dst, types.int32) or not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        p = _typed_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                       ir.VectorType(_I32, n))
        v = context.cast(builder, args[2], sig.args[2], types.int32)
        builder.store(_splat_i32(builder, v, n), p, align=4)
        return context.get_dummy_value()

    return types.none(dst, off, value, lanes), codegen


@intrinsic
def vcopy_i32(typingctx, dst, doff, src, soff, lanes):
    """``dst[doff:doff+lanes] = src[soff:soff+lanes]`` (int32)."""
    n = _literal(lanes)
    if n is None or not (_int_array(dst, types.int32) and _int_array(src, types.int32)):
        return None

    def codegen(context, builder, sig, args):
        vt = ir.VectorType(_I32, n)
        pd = _typed_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], vt)
        ps = _typed_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3], vt)
        builder.store(builder.load(ps, align=4), pd, align=4)
        return context.get_dummy_value()

    return types.none(dst, doff, src, soff, lanes), codegen


@intrinsic
def vadd(typingctx, dst, doff, src, soff, lanes):
    """``dst[doff:doff+lanes] += src[soff:soff+lanes]`` (``src`` an array or an address)."""
    n = _literal(lanes)
    if n is None or not (_f32_array(dst) and _f32_source(src)):
        return None

    def codegen(context, builder, sig, args):
        pd = _vec_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], n)
        ps = _vec_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3], n)
        builder.store(builder.fadd(builder.load(pd, align=4), builder.load(ps, align=4)), pd,
                      align=4)
        return context.get_dummy_value()

    return types.none(dst, doff, src, soff, lanes), codegen


def _requant_operands(context, builder, sig, args, n):
    """f32(tile[toff:+n] + bias[boff:+n]) * mult[moff:+n] as <n x float> (no fast-math flags:
    the product is rounded once, never fused with what follows)."""
    t_arr, t_off, b_arr, b_off, m_arr, m_off = args[:6]
    vi, vf = ir.VectorType(_I32, n), ir.VectorType(_F32, n)
    pt = _typed_ptr(context, builder, sig.args[0], t_arr, t_off, sig.args[1], vi)
    pb = _typed_ptr(context, builder, sig.args[2], b_arr, b_off, sig.args[3], vi)
    pm = _typed_ptr(context, builder, sig.args[4], m_arr, m_off, sig.args[5], vf)
    acc = builder.add(builder.load(pt, align=4), builder.load(pb, align=4))
    return builder.fmul(builder.sitofp(acc, vf), builder.load(pm, align=4))


@intrinsic
def vrequant_u8(typingctx, tile, toff, bias, boff, mult, moff, zy, lo, hi, out, ooff, lanes):
    """``out[ooff+j] = u8(min(max(rint(f32(tile[toff+j] + bias[boff+j]) * mult[moff+j]) + zy,
    lo), hi))`` for j < lanes: the qu8 requantizing epilogue (int32 tile and bias, float32
    mult, zy, lo, hi; rint rounds half to even). The int32 add wraps like the kernels'
    accumulators."""
    n = _literal(lanes)
    if (n is None or not (_int_array(tile, types.int32) and _int_array(bias, types.int32)
                          and _f32_array(mult) and _int_array(out, types.uint8))
            or not all(t == types.float32 for t in (zy, lo, hi))):
        return None

    def codegen(context, builder, sig, args):
        vf = ir.VectorType(_F32, n)
        y = _requant_operands(context, builder, sig, args, n)
        rint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vf, [vf]),
                                              f"llvm.rint.v{n}f32")
        y = builder.fadd(builder.call(rint, [y]), _splat(builder, args[6], n))
        lo_v, hi_v = _splat(builder, args[7], n), _splat(builder, args[8], n)
        y = builder.select(builder.fcmp_ordered("<", y, lo_v), lo_v, y)
        y = builder.select(builder.fcmp_ordered(">", y, hi_v), hi_v, y)
        q = builder.trunc(builder.fptosi(y, ir.VectorType(_I32, n)), ir.VectorType(_I8, n))
        po = _typed_ptr(context, builder, sig.args[9], args[9], args[10], sig.args[10],
                        ir.VectorType(_I8, n))
        builder.store(q, po, align=1)
        return context.get_dummy_value()

    return types.none(tile, toff, bias, boff, mult, moff, zy, lo, hi, out, ooff, lanes), codegen


@intrinsic
def vscale_f32(typingctx, tile, toff, bias, boff, mult, moff, out, ooff, lanes):
    """``out[ooff+j] = f32(tile[toff+j] + bias[boff+j]) * mult[moff+j]`` for j < lanes (the
    qu8 fp32out epilogue)."""
    n = _literal(lanes)
    if (n is None or not (_int_array(tile, types.int32) and _int_array(bias, types.int32)
                          and _f32_array(mult) and _f32_array(out))):
        return None

    def codegen(context, builder, sig, args):
        y = _requant_operands(context, builder, sig, args, n)
        po = _vec_ptr(context, builder, sig.args[6], args[6], args[7], sig.args[7], n)
        builder.store(y, po, align=4)
        return context.get_dummy_value()

    return types.none(tile, toff, bias, boff, mult, moff, out, ooff, lanes), codegen


@intrinsic
def vmac_u8i8(typingctx, acc, aoff, xaddr, w, woff, lanes):
    """``acc[aoff+j] += u8(x[xaddr+j]) * w[woff+j]`` for j < lanes: int32 accumulators, uint8
    activations at raw address ``xaddr``, int8 weights (products formed in int16, exact)."""
    n = _literal(lanes)
    if (n is None or not _int_array(acc, types.int32) or not _int_array(w, types.int8)
            or not isinstance(xaddr, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        a_arr, a_off, xa, w_arr, w_off, _ = args
        vb, vh, vi = (ir.VectorType(t, n) for t in (_I8, ir.IntType(16), _I32))
        pa = _typed_ptr(context, builder, sig.args[0], a_arr, a_off, sig.args[1], vi)
        pw = _typed_ptr(context, builder, sig.args[3], w_arr, w_off, sig.args[4], vb)
        px = builder.inttoptr(context.cast(builder, xa, sig.args[2], types.intp), vb.as_pointer())
        p = builder.mul(builder.zext(builder.load(px, align=1), vh),
                        builder.sext(builder.load(pw, align=1), vh))
        builder.store(builder.add(builder.load(pa, align=4), builder.sext(p, vi)), pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, aoff, xaddr, w, woff, lanes), codegen


def _bcast16(builder, src_ptr, n):
    """The 16 bytes at ``src_ptr`` repeated to <n x i32> (``vbroadcasti32x4`` at n = 16)."""
    b16 = builder.load(builder.bitcast(src_ptr, ir.VectorType(_I8, 16).as_pointer()), align=1)
    rep = builder.shuffle_vector(b16, ir.Constant(ir.VectorType(_I8, 16), ir.Undefined),
                                 ir.Constant(ir.VectorType(_I32, 4 * n),
                                             [j % 16 for j in range(4 * n)]))
    return builder.bitcast(rep, ir.VectorType(_I32, n))


def _dot16_codegen(n, k, src_ptr_of):
    def codegen(context, builder, sig, args):
        pa = _typed_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1],
                        ir.VectorType(_I32, n))
        nw = len(args) - 3          # the weight array's position
        pw = _bytes_ptr(context, builder, sig.args[nw - 1], args[nw - 1], args[nw],
                        sig.args[nw], ir.VectorType(_I8, 4 * n))
        xs = _bcast16(builder, src_ptr_of(context, builder, sig, args), n)
        r = _DOT4[k](builder, builder.load(pa, align=4), xs, builder.load(pw, align=1), n)
        builder.store(r, pa, align=4)
        return context.get_dummy_value()
    return codegen


def _dot16_ok(acc, w, n, k):
    return n == 16 and k in _DOT4 and _int_array(acc, types.int32) and _int8_source(w)


@intrinsic
def vdot16(typingctx, acc, aoff, xaddr, w, woff, lanes, isa):
    """``acc[aoff + 4c + i] += sum_b u8(x[xaddr + 4i + b]) * w[woff + 16c + 4i + b]`` for
    c, i < 4 (lanes == 16): 16 activation bytes repeated in every 128 bits, so lane (c, i) holds
    output channel c's partial sum over word i (the "kdot" layout for few output channels).
    ``isa`` as in ``vdot4``."""
    n, k = _literal(lanes), _literal(isa)
    if not _dot16_ok(acc, w, n, k) or not isinstance(xaddr, types.Integer):
        return None

    def src(context, builder, sig, args):
        a = context.cast(builder, args[2], sig.args[2], types.intp)
        return builder.inttoptr(a, _I8.as_pointer())

    return types.none(acc, aoff, xaddr, w, woff, lanes, isa), _dot16_codegen(n, k, src)


@intrinsic
def vdot16a(typingctx, acc, aoff, src, soff, w, woff, lanes, isa):
    """``vdot16`` reading its 16 activation bytes from uint8 array ``src[soff:soff+16]``."""
    n, k = _literal(lanes), _literal(isa)
    if not _dot16_ok(acc, w, n, k) or not _int_array(src, types.uint8):
        return None

    def src_ptr(context, builder, sig, args):
        return _typed_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3], _I8)

    return (types.none(acc, aoff, src, soff, w, woff, lanes, isa),
            _dot16_codegen(n, k, src_ptr))


@intrinsic
def vsum4_i32(typingctx, src, soff, dst, doff, lanes):
    """``dst[doff + j] = sum_i src[soff + 4j + i]`` for j < lanes / 4 (int32)."""
    n = _literal(lanes)
    if n is None or n % 4 or not (_int_array(src, types.int32) and _int_array(dst, types.int32)):
        return None

    def codegen(context, builder, sig, args):
        vt = ir.VectorType(_I32, n)
        ps = _typed_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], vt)
        pd = _typed_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3],
                        ir.VectorType(_I32, n // 4))
        v = builder.load(ps, align=4)
        parts = [builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                                        ir.Constant(ir.VectorType(_I32, n // 4),
                                                    [4 * j + i for j in range(n // 4)]))
                 for i in range(4)]
        s = builder.add(builder.add(parts[0], parts[1]), builder.add(parts[2], parts[3]))
        builder.store(s, pd, align=4)
        return context.get_dummy_value()

    return types.none(src, soff, dst, doff, lanes), codegen
