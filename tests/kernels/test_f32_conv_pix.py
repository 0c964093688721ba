"""The pixel-lane conv kernel (kernels/f32_conv2d_pix.py): its compile-time tap folding, the
kernel against kernels/reference.py over a table of edge shapes, layouts, upsampling and
epilogues, and its lowering + binding (planar layouts included)."""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import reference as ref
from kernels import table
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.ops import Activation
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS
from mobile_engine.runtime.validate import BindError
from tests.tolerances import assert_f32_close

RNG = np.random.default_rng(11)
A = Activation
# (n, h, w, c, co, k, strides, dilations, pads, pad_mode, upsample, act, residual, in_nchw,
#  out_nchw, parallel)
# NOTE: few distinct (Co, phases, parallel) triples: each compiles a kernel (~10 s on a busy
# machine); the slow table test covers every Co.
CASES = [
    (1, 12, 70, 4, 3, 9, (1, 1), (1, 1), (4, 4, 4, 4), "reflect", 1, (A.SIGMOID, ()), False,
     True, True, False),                                           # multistyle26 expand.2
    (2, 5, 37, 8, 4, 3, (1, 1), (1, 1), (1, 1, 1, 1), "reflect", 2, (A.RELU, ()), False,
     True, True, True),                                            # expand.1, two images
    (1, 6, 21, 32, 8, 3, (1, 1), (1, 1), (1, 1, 1, 1), "reflect", 2, (A.NONE, ()), True,
     False, True, False),                                          # expand.0: NHWC in
    (1, 9, 131, 4, 3, 9, (1, 1), (1, 1), (4, 4, 4, 4), "reflect", 1, (A.RELU, ()), True,
     False, False, True),                                          # NHWC in and out, 3 tiles
    (2, 7, 11, 13, 3, 3, (2, 1), (1, 2), (1, 2, 0, 2), "constant", 1,
     (A.LEAKY_RELU, (0.1,)), False, False, False, False),          # row stride, col dilation
    (1, 3, 37, 65, 5, 1, (1, 1), (1, 1), (0, 0, 0, 0), "constant", 1,
     (A.CLAMP, (-0.5, 0.75)), True, True, False, False),           # 1x1, wide reduction, 48 px
    (1, 5, 9, 7, 8, 3, (1, 1), (1, 1), (1, 1, 1, 1), "constant", 2, (A.TANH, ()), False,
     False, True, False),                                          # zero-padded upsample
    (1, 4, 6, 3, 3, 3, (1, 1), (1, 1), (2, 0, 1, 3), "edge", 3, (A.HARD_SWISH, ()), True,
     True, False, False),                                          # 3x upsample: plain taps
    (1, 8, 17, 24, 3, 5, (1, 1), (1, 1), (2, 1, 2, 3), "edge", 1, (A.HARD_SIGMOID, (0.2, 0.5)),
     False, False, False, False),
    (1, 5, 4, 8, 4, 3, (1, 1), (1, 1), (1, 1, 1, 1), "reflect", 2, (A.NONE, ()), False,
     False, False, False),                                         # narrower than one tile
]


def _ids():
    return [f"{n}x{h}x{w}x{c}-{co}-k{k}-s{s}-d{d}-p{p}-{m}-up{u}-{A(act[0]).name}"
            f"{'-res' if res else ''}-{'nchw' if i else 'nhwc'}-{'nchw' if o else 'nhwc'}"
            f"{'-par' if par else ''}"
            for n, h, w, c, co, k, s, d, p, m, u, act, res, i, o, par in CASES]


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_pix_conv2d(case):
    n, h, w, c, co, k, strides, dil, pads, mode, up, (act, params), res, in_nchw, out_nchw, \
        par = case
    x = _rand(n, h, w, c)
    wt = _rand(co, c, k, k, scale=1 / np.sqrt(c * k * k))
    bias = _rand(co)
    geo = dict(strides=strides, dilations=dil, pads=pads, pad_mode=mode, upsample=up)
    plain = ref.conv2d(x, wt, bias, **geo)
    r = _rand(*plain.shape) if res else None
    expected = ref.conv2d(x, wt, bias, r, **geo, activation_kind=act, act_params=params)
    got = pix.conv2d(_nchw(x) if in_nchw else x, wt, bias,
                     None if r is None else (_nchw(r) if out_nchw else r), **geo,
                     activation_kind=act, act_params=params, in_nchw=in_nchw, out_nchw=out_nchw,
                     parallel=par)
    if out_nchw:
        got = got.transpose(0, 2, 3, 1)
    # merged taps add up to 4 weights first: a few more roundings than c * k * k terms
    assert_f32_close(got, expected, 2 * c * k * k, "pix conv2d")


