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
    data = context.make_array(arrty)(context, builder, arr).data
    off = context.cast(builder, off, offty, types.intp)
    return builder.bitcast(builder.gep(data, [off]), ir.VectorType(_F32, lanes).as_pointer())


def _splat(builder, value, lanes):
    vt = ir.VectorType(_F32, lanes)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


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
def vcopy(typingctx, dst, doff, src, soff, lanes):
    """``dst[doff:doff+lanes] = src[soff:soff+lanes]``."""
    n = _literal(lanes)
    if n is None or not (_f32_array(dst) and _f32_array(src)):
        return None

    def codegen(context, builder, sig, args):
        pd = _vec_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1], n)
        ps = _vec_ptr(context, builder, sig.args[2], args[2], args[3], sig.args[3], n)
        builder.store(builder.load(ps, align=4), pd, align=4)
        return context.get_dummy_value()

    return types.none(dst, doff, src, soff, lanes), codegen


@intrinsic
def vfma2(typingctx, acc, aoff, x, xoff, w, woff, lanes):
    """``acc[aoff:aoff+lanes] += x[xoff:xoff+lanes] * w[woff:woff+lanes]`` (element-wise)."""
    n = _literal(lanes)
    if n is None or not (_f32_array(acc) and _f32_array(x) and _f32_array(w)):
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
