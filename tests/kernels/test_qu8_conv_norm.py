"""The fused qu8 conv + instance norm (kernels/qu8_conv2d.py ``sums``, kernels/f32_norm_qu8.py
``row_sums``; planning/families/qconv_norm.py) against kernels/reference_q8.py.

The conv output stays bit-exact with the statistics on; the row sums match float64 sums of the
reference output; the fused step's uint8 output is within one step of the float64-statistics
reference (rarely off: float32 coefficients), over a table of edge shapes: output channels with
leftovers across the three tiles (3, 13, 16, 32, 33, 64, 65), 1/3/13/32 input channels, 9x9
and 1x1 kernels, strides, reflect/edge/zero padding, upsampling, batches, groups, both residual
forms, per-image scale/bias and style-computed (u, G) scale/bias."""
import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (kernels.reference imports the engine)
from kernels import config
from kernels import f32_norm_qu8 as knq
from kernels import qu8_conv2d as qc
from kernels import reference_q8 as rq
from kernels import table
from mobile_engine.ir.ops import Activation

RNG = np.random.default_rng(23)
ISA = "vnni" if config.has_avx512_vnni() else "portable"


def _case(c, co, k=3, hw=(7, 11), n=1, strides=(1, 1), pads=None, group=1, pad_mode="reflect",
          upsample=1):
    return dict(n=n, hw=hw, c=c, co=co, k=k, strides=strides,
                pads=(k // 2,) * 4 if pads is None else pads, group=group, pad_mode=pad_mode,
                upsample=upsample)


# NOTE: one compiled signature per (tile, parallel): 16, 32 and 64 lanes serial, 32 parallel
CASES = [
    _case(3, 32, k=9, hw=(13, 14), pads=(4, 4, 4, 4)),                 # multistyle26's first
    _case(32, 32, strides=(2, 2), hw=(9, 13), n=2),                     # batch of 2, stride 2
    _case(32, 33, hw=(6, 30), pad_mode="constant"),                     # a 1-channel block
    _case(13, 13, k=1, pads=(0, 0, 0, 0), pad_mode="constant"),         # 1x1, leftovers only
    _case(1, 3, pad_mode="edge", hw=(5, 4)),
    _case(16, 16, group=2, upsample=2, hw=(4, 5)),                      # groups, upsampling
    _case(8, 64, hw=(3, 17)), _case(8, 65, hw=(1, 1), pad_mode="constant"),   # one pixel
]


def _ids(cases):
    return [f"{c['n']}x{c['hw'][0]}x{c['hw'][1]}x{c['c']}-{c['co']}-k{c['k']}-s{c['strides']}"
            f"-g{c['group']}-{c['pad_mode']}-up{c['upsample']}" for c in cases]


def _data(case):
    x = RNG.integers(0, 256, (case["n"], *case["hw"], case["c"])).astype(np.uint8)
    w = RNG.integers(-128, 128, (case["co"], case["c"] // case["group"], case["k"],
                                 case["k"])).astype(np.int8)
    x[0, 0, 0] = 255                                             # the largest products
    sw = RNG.uniform(0.002, 0.02, case["co"])
    zx = int(RNG.integers(0, 256))
    bias_q = qc.qu8_conv_bias(RNG.standard_normal(case["co"]) * 30, w, 0.05, sw, zx)
    geo = dict(strides=case["strides"], pads=case["pads"], pad_mode=case["pad_mode"],
               upsample=case["upsample"], group=case["group"])
    return x, w, bias_q, qc.qu8_conv_multiplier(0.05, sw), zx, geo


def _close(got, ref):
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.01, (diff.max(), np.mean(diff > 0))


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_conv_statistics_epilogue(case):
    """Output bit-exact with and without ``sums``; sums = float64 row sums of y and y^2."""
    x, w, bias_q, m, zx, geo = _data(case)
    ref = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, 0, 0, 255, out_mode="fp32out", **geo)
    n, oh, ow, co = ref.shape
    sums = np.full(n * oh * 2 * co, np.nan)
    got = qc.conv2d(x, w, bias_q, m, zx, epilogue="fp32out", method="igemm", isa=ISA,
                    parallel=False, sums=sums, **geo)
    np.testing.assert_array_equal(got, ref)
    y = ref.astype(np.float64).reshape(n * oh, ow, co)
    expect = np.stack([y.sum(axis=1), (y * y).sum(axis=1)], axis=1).reshape(-1)
    # float32 sums of (y - y[row, 0]) per tile: ~1e-7 of the row's magnitude
    scale = np.stack([np.abs(y).sum(axis=1), (y * y).sum(axis=1)], axis=1).reshape(-1) + 1e-30
    assert np.all(np.abs(sums - expect) <= 2e-6 * scale), np.max(np.abs(sums - expect) / scale)