def test_upsampled_3x3_folds_to_2x2_per_phase():
    """Nearest 2x + reflect pad 1 + 3x3: 2 row taps per output row, 2 column phases of 2 taps
    (2.25x fewer MACs), and the buffer's borders are edge padding of the low-res row."""
    rowmap, colmap = igemm.conv_tables((1, 6, 10, 8), (3, 3), pads=(1, 1, 1, 1),
                                       pad_mode="reflect", upsample=2)
    plan = pix.PixPlan(_rand(4, 8, 3, 3), rowmap, colmap, upsample=2)
    assert plan.phases == 2 and plan.coloff.shape == (2, 2)
    assert plan.rowtap.shape[1] == 2 and plan.kernel == "f32_conv2d_pixup2_32x4_minmax"
    src = plan.bufsrc[:plan.coloff.max() + 10]
    np.testing.assert_array_equal(src, np.clip(np.arange(len(src)) - 1, 0, 9))


def test_row_plan_merges_reflected_taps():
    rowmap = igemm.conv_tables((1, 9, 9, 1), (9, 9), pads=(4, 4, 4, 4), pad_mode="reflect")[0]
    rowtap, rowsel, sets, nslot = pix.row_plan(rowmap)
    # output row 0 reads rows 4 3 2 1 0 1 2 3 4: five distinct rows, kh {0, 8} merged
    assert sorted(rowtap[0][rowtap[0] >= 0]) == [0, 1, 2, 3, 4]
    assert (0, 8) in sets and nslot == 9
    for oh in range(rowmap.shape[0]):                # every kh lands exactly once
        khs = sorted(kh for r, s in zip(rowtap[oh], rowsel[oh]) if r >= 0 for kh in sets[s])
        assert khs == list(range(9))


def test_column_plan_refuses_column_stride():
    colmap = igemm.conv_tables((1, 5, 9, 1), (3, 3), strides=(1, 2), pads=(1, 1, 1, 1))[1]
    assert pix.column_plan(colmap, 1, 1, 64) is None
    assert not pix.applicable(4, 1, 2) and not pix.applicable(9, 1, 1)


@pytest.mark.slow
def test_kernel_table():
    """Every kernel of the table (each Co, both phase counts) on a shape with tails."""
    row = next(r for r in table.ROWS if r.family == "f32_conv2d_pix")
    for kernel, fields in row.ids.items():
        entry, fixed, reference, co = row.entry, row.options(fields), row.reference, fields["co"]
        x, w, bias = _rand(2, 5, 23, 6), _rand(co, 6, 3, 3, scale=0.3), _rand(co)
        geo = dict(pads=(1, 1, 1, 1), pad_mode="reflect", **fixed)
        got = entry(x, w, bias, **geo)
        assert_f32_close(got, reference()(x, w, bias, **geo), 54, kernel)


# --- lowering + binding ------------------------------------------------------------------------
def _lowered(x_shape, w, bias, in_layout, out_layout, **attrs):
    b = GraphBuilder("conv")
    y = b.node(Op.CONV2D, b.input("x", x_shape), b.const(w), b.const(bias), name="conv",
               in_layout=in_layout, out_layout=out_layout, **attrs)
    g = b.build(y)
    (step,) = lower_node(g.nodes[0], g)
    return step, g.tensors[y].shape


def _bind(step, x, out):
    params = json.loads(json.dumps(step.params))
    weights = {}
    for k, v in step.weights.items():
        v = np.ascontiguousarray(v).copy()
        v.flags.writeable = False
        weights[k] = v
    return BINDERS[step.kernel](params, weights, [x], [out])


@pytest.mark.parametrize("in_layout,out_layout", [("nchw", "nchw"), ("nhwc", "nchw"),
                                                  ("nhwc", "nhwc")])
