"""The machine code of the hot fp32 conv kernels: the reduction loop must be full-width zmm FMAs
with the accumulator tile in registers and no gathers (DESIGN.md: the same source with another
loop order ran 60x slower when LLVM vectorised the wrong loop with gathers).

Fresh dispatchers (``cache=False``) are compiled, as code loaded from Numba's cache cannot be
inspected (each test compiles a kernel: a few seconds). Skipped without AVX-512; the variants
multistyle26 does not use run with ``-m slow``.
"""
import re

import numpy as np
import pytest

from kernels import config
from kernels import f32_conv2d as igemm
from kernels import f32_dwconv2d as dw
from tests.kernels.asm import assert_no_gathers, assert_no_spills, hottest_loop

pytestmark = pytest.mark.skipif(not config.has_avx512(), reason="CPU lacks AVX-512")

FMA = re.compile(r"^\s*vfmadd\d*[ps]s\s+(.*)$", re.M)


def _args_igemm(nr, c=8, co=None):
    co = co or nr
    x = np.zeros((1, 5, 9, c), np.float32)
    out = np.zeros((1, 5, 9, co), np.float32)
    rowmap, colmap = igemm.conv_tables(x.shape, (3, 3), pads=(1, 1, 1, 1))
    wp = igemm.pack_weights(np.zeros((co, c, 3, 3), np.float32), nr)
    ro = igemm.readonly
    return (ro(x), ro(rowmap), ro(colmap), ro(wp), ro(np.zeros(co, np.float32)), ro(out), out, 1,
            1, 0, np.float32(0), np.float32(0), ro(igemm.NO_SLOPES), False, igemm.NO_SUMS, False,
            False, 1)


# multistyle26: Co = 32 (8x32), Co = 8, 4, 3 (16x16); 4x64 for wide layers.
@pytest.mark.parametrize("mr,nr,parallel", [
    (8, 32, False), (16, 16, False),
    pytest.param(4, 64, False, marks=pytest.mark.slow), pytest.param(8, 32, True, marks=pytest.mark.slow)])
def test_igemm_inner_loop_is_zmm_fma_without_gathers(mr, nr, parallel):
    fn = igemm.igemm_kernel.__wrapped__(mr, nr, parallel, cache=False)
    fn(*_args_igemm(nr))
    asm = fn.inspect_asm(fn.signatures[0])
    body = hottest_loop(asm, FMA)
    assert_no_gathers(body)
    fmas = FMA.findall(body)
    assert all("%zmm" in f for f in fmas), f"non-zmm FMAs in the reduction loop: {fmas}"
    # at least one FMA per accumulator vector of the tile as compiled, per input channel
    need = igemm.machine_rows(mr, nr) * nr // igemm.VL
    assert len(fmas) >= need, f"{len(fmas)} FMAs, tile needs {need}"
    assert_no_spills(body)


@pytest.mark.slow
def test_dwconv_vector_path_is_zmm_fma():
    fn = dw.dwconv_kernel.__wrapped__(False, cache=False)
    x = np.zeros((1, 5, 6, 64), np.float32)
    out = np.zeros((1, 5, 6, 64), np.float32)
    rowmap, colmap = igemm.conv_tables(x.shape, (3, 3), pads=(1, 1, 1, 1))
    ro = igemm.readonly
    fn(ro(x), ro(rowmap), ro(colmap), ro(np.zeros((3, 3, 64), np.float32)),
       ro(np.zeros(64, np.float32)), ro(out), out, 1, 0, np.float32(0), np.float32(0), False, 1)
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), FMA)
    fmas = FMA.findall(body)
    assert len(fmas) >= dw.NVB and all("%zmm" in f for f in fmas), fmas
    assert_no_gathers(body)


@pytest.mark.parametrize("mr,cg", [(16, 1), pytest.param(8, 2, marks=pytest.mark.slow)])
def test_kdot_inner_loop_is_zmm_fma_without_gathers(mr, cg):
    """multistyle26's 32->8, 8->4 and 4->3 convs: one FMA per accumulator vector per quad."""
    fn = igemm.kdot_kernel.__wrapped__(mr, cg, False, cache=False)
    x = np.zeros((1, 12, 40, 4), np.float32)
    out = np.zeros((1, 12, 40, 4 * cg), np.float32)
    rowmap, colmap = igemm.conv_tables(x.shape, (9, 9), pads=(4, 4, 4, 4), pad_mode="reflect")
    wrun, wtap = igemm.pack_weights_kdot(np.zeros((4 * cg, 4, 9, 9), np.float32), cg)
    ro = igemm.readonly
    fn(ro(x), ro(rowmap), ro(colmap), ro(wrun), ro(wtap), ro(np.zeros(4 * cg, np.float32)),
       ro(out), out, 0, np.float32(0), np.float32(0), False)
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), FMA)
    fmas = FMA.findall(body)
    assert all("%zmm" in f for f in fmas), f"non-zmm FMAs in the reduction loop: {fmas}"
    assert len(fmas) >= mr * cg, f"{len(fmas)} FMAs, tile needs {mr * cg}"
    assert "vbroadcastf32x4" in body
    assert_no_gathers(body)


