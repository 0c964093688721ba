"""The machine code of the qu8 conv kernels: on AVX-512 VNNI the reduction loop is zmm
``vpdpbusd`` with the accumulator tile in registers (DESIGN.md: plain Numba int8 code never
produces it, 8-25 GOP/s); the aarch64 sdot variant's dot4 lowers to ``sdot`` (checked by
cross-compiling its LLVM IR, since this machine is x86).

Fresh dispatchers (``cache=False``) are compiled: code loaded from Numba's cache cannot be
inspected.
"""
import re

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

from kernels import config
from kernels import intrinsics
from kernels import qu8_conv2d as qc
from tests.kernels.asm import assert_no_gathers, assert_no_spills, hottest_loop

DOT = re.compile(r"^\s*vpdpbusd\s+(.*)$", re.M)


def _compile_fresh(mr, nr, isa, c=32):
    fn = qc.igemm_kernel.__wrapped__(mr, nr, isa, "requant", False, cache=False)
    x = np.zeros((1, 5, 40, c), np.uint8)
    w = np.zeros((nr, c, 3, 3), np.int8)
    rowmap, colmap = qc.conv_tables(x.shape, (3, 3), pads=(1, 1, 1, 1))
    wp = qc.pack_qu8_weights(w, nr)
    out = np.empty((1, 5, 40, nr), np.uint8)
    ro = qc.readonly
    fn(ro(x), ro(qc.qu8_zero_row(0, c, 3)), ro(rowmap), ro(colmap), ro(wp),
       ro(qc.qu8_run_weights(w, wp, nr)), ro(np.zeros(nr, np.int32)),
       ro(np.ones(nr, np.float32)), out, 1, 0, 0, 255, 0, np.float32(0), np.float32(0))
    return fn.inspect_asm(fn.signatures[0])


# NOTE: each case compiles a fresh kernel (5-10 s); the multistyle26 tiles run by default.
SLOW = pytest.mark.slow


@pytest.mark.skipif(not config.has_avx512_vnni(), reason="CPU lacks AVX-512 VNNI")
@pytest.mark.parametrize("mr,nr", [(10, 32), pytest.param(14, 16, marks=SLOW),
                                   pytest.param(6, 64, marks=SLOW)])
def test_vnni_inner_loop_is_zmm_vpdpbusd(mr, nr):
    asm = _compile_fresh(mr, nr, "vnni")
    body = hottest_loop(asm, DOT)
    dots = DOT.findall(body)
    # one vpdpbusd per accumulator vector of the MR x NR tile per 4 input bytes
    assert len(dots) >= mr * nr // qc.VL, f"{len(dots)} vpdpbusd in the hottest loop"
    assert all(d.count("%zmm") == 3 for d in dots), f"non-zmm vpdpbusd: {dots}"
    assert_no_gathers(body)
    assert_no_spills(body)


@pytest.mark.skipif(not config.has_avx512_vnni(), reason="CPU lacks AVX-512 VNNI")
@pytest.mark.parametrize("mr,cg", [(14, 1), pytest.param(10, 2, marks=SLOW)])
def test_kdot_inner_loop_is_broadcast_vpdpbusd(mr, cg):
    """Few output channels: 16 input bytes per 128-bit lane (vbroadcasti32x4), one vpdpbusd
    per accumulator vector, no spills."""
    fn = qc.kdot_kernel.__wrapped__(mr, cg, "vnni", "requant", False, cache=False)
    x = np.zeros((1, 12, 40, 4), np.uint8)
    w = np.zeros((4 * cg - 1, 4, 9, 9), np.int8)
    rowmap, colmap = qc.conv_tables(x.shape, (9, 9), pads=(4, 4, 4, 4), pad_mode="reflect")
    wr, wt = qc.pack_qu8_weights_kdot(w, cg)
    out = np.empty((1, 12, 40, w.shape[0]), np.uint8)
    ro = qc.readonly
    fn(ro(x), ro(qc.qu8_zero_row(0, 4, 9)), ro(rowmap), ro(colmap), ro(wr), ro(wt),
       ro(np.zeros(w.shape[0], np.int32)), ro(np.ones(w.shape[0], np.float32)), out, 0, 0, 255,
       0, np.float32(0), np.float32(0))
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), DOT)
    dots = DOT.findall(body)
    assert len(dots) >= mr * cg and all(d.count("%zmm") == 3 for d in dots), dots
    assert len(re.findall(r"vbroadcasti32x4", body)) >= mr, "16-byte broadcasts expected"
    assert_no_spills(body)


@SLOW
def test_portable_variant_has_no_vnni():
    """The fallback must run on CPUs without VNNI: no vpdpbusd anywhere in it."""
    asm = _compile_fresh(16, 16, "portable", c=8)
    assert "vpdpbusd" not in asm and "vpdpwssd" not in asm


def _dot4_module(kind: int, lanes: int) -> str:
    """IR of ``acc + dot4(splat(x), w)`` through the intrinsic's own code generator."""
    mod = ir.Module()
    vt, bt = ir.VectorType(ir.IntType(32), lanes), ir.VectorType(ir.IntType(8), 4 * lanes)
    fn = ir.Function(mod, ir.FunctionType(vt, [vt, ir.IntType(32), bt]), "dot4")
    b = ir.IRBuilder(fn.append_basic_block())
    acc, x, w = fn.args
    b.ret(intrinsics._DOT4[kind](b, acc, intrinsics._splat_i32(b, x, lanes), w, lanes))
    return str(mod)


def test_sdot_variant_lowers_to_sdot_on_aarch64():
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    try:
        target = llvm.Target.from_triple("aarch64-unknown-linux-gnu")
    except RuntimeError:
        pytest.skip("llvmlite built without the AArch64 target")
    tm = target.create_target_machine(cpu="cortex-a76", features="+neon,+dotprod", opt=3)
    mod = llvm.parse_assembly(_dot4_module(intrinsics.DOT_SDOT, 16))
    mod.verify()
    asm = tm.emit_assembly(mod)
    assert len(re.findall(r"^\s*sdot\s", asm, re.M)) == 4, asm    # 16 lanes = 4 q registers