def test_lowering_and_binding(in_layout, out_layout):
    x, w, bias = _rand(2, 5, 37, 8), _rand(4, 8, 3, 3, scale=0.2), _rand(4)
    attrs = dict(pads=(1, 1, 1, 1), pad_mode="reflect", upsample=2, activation=A.RELU)
    xin = _nchw(x) if in_layout == "nchw" else x
    step, out_shape = _lowered(xin.shape, w, bias, in_layout, out_layout, **attrs)
    assert step.kernel == "f32_conv2d_pixup2_32x4_minmax"
    assert step.flops == 2 * 2 * 10 * 74 * 4 * 8 * 9
    out = np.full(out_shape, np.nan, np.float32)
    fn, args = _bind(step, xin, out)
    fn(*args)
    expected = ref.conv2d(x, w, bias, pads=(1, 1, 1, 1), pad_mode="reflect", upsample=2,
                          activation_kind=A.RELU)
    got = out.transpose(0, 2, 3, 1) if out_layout == "nchw" else out
    assert_f32_close(got, expected, 72, step.kernel)


# NOTE: Co 3 and 5 reuse kernels CASES compiles; the others compile one each (slow)
@pytest.mark.parametrize("co", [3, 5] + [pytest.param(c, marks=pytest.mark.slow)
                                         for c in (1, 2, 4, 6, 7, 8)])
def test_every_tile_width_binds_and_runs(co):
    """Co sets the tile width (16 to 64 pixels); the row buffer must cover the last tile of any
    of them: Co 5 (48-pixel tiles) at 100 columns needs 144 (the plan was refused at load)."""
    x, w, bias = _rand(1, 3, 100, 4), _rand(co, 4, 3, 3, scale=0.3), _rand(co)
    step, out_shape = _lowered(x.shape, w, bias, "nhwc", "nhwc", pads=(1, 1, 1, 1),
                               pad_mode="constant", upsample=1, activation=A.NONE)
    assert step.kernel.startswith("f32_conv2d_pix_")
    out = np.full(out_shape, np.nan, np.float32)
    fn, args = _bind(step, x, out)
    fn(*args)
    assert_f32_close(out, ref.conv2d(x, w, bias, pads=(1, 1, 1, 1)), 36, step.kernel)


@pytest.mark.parametrize("isa, feats", [("x86-64", {"+avx512f", "+avx"}),
                                         ("x86-64", {"-avx512f", "+avx"}), ("aarch64", set())])
def test_tile_width_fits_the_register_file(monkeypatch, isa, feats):
    """AVX-512 runs the ids' tiles; NEON's 32 x 4 lanes and AVX2's 16 x 8 hold one 16-pixel
    unit (Co 3: 3 accumulator vectors + 1 input vector = 16 q or 8 ymm registers) but not 2."""
    from kernels import config
    monkeypatch.setattr(config, "is_aarch64", lambda: isa == "aarch64")
    monkeypatch.setattr(config, "compile_features", lambda: feats)
    for co in range(1, pix.MAX_CO + 1):
        for phases in (1, 2):
            want = pix.tile(co, phases) if "+avx512f" in feats else 1
            if "+avx512f" not in feats and (co, phases) == (1, 1):
                want = 2    # 2 vectors a unit: 8 q, (32 - 8 - 2) // 8; 4 ymm, (16 - 4 - 2) // 4
            assert pix.machine_tile(co, phases) == want, (co, phases)


def test_binder_rejects_inconsistent_blobs():
    x, w, bias = _rand(1, 6, 9, 4), _rand(3, 4, 3, 3), _rand(3)
    step, out_shape = _lowered(x.shape, w, bias, "nhwc", "nhwc", pads=(1, 1, 1, 1))
    out = np.zeros(out_shape, np.float32)
    broken = type(step)(**{**step.__dict__, "weights": {**step.weights,
                                                        "w": step.weights["w"][..., :2]}})
    with pytest.raises(BindError, match="weight 'w'"):       # Session names the step
        _bind(broken, x, out)
    # the row ring and column plan come from the geometry params
    for key, bad, why in (("kernel", [5, 5], "do not fit output"),
                          ("strides", [1, 2], "do not fit output"),
                          ("pad_mode", "wrap", "pad_mode"),
                          ("upsample", 0, "upsample")):
        broken = type(step)(**{**step.__dict__, "params": {**step.params, key: bad}})
        with pytest.raises(BindError, match=why):
            _bind(broken, x, out)


def test_planar_layout_needs_the_pix_kernel():
    x_shape = (1, 16, 6, 6)
    with pytest.raises(UnsupportedOperatorError, match="planar layouts"):
        _lowered(x_shape, _rand(16, 16, 3, 3), _rand(16), "nchw", "nchw", pads=(1, 1, 1, 1))