@pytest.mark.parametrize("parallel", [False, True])
def test_statistics_parallel_and_refusals(parallel):
    case = _case(32, 32, hw=(12, 40), n=2)
    x, w, bias_q, m, zx, geo = _data(case)
    ref = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, 0, 0, 255, out_mode="fp32out", **geo)
    sums = np.zeros(ref.shape[0] * ref.shape[1] * 2 * ref.shape[3])
    got = qc.conv2d(x, w, bias_q, m, zx, epilogue="fp32out", method="igemm", isa=ISA,
                    parallel=parallel, sums=sums, **geo)
    np.testing.assert_array_equal(got, ref)
    y = ref.astype(np.float64).reshape(-1, ref.shape[2], ref.shape[3])
    np.testing.assert_allclose(sums.reshape(-1, 2, ref.shape[3])[:, 0], y.sum(axis=1),
                               rtol=1e-5, atol=1e-3)
    for bad in (dict(sums=np.zeros(sums.size - 1)),                              # too short
                dict(sums=sums, act=int(Activation.RELU))):                      # activation
        with pytest.raises(ValueError, match="statistics"):
            qc.conv2d(x, w, bias_q, m, zx, epilogue="fp32out", method="igemm", isa=ISA,
                      parallel=parallel, **geo, **bad)


NORMS = [  # (act, act_params, residual, per-image scale/bias, style pairs, qmin, qmax)
    (Activation.RELU, (), False, False, False, 0, 255),
    (Activation.NONE, (), True, False, True, 0, 255),
    (Activation.CLAMP, (-0.5, 2.0), False, True, False, 3, 250),
    (Activation.NONE, (), True, True, False, 10, 255),
]


@pytest.mark.parametrize("norm", NORMS, ids=[f"{a.name.lower()}-res{int(r)}-img{int(i)}-"
                                             f"style{int(s)}" for a, _, r, i, s, *_ in NORMS])
@pytest.mark.parametrize("case", CASES[:4], ids=_ids(CASES[:4]))
def test_fused_conv_norm_against_reference(case, norm):
    act, params, residual, per_image, style, qmin, qmax = norm
    x, w, bias_q, m, zx, geo = _data(case)
    n, co = case["n"], case["co"]
    shape = (n, co) if per_image else (co,)
    scale = RNG.uniform(0.2, 2, shape).astype(np.float32)
    bias = RNG.normal(0, 1, shape).astype(np.float32)
    kw = dict(eps=1e-5, act=int(act), act_params=params, rs=0.013, rz=77, qmin=qmin,
              qmax=qmax, **geo)
    y_shape = rq.qu8_conv2d_reference(x, w, bias_q, m, zx, 0, 0, 255, out_mode="fp32out",
                                      **geo).shape
    r = RNG.integers(0, 256, y_shape).astype(np.uint8) if residual else None
    ref = rq.qu8_conv2d_instnorm_reference(x, w, bias_q, m, zx, scale, bias, 0.021, 120,
                                           residual=r, **kw)
    if style:       # the kernel computes scale = u @ G itself (float64 sums)
        k = 5
        u = RNG.uniform(0, 1, k).astype(np.float32)
        gs = RNG.uniform(0.2, 2, (k, co)).astype(np.float32)
        gb = RNG.normal(0, 1, (k, co)).astype(np.float32)
        scale = (u.astype(np.float64) @ gs).astype(np.float32)
        bias = (u.astype(np.float64) @ gb).astype(np.float32)
        ref = rq.qu8_conv2d_instnorm_reference(x, w, bias_q, m, zx, scale, bias, 0.021, 120,
                                               residual=r, **kw)
        scale, bias = (u, gs), (u, gb)
    got = qc.conv2d_instnorm(x, w, bias_q, m, zx, scale, bias, 0.021, 120, residual=r,
                             isa=ISA, parallel=False, **kw)
    _close(got, ref)


