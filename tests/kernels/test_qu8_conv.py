"""qu8 convolution kernels (kernels/qu8_conv2d.py, qu8_dwconv2d.py) bit-exact against the integer
numpy references of kernels/reference_q8.py, every dot-product variant this CPU can run (vnni,
portable, and the sdot variant's arithmetic emulated in portable IR), over a table of edge
shapes: channel counts with leftovers, 1x1/3x3/9x9 kernels, strides, dilations, reflect/edge/
zero padding, nearest upsampling, batches, groups, zero points 0 and 255, saturating values."""
import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (kernels.reference imports the engine)
from kernels import config
from kernels import qu8_conv2d as qc
from kernels import qu8_dwconv2d as qdw
from kernels import reference_q8 as rq
from mobile_engine.ir.ops import Activation
from tests.tolerances import assert_f32_close

RNG = np.random.default_rng(11)
ISAS = ["portable", pytest.param("vnni", marks=pytest.mark.skipif(
    not config.has_avx512_vnni(), reason="CPU lacks AVX-512 VNNI")), "sdot_emulated"]
CI = [1, 3, 4, 8, 13, 32, 63, 64, 65]
CO = [3, 4, 8, 16, 32, 33]
ZX = [0, 255, 128, 7, 250, 91]


def _case(c, co, k=3, hw=(7, 11), n=1, strides=(1, 1), dilations=(1, 1), pads=None, group=1,
          pad_mode="constant", upsample=1, zx=None):
    if pads is None:
        pads = tuple(dilations[i % 2] * (k // 2) for i in range(4))
    return dict(n=n, hw=hw, c=c, co=co, k=k, strides=strides, dilations=dilations, pads=pads,
                group=group, pad_mode=pad_mode, upsample=upsample, zx=zx)


CASES = (
    [_case(c, CO[i % len(CO)], zx=ZX[i % len(ZX)]) for i, c in enumerate(CI)]    # channel sweep
    + [_case(c, co, k=1, pads=(0, 0, 0, 0), zx=z) for c, co, z in
       ((3, 32, 17), (64, 16, 255), (65, 33, 0))]
    + [_case(3, 32, k=9, hw=(13, 14), pad_mode="reflect", pads=(4, 4, 4, 4)),    # first layer
       _case(3, 32, k=9, hw=(6, 7), pads=(4, 4, 4, 4), zx=255),                   # all borders
       _case(4, 3, k=9, hw=(12, 10), pad_mode="reflect", pads=(4, 4, 4, 4)),     # last layer
       _case(32, 32, strides=(2, 2), pad_mode="reflect", hw=(9, 13)),
       _case(32, 32, hw=(6, 30), n=2, pad_mode="reflect", zx=0),
       _case(13, 33, strides=(2, 1), pads=(0, 2, 1, 1), zx=255),
       _case(8, 13, dilations=(2, 2), hw=(9, 9)),
       _case(8, 16, pads=(2, 0, 1, 3), zx=0),
       _case(32, 8, pad_mode="reflect", upsample=2, hw=(5, 6)),
       _case(8, 4, pad_mode="edge", upsample=2, hw=(5, 7), strides=(2, 1)),
       _case(13, 16, pad_mode="edge", pads=(2, 1, 0, 3)),
       _case(4, 33, n=2, strides=(2, 2), pads=(1, 0, 0, 1)),
       _case(8, 16, group=2, zx=255), _case(12, 32, group=4, strides=(2, 2)),
       _case(65, 4, hw=(1, 1), pads=(1, 1, 1, 1), zx=200)]                       # one pixel
)


def _ids(cases):
    return [f"{c['n']}x{c['hw'][0]}x{c['hw'][1]}x{c['c']}-{c['co']}-k{c['k']}-s{c['strides']}"
            f"-d{c['dilations']}-p{c['pads']}-g{c['group']}-{c['pad_mode']}-up{c['upsample']}"
            f"-zx{c['zx']}" for c in cases]


def _data(case, extreme=False):
    """(x, w, bias_q, geo, zx): random uint8/int8 data with a float bias folded into bias_q."""
    zx = case["zx"] if case["zx"] is not None else int(RNG.integers(0, 256))
    x = RNG.integers(0, 256, (case["n"], *case["hw"], case["c"])).astype(np.uint8)
    w = RNG.integers(-128, 128, (case["co"], case["c"] // case["group"], case["k"],
                                 case["k"])).astype(np.int8)
    if extreme:     # the largest products of every sign
        x[..., ::2] = 255
        w[::2, ..., ::2] = -128
        w[1::2, ..., 1::2] = 127
    sw = RNG.uniform(0.002, 0.02, case["co"])
    bias_q = qc.qu8_conv_bias(RNG.standard_normal(case["co"]), w, 0.05, sw, zx)
    geo = dict(strides=case["strides"], dilations=case["dilations"], pads=case["pads"],
               pad_mode=case["pad_mode"], upsample=case["upsample"], group=case["group"])
    return x, w, bias_q, geo, zx


def _requant_params(x, w, bias_q, geo, zx, saturate=False):
    """(m, zy, qmin, qmax) spreading the outputs over the uint8 range (some clamped)."""
    acc = rq.conv_accumulators(x, w, bias_q, zx, **geo).astype(np.float64)
    spread = acc.reshape(-1, acc.shape[-1]).std(axis=0) + 1.0
    m = (RNG.uniform(20, 60, acc.shape[-1]) / spread).astype(np.float32)
    if saturate:
        m[::3] *= 50
    zy = int(RNG.integers(0, 256))
    qmin, qmax = (0, 255) if RNG.random() < 0.5 else (min(zy, 200), max(zy, 230))   # ReLU-like
    return m, zy, qmin, qmax


def _methods(case):
    return ["igemm", "kdot"] if qc.use_kdot(case["co"], case["group"]) else ["igemm"]


RUNS = [(case, method) for case in CASES for method in _methods(case)]
RUN_IDS = [f"{m}-{i}" for (_, m), i in zip(RUNS, _ids([c for c, _ in RUNS]))]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case,method", RUNS, ids=RUN_IDS)
def test_conv2d_requant_bit_exact(case, method, isa):
    x, w, bias_q, geo, zx = _data(case)
    m, zy, qmin, qmax = _requant_params(x, w, bias_q, geo, zx)
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, zy, qmin, qmax, **geo)
    got = qc.conv2d(x, w, bias_q, m, zx, zy, qmin, qmax, **geo, isa=isa, parallel=False,
                    method=method)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    bad = np.argwhere(got != expected)
    assert not len(bad), f"{len(bad)} of {got.size} differ, first at {bad[:3].tolist()}"
    assert 0 < np.unique(expected).size     # not a constant output (the data spread it)


EXTREME = [_case(3, 32, k=9, hw=(10, 12), pad_mode="reflect", pads=(4, 4, 4, 4), zx=0),
           _case(65, 33, zx=255), _case(64, 16, k=1, pads=(0, 0, 0, 0), zx=0),
           _case(4, 3, k=9, hw=(12, 20), pad_mode="reflect", pads=(4, 4, 4, 4), zx=255),
           _case(63, 8, zx=0)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", EXTREME, ids=_ids(EXTREME))
def test_conv2d_extreme_values_saturate_exactly(case, isa):
    x, w, bias_q, geo, zx = _data(case, extreme=True)
    m, zy, qmin, qmax = _requant_params(x, w, bias_q, geo, zx, saturate=True)
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, zy, qmin, qmax, **geo)
    got = qc.conv2d(x, w, bias_q, m, zx, zy, qmin, qmax, **geo, isa=isa, parallel=False)
    np.testing.assert_array_equal(got, expected)
    assert (expected == qmin).any() and (expected == qmax).any()


@pytest.mark.parametrize("isa", ISAS)
def test_requant_rounds_half_to_even(isa):
    """m = 0.5 puts every odd accumulator on a tie: rint must round it to even."""
    x = RNG.integers(0, 256, (1, 4, 9, 8)).astype(np.uint8)
    w = RNG.integers(-3, 4, (16, 8, 1, 1)).astype(np.int8)
    bias_q = RNG.integers(-50, 50, 16).astype(np.int32)
    m = np.full(16, 0.5, np.float32)
    acc = rq.conv_accumulators(x, w, bias_q, 0)
    assert (acc % 2 == 1).any()
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m, 0, 128, 0, 255)
    np.testing.assert_array_equal(expected.astype(np.int64) - 128,
                                  np.clip(np.round(acc / 2), -128, 127))   # numpy: half to even
    got = qc.conv2d(x, w, bias_q, m, 0, 128, 0, 255, isa=isa, parallel=False)
    np.testing.assert_array_equal(got, expected)


