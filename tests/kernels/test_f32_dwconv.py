"""The depthwise kernel's tiles (kernels/f32_dwconv2d.py) on edge shapes, against
kernels/reference.py: channel counts that leave every vector width and the scalar loop a part
(1, 3, 13, 24, 63, 64, 65), 3x3 and 5x5, stride 1 and 2, symmetric and TF-style one-sided
padding, row widths that give 8- and 4-pixel tiles and single pixels, the clamp epilogue and
the activations that run after each row part, a residual, rows cut into column parts."""
import re

import numpy as np
import pytest

from kernels import config
from kernels import f32_dwconv2d as dw
from kernels import reference as ref
from kernels.f32_conv2d import activation_params, conv_tables, readonly
from mobile_engine.ir.ops import Activation
from tests.kernels.asm import assert_no_gathers, assert_no_spills, hottest_loop
from tests.tolerances import assert_f32_close

RNG = np.random.default_rng(17)
FMA = re.compile(r"^\s*vfmadd\d*[ps]s\s+(.*)$", re.M)
CHANNELS = [1, 3, 13, 24, 63, 64, 65]
# (kernel, stride, pads (top, left, bottom, right), input height x width)
GEOMETRIES = [(3, 1, (1, 1, 1, 1), (5, 15)),      # interior 13 columns: 8 + 4 + 1
              (5, 1, (2, 2, 2, 2), (4, 22)),      # interior 18: 8 + 8 + 1 + 1
              (3, 2, (0, 0, 1, 1), (7, 33)),      # TF SAME, stride 2: 16 columns, last one short
              (5, 2, (1, 1, 2, 2), (6, 19)),
              (3, 1, (0, 0, 0, 0), (3, 12)),      # no padding: every column regular
              (5, 1, (2, 0, 2, 4), (5, 9))]       # one-sided: the right border only
ACTS = [(Activation.NONE, ()), (Activation.RELU, ()), (Activation.CLAMP, (-0.5, 0.75)),
        (Activation.HARD_SWISH, ()), (Activation.SIGMOID, ())]
CASES = [(c, geo, ACTS[i % len(ACTS)], i % 3 == 0)
         for i, (c, geo) in enumerate((c, g) for c in CHANNELS for g in GEOMETRIES)]


def _ids(cases):
    return [f"c{c}-k{g[0]}s{g[1]}-p{''.join(map(str, g[2]))}-{g[3][0]}x{g[3][1]}-"
            f"{Activation(a[0]).name}{'-res' if res else ''}" for c, g, a, res in cases]


def _run(c, geo, act, residual, parallel, splits=1, n=1, kernel=None):
    """(kernel output, reference, reduction length); ``kernel`` (kw, stride): that variant
    (None: the one ``variant`` picks)."""
    k, s, pads, hw = geo
    x = RNG.standard_normal((n, *hw, c)).astype(np.float32)
    w = (RNG.standard_normal((c, 1, k, k)) / k).astype(np.float32)
    bias = RNG.standard_normal(c).astype(np.float32)
    rowmap, colmap = conv_tables(x.shape, (k, k), (s, s), (1, 1), pads)
    shape = (n, rowmap.shape[0], colmap.shape[0], c)
    res = RNG.standard_normal(shape).astype(np.float32) if residual else None
    expected = ref.conv2d(x, w, bias, res, strides=(s, s), pads=pads, group=c,
                          activation_kind=act[0], act_params=act[1])
    out = np.full(shape, np.nan, np.float32)          # every output written once
    p0, p1 = activation_params(*act)
    ro = readonly
    fn = dw.dwconv_kernel(parallel, *(kernel or dw.variant(colmap)))
    fn(ro(x), ro(rowmap), ro(colmap), ro(dw.pack_weights(w)), ro(bias),
       ro(out if res is None else res), out, 1, int(act[0]), np.float32(p0), np.float32(p1),
       residual, splits)
    return out, expected, k * k


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_every_geometry_has_an_unrolled_variant(geo):
    k, s, pads, hw = geo
    _, colmap = conv_tables((1, *hw, 8), (k, k), (s, s), (1, 1), pads)
    assert dw.variant(colmap) == (k, s)


@pytest.mark.parametrize("c,geo,act,residual", CASES, ids=_ids(CASES))
@pytest.mark.parametrize("unrolled", [True, False])
def test_dwconv_edge_shapes(c, geo, act, residual, unrolled):
    got, expected, red = _run(c, geo, act, residual, parallel=False,
                              kernel=None if unrolled else (0, 1))
    assert_f32_close(got, expected, red, "dwconv")


@pytest.mark.parametrize("kernel", dw.UNROLLED)
def test_unrolled_variant_on_another_geometry(kernel):
    """A variant handed tables of another geometry lists every pixel's taps: still exact."""
    geo = (3, 1, (2, 2, 2, 2), (4, 13)) if kernel == (3, 2) else (3, 2, (1, 1, 1, 1), (4, 19))
    got, expected, red = _run(24, geo, ACTS[2], True, parallel=False, kernel=kernel)
    assert_f32_close(got, expected, red, f"dwconv {kernel}")


@pytest.mark.parametrize("splits", [2, 3, 9])
@pytest.mark.parametrize("c", [13, 64])
def test_dwconv_row_parts_cut_tiles(c, splits):
    """Row parts of whole tiles and parts that end inside the regular columns, two images."""
    got, expected, red = _run(c, GEOMETRIES[1], ACTS[3], True, parallel=True, splits=splits,
                              n=2)
    assert_f32_close(got, expected, red, f"dwconv splits={splits}")


@pytest.mark.slow
@pytest.mark.skipif(not config.has_avx512(), reason="CPU lacks AVX-512")
@pytest.mark.parametrize("kernel", [(3, 1), (5, 2)])
def test_unrolled_tile_is_zmm_fma_in_registers(kernel):
    """The hot loop of an unrolled variant (one kernel row of a tile): KW x PIXELS zmm FMAs, the
    accumulators in registers, no gathers."""
    k, s = kernel
    fn = dw.dwconv_kernel.__wrapped__(False, k, s, cache=False)
    x = np.zeros((1, 6, 40, 64), np.float32)
    rowmap, colmap = conv_tables(x.shape, (k, k), (s, s), (1, 1), (k // 2,) * 4)
    out = np.zeros((1, rowmap.shape[0], colmap.shape[0], 64), np.float32)
    ro = readonly
    fn(ro(x), ro(rowmap), ro(colmap), ro(np.zeros((k, k, 64), np.float32)),
       ro(np.zeros(64, np.float32)), ro(out), out, 1, 0, np.float32(0), np.float32(0), False, 1)
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), FMA)
    fmas = FMA.findall(body)
    assert len(fmas) >= k * dw.machine_pixels() and all("%zmm" in f for f in fmas), fmas
    assert_no_gathers(body)
    assert_no_spills(body)