# multistyle26's few-channel tail: 9x9 4->3 (64x3), nearest-2x 3x3 8->4 (pixup2 32x4) and
# 32->8 (pixup2 16x8, slow).
@pytest.mark.parametrize("co,up", [(3, 1), (4, 2), pytest.param(8, 2, marks=pytest.mark.slow)])
def test_pix_inner_loop_is_zmm_fma_with_broadcast_weights(co, up):
    """Lanes over output pixels: per input channel and column tap, one FMA per accumulator
    vector (U x Co x NVX), weights broadcast from memory, pixels from contiguous loads; the
    tile stays in registers and nothing is gathered."""
    from kernels import f32_conv2d_pix as pix
    k = 9 if co == 3 else 3
    x = np.zeros((1, 1, 12, 70), np.float32)                       # planar input
    w = np.zeros((co, 1, k, k), np.float32)
    rowmap, colmap = igemm.conv_tables((1, 12, 70, 1), (k, k), pads=(k // 2,) * 4,
                                       pad_mode="reflect", upsample=up)
    plan = pix.PixPlan(w, rowmap, colmap, up)
    fn = pix.pix_kernel.__wrapped__(plan.nvx, co, plan.phases, False, cache=False)
    out = np.zeros((1, co, rowmap.shape[0], colmap.shape[0]), np.float32)
    scratch, tags = pix.scratch_for(plan, 1, 1)
    ro = igemm.readonly
    fn(ro(x), ro(plan.rowtap), ro(plan.rowsel), ro(plan.coloff), ro(plan.bufsrc),
       ro(plan.wbank), ro(np.zeros(co, np.float32)), ro(out), out, scratch, tags, True, True, 0,
       np.float32(0), np.float32(0), False)
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), FMA)
    fmas = FMA.findall(body)
    assert all("%zmm" in f for f in fmas), f"non-zmm FMAs in the reduction loop: {fmas}"
    assert len(fmas) >= plan.phases * co * plan.nvx, f"{len(fmas)} FMAs for the tile"
    assert_no_gathers(body)
    assert_no_spills(body)


@pytest.mark.parametrize("nr", [32, pytest.param(16, marks=pytest.mark.slow)])
def test_winograd_gemm_loop_is_zmm_fma_without_gathers(nr):
    """The 36 GEMMs of the Winograd conv: its hottest loop is the register tile's zmm FMAs."""
    from kernels import f32_conv2d_winograd as wino
    fn = wino.winograd_kernel.__wrapped__(nr, False, cache=False)
    wino_args = _args_winograd(wino, nr)
    fn(*wino_args)
    asm = fn.inspect_asm(fn.signatures[0])
    body = hottest_loop(asm, FMA)
    assert_no_gathers(body)
    fmas = FMA.findall(body)
    assert all("%zmm" in f for f in fmas), f"non-zmm FMAs in the GEMM loop: {fmas}"
    need = igemm.machine_rows(wino.MR, nr) * nr // igemm.VL
    assert len(fmas) >= need, f"{len(fmas)} FMAs, tile needs {need}"
    assert_no_spills(body)


def _args_winograd(wino, nr, c=16, co=32):
    x = np.zeros((1, 9, 10, c), np.float32)
    out = np.zeros((1, 9, 10, co), np.float32)
    rowmap, colmap = igemm.conv_tables(x.shape, (3, 3), pads=(1, 1, 1, 1))
    prow, pcol = wino.padded_maps(rowmap, colmap, 9, 10)
    tiles = wino.tiles_of(1, 9, 10)
    v, m = wino.scratch_split(np.zeros(wino.scratch_floats(tiles, c, co), np.float32), tiles, c, co)
    ro = igemm.readonly
    w = np.zeros((co, c, 3, 3), np.float32)
    return (ro(x), ro(prow), ro(pcol), ro(wino.transform_weights(w, nr)),
            ro(wino.direct_weights(w)), ro(np.zeros(co, np.float32)), ro(out), out, 0,
            np.float32(0), np.float32(0), False, v, m, np.zeros(v.shape[0], np.bool_))