ACTS = [(Activation.NONE, ()), (Activation.RELU, ()), (Activation.CLAMP, (-0.5, 0.75)),
        (Activation.SIGMOID, ()), (Activation.HARD_SWISH, ())]
FP32_CASES = [CASES[1], CASES[4], CASES[13], CASES[15], CASES[-4]]


@pytest.mark.parametrize("isa", ISAS[:2])
@pytest.mark.parametrize("case", FP32_CASES + [CASES[0], CASES[-1]],
                         ids=_ids(FP32_CASES + [CASES[0], CASES[-1]]))
def test_conv2d_fp32out(case, isa):
    """Exact accumulators times sx*sw in float32: bit-exact without activation, else close."""
    x, w, bias_q, geo, zx = _data(case)
    m = qc.qu8_conv_multiplier(0.05, RNG.uniform(0.002, 0.02, case["co"]))
    for act, params in ACTS:
        expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, 0, 0, 0, **geo,
                                           out_mode="fp32out", act=act, act_params=params)
        got = qc.conv2d(x, w, bias_q, m, zx, **geo, epilogue="fp32out", act=act,
                        act_params=params, isa=isa, parallel=False)
        assert got.dtype == np.float32
        if act in (Activation.NONE, Activation.RELU, Activation.CLAMP):
            np.testing.assert_array_equal(got, expected, err_msg=Activation(act).name)
        else:
            assert_f32_close(got, expected, 4, Activation(act).name)