def test_norm_from_row_sums_matches_its_own_statistics():
    """The same norm from the conv's row sums and from its own pass over x (large means)."""
    shape = (2, 5, 9, 24)
    x = (RNG.normal(0, 1, shape) * RNG.uniform(0.01, 30, 24) + RNG.normal(0, 50, 24)) \
        .astype(np.float32)
    rows = x.astype(np.float64).reshape(-1, 9, 24)
    sums = np.stack([rows.sum(axis=1), (rows * rows).sum(axis=1)], axis=1).reshape(-1)
    scale, bias = np.ones(24, np.float32), np.zeros(24, np.float32)
    outs = []
    for row_sums in (None, sums):
        out = np.empty(shape, np.uint8)
        fn, args = knq.instance_norm_qu8_call(x, scale, bias, out, 1e-5, 0, (), 0.02, 128,
                                              row_sums=row_sums, parallel=False)
        fn(*args)
        outs.append(out)
    _close(outs[1], outs[0])
    _close(outs[1], knq._reference(x, scale, bias, 0.02, 128))
    with pytest.raises(ValueError, match="row sums"):
        knq.instance_norm_qu8_call(x, scale, bias, np.empty(shape, np.uint8), 1e-5, 0, (),
                                   0.02, 128, row_sums=sums[:-1])
    with pytest.raises(ValueError, match="row sums"):
        knq.instance_norm_qu8_call(x, scale, bias, np.empty(shape, np.uint8), 1e-5,
                                   int(Activation.SIGMOID), (), 0.02, 128, row_sums=sums)


def test_kernel_table_lists_the_fused_steps():
    for nr, mr in qc.TILES.items():
        for add in (False, True):
            row = table.row_of(qc.instnorm_kernel_id(mr, nr, "_add" if add else ""))
            entry, reference = row.entry, row.reference
            assert entry is qc.conv2d_instnorm
            assert reference() is rq.qu8_conv2d_instnorm_reference


@pytest.mark.skipif(not config.has_avx512_vnni(), reason="CPU lacks AVX-512 VNNI")
def test_statistics_variant_keeps_the_register_tile():
    """The statistics epilogue must not push the 10x32 accumulator tile out of registers: the
    hottest loop stays zmm vpdpbusd without spills (tests/kernels/test_qu8_asm.py's checks,
    on a fresh compile of the variant with ``sums``)."""
    import re
    from kernels.bench_qu8 import prepare
    from tests.kernels.asm import assert_no_gathers, assert_no_spills, hottest_loop
    dot = re.compile(r"^\s*vpdpbusd\s+(.*)$", re.M)
    mr, nr = 10, 32
    _, args, _, _, _ = prepare(5, 40, 32, nr, 3, pad_mode="constant", tile=(mr, nr), isa="vnni",
                               epilogue="fp32out", stats=True)
    fn = qc.igemm_kernel.__wrapped__(mr, nr, "vnni", "fp32out", False, cache=False)
    fn(*args)
    body = hottest_loop(fn.inspect_asm(fn.signatures[0]), dot)
    dots = dot.findall(body)
    assert len(dots) >= mr * nr // qc.VL and all(d.count("%zmm") == 3 for d in dots), dots
    assert_no_gathers(body)
    assert_no_spills(body)