@pytest.mark.parametrize("isa", ISAS[:2])
@pytest.mark.parametrize("tile", [(mr, nr) for nr, mr in qc.TILES.items()])
def test_every_tile_parallel(tile, isa):
    """Each tile, serial and parallel, on partial channel blocks, border and tail tiles, a
    batch of two, C = 3 (runs crossing pixels and the buffer's end)."""
    case = _case(3, 65, n=2, hw=(9, 21), k=5, pads=(1, 2, 0, 3), zx=250)
    x, w, bias_q, geo, zx = _data(case)
    m, zy, qmin, qmax = _requant_params(x, w, bias_q, geo, zx)
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, zy, qmin, qmax, **geo)
    for parallel in (False, True):
        got = qc.conv2d(x, w, bias_q, m, zx, zy, qmin, qmax, **geo, isa=isa, tile=tile,
                        parallel=parallel)
        np.testing.assert_array_equal(got, expected, err_msg=f"parallel={parallel}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cg", sorted(qc.KDOT_TILES))
def test_every_kdot_tile_parallel(cg, isa):
    """kdot on partial channel groups, border/tail tiles, a batch of two, upsampling, and a
    fused (kernel row, chunk) loop next to rows read bytewise at the buffer's end."""
    for case in (_case(5, 4 * cg - 1, n=2, hw=(9, 37), k=5, pads=(1, 2, 0, 3), zx=250),
                 _case(8, 4 * cg, n=1, hw=(6, 21), pad_mode="edge", upsample=2, zx=0)):
        x, w, bias_q, geo, zx = _data(case)
        m, zy, qmin, qmax = _requant_params(x, w, bias_q, geo, zx)
        expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, zy, qmin, qmax, **geo)
        for parallel in (False, True):
            got = qc.conv2d(x, w, bias_q, m, zx, zy, qmin, qmax, **geo, isa=isa,
                            parallel=parallel, method="kdot")
            np.testing.assert_array_equal(got, expected, err_msg=f"parallel={parallel}")


def test_kdot_packing_layout():
    w = RNG.integers(-128, 128, (7, 5, 3, 4)).astype(np.int8)
    wr, wt = qc.pack_qu8_weights_kdot(w, 2)
    assert wr.shape == (3, 2, 2, 64) and wt.shape == (3, 4, 1, 2, 64)
    for co, ci, kh, kw in [(6, 4, 2, 3), (0, 0, 0, 0), (4, 2, 1, 2)]:
        g, c = divmod(co, 4)
        k = kw * 5 + ci
        s, e = divmod(k, 16)
        assert wr[kh, s, g, 16 * c + e] == w[co, ci, kh, kw]
        assert wt[kh, kw, 0, g, 16 * c + ci] == w[co, ci, kh, kw]
    assert not wr[:, 1, :, 4:16].any() and not wt[..., 1, 48:].any()   # run 20..31, co 7


def test_packing_layouts():
    """pack_qu8_weights / the run layout hold w at the documented positions, zero-padded."""
    w = RNG.integers(-128, 128, (20, 6, 3, 2)).astype(np.int8)
    wp = qc.pack_qu8_weights(w, 16, group=2)        # cog 10, cig 6 -> NB 1, QT 2
    assert wp.shape == (2, 3, 2, 2, 16, 4) and wp.dtype == np.int8
    for g, co, ci, kh, kw in [(0, 3, 5, 2, 1), (1, 9, 0, 0, 0), (1, 0, 4, 1, 1)]:
        assert wp[g, kh, kw, ci // 4, co, ci % 4] == w[g * 10 + co, ci, kh, kw]
    assert not wp[:, :, :, 1, :, 2:].any() and not wp[:, :, :, :, 10:].any()
    w1 = RNG.integers(-128, 128, (5, 3, 9, 9)).astype(np.int8)
    wr = qc.pack_qu8_weights_run(w1, 16)
    assert wr.shape == (1, 9, 7, 16, 4)
    for co, ci, kh, kw in [(4, 2, 8, 8), (0, 0, 3, 5), (2, 1, 0, 4)]:
        k = kw * 3 + ci
        assert wr[0, kh, k // 4, co, k % 4] == w1[co, ci, kh, kw]
    assert not wr[0, :, 6, :, 3].any()
    w4 = RNG.integers(-128, 128, (5, 8, 3, 3)).astype(np.int8)
    wp4 = qc.pack_qu8_weights(w4, 16)
    np.testing.assert_array_equal(qc.qu8_run_weights(w4, wp4, 16).reshape(-1), wp4.reshape(-1))
    np.testing.assert_array_equal(qc.qu8_run_weights(w4, wp4, 16),
                                  qc.pack_qu8_weights_run(w4, 16))


def test_bias_folds_zero_point_and_rounds():
    w = np.array([[[[1, -2]]], [[[127, -128]]]], np.int8)          # [2, 1, 1, 2]
    q = qc.qu8_conv_bias(np.array([0.25, -1.0]), w, 0.5, np.array([1.0, 0.4]), 10)
    # round(0.25 / 0.5) = round(0.5) = 0 (half to even); round(-1 / 0.2) = -5
    np.testing.assert_array_equal(q, [0 - 10 * (-1), -5 - 10 * (-1)])
    assert q.dtype == np.int32
    np.testing.assert_array_equal(qc.qu8_conv_bias(None, w, 0.5, 1.0, 3), [3, 3])


def test_host_isa_and_kernel_ids(monkeypatch):
    monkeypatch.setattr(config, "has_avx512_vnni", lambda features=None: False)
    monkeypatch.setattr(config, "has_dotprod", lambda features=None: False)
    assert qc.host_isa() == "portable"
    kid, _ = qc.select_qu8_conv(12, 32, "requant", False)
    assert kid == "qu8_conv2d_igemm_12x32c4_portable_requant"
    monkeypatch.setattr(config, "has_dotprod", lambda features=None: True)
    assert qc.select_qu8_conv(16, 16, "fp32out", True)[0] == \
        "qu8_conv2d_igemm_16x16c4_sdot_fp32out"
    monkeypatch.setattr(config, "has_avx512_vnni", lambda features=None: True)
    assert qc.host_isa() == "vnni"
    assert qc.plan_kernel_id(6, 64, "requant") == "qu8_conv2d_igemm_6x64c4_requant"
    with pytest.raises(ValueError):
        qc.igemm_kernel(12, 24, "vnni", "requant", False)


def test_short_zero_row_is_refused():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    w = np.ones((16, 3, 3, 3), np.int8)
    rowmap, colmap = qc.conv_tables(x.shape, (3, 3), pads=(1, 1, 1, 1))
    wp = qc.pack_qu8_weights(w, 16)
    out = np.empty((1, 4, 4, 16), np.uint8)
    ro = qc.readonly
    fn = qc.igemm_kernel(16, 16, "portable", "requant", False)
    with pytest.raises(ValueError, match="zero-point row"):
        fn(ro(x), ro(np.zeros(2, np.uint8)), ro(rowmap), ro(colmap), ro(wp),
           ro(qc.qu8_run_weights(w, wp, 16)), ro(np.zeros(16, np.int32)),
           ro(np.ones(16, np.float32)), out, 1, 0, 0, 255, 0, np.float32(0), np.float32(0))


# --- depthwise ---------------------------------------------------------------------------
DW_CASES = [_case(c, c, group=c, zx=ZX[i % len(ZX)]) for i, c in enumerate((3, 13, 16, 64, 65,
                                                                               130))] + [
    _case(24, 24, group=24, strides=(2, 2), pads=(1, 0, 1, 0), zx=255),
    _case(16, 16, group=16, k=5, dilations=(2, 2), hw=(11, 9), pad_mode="reflect"),
    _case(32, 32, group=32, upsample=2, pad_mode="edge", hw=(4, 5), n=2, zx=0),
    _case(80, 80, group=80, k=9, hw=(6, 7), pads=(4, 4, 4, 4), zx=201),
    _case(3, 6, group=3), _case(8, 24, group=8, strides=(2, 2), n=2, zx=255)]   # multipliers


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("case", DW_CASES, ids=_ids(DW_CASES))
def test_dwconv2d_bit_exact(case, parallel):
    x, w, bias_q, geo, zx = _data(case)
    m, zy, qmin, qmax = _requant_params(x, w, bias_q, geo, zx, saturate=True)
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, zy, qmin, qmax, **geo)
    got = qdw.dwconv2d(x, w, bias_q, m, zx, zy, qmin, qmax, **geo, parallel=parallel)
    np.testing.assert_array_equal(got, expected)
    m32 = qc.qu8_conv_multiplier(0.05, RNG.uniform(0.002, 0.02, case["co"]))
    expected = rq.qu8_conv2d_reference(x, w, bias_q, m32, zx, 0, 0, 0, **geo,
                                       out_mode="fp32out", act=Activation.RELU)
    got = qdw.dwconv2d(x, w, bias_q, m32, zx, **geo, epilogue="fp32out", act=Activation.RELU,
                       parallel=parallel)
    np.testing.assert_array_equal(got, expected)
