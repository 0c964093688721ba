"""fp32 convolution kernels (kernels/f32_conv2d.py, f32_dwconv2d.py, f32_conv_transpose2d.py) and
their indirection tables, against kernels/reference.py: directly (kernel functions walked over
tables of edge shapes) and through lowering + binding of GraphBuilder nodes."""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import config
from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv2d_winograd as wino
from kernels import f32_conv_transpose2d as convt
from kernels import f32_dwconv2d as dw
from kernels import reference as ref
from kernels import table
from kernels.indirection import conv_axis_map, conv_transpose_axis_map
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.ops import Activation
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS
from mobile_engine.runtime.validate import BindError
from tests.tolerances import assert_f32_close

RNG = np.random.default_rng(7)
CHANNELS = [1, 3, 4, 8, 13, 24, 32, 63, 64, 65]
ACTS = [(Activation.NONE, ()), (Activation.RELU, ()), (Activation.CLAMP, (-0.5, 0.75)),
        (Activation.LEAKY_RELU, (0.1,)), (Activation.SIGMOID, ()), (Activation.TANH, ()),
        (Activation.HARD_SIGMOID, (0.2, 0.5)), (Activation.HARD_SWISH, ())]


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _case(c, co, k=3, hw=(7, 11), n=1, strides=(1, 1), dilations=(1, 1), pads=None, group=1,
          pad_mode="constant", upsample=1, act=(Activation.NONE, ()), residual=False):
    if pads is None:
        pads = tuple(dilations[i % 2] * (k // 2) for i in range(4))
    return dict(n=n, hw=hw, c=c, co=co, k=k, strides=strides, dilations=dilations, pads=pads,
                group=group, pad_mode=pad_mode, upsample=upsample, act=act, residual=residual)


CONV_CASES = (
    [_case(c, co) for c, co in zip(CHANNELS, CHANNELS[3:] + CHANNELS[:3])]      # channel sweep
    + [_case(c, c, k=1, pads=(0, 0, 0, 0)) for c in (3, 64, 65)]
    + [_case(3, 32, k=9, hw=(13, 14), pad_mode="reflect", pads=(4, 4, 4, 4)),    # first layer
       _case(4, 3, k=9, hw=(12, 10), pad_mode="reflect", pads=(4, 4, 4, 4)),     # last layer
       _case(32, 32, strides=(2, 2), pad_mode="reflect"),
       _case(13, 24, strides=(2, 1), pads=(0, 2, 1, 1)),
       _case(8, 13, dilations=(2, 2), hw=(9, 9)),
       _case(24, 8, pads=(2, 0, 1, 3)),
       _case(32, 8, pad_mode="reflect", upsample=2, hw=(5, 6)),
       _case(8, 4, pad_mode="edge", upsample=2, hw=(5, 7), strides=(2, 1)),
       _case(13, 13, pad_mode="edge", pads=(2, 1, 0, 3)),
       _case(4, 24, n=2, strides=(2, 2), pads=(1, 0, 0, 1)),
       _case(8, 16, group=2), _case(24, 24, group=3, strides=(2, 2)),
       _case(64, 96, group=4, k=1, pads=(0, 0, 0, 0))]
    + [_case(24, 24, act=a, residual=True, n=2) for a in ACTS]
)
KDOT_CASES = (  # few output channels: lanes over (channel, 4 reduction elements)
    [_case(c, co) for c, co in zip([1, 3, 4, 5, 8, 13, 24, 65], [3, 4, 1, 8, 5, 2, 7, 6])]
    + [_case(3, 8, k=9, hw=(12, 21), pad_mode="reflect", pads=(4, 4, 4, 4)),
       _case(5, 3, k=5, hw=(9, 19), pads=(2, 1, 0, 3)),
       _case(8, 4, pad_mode="reflect", upsample=2, hw=(5, 9), n=2),
       _case(7, 5, strides=(2, 2), dilations=(2, 2), hw=(11, 13), pad_mode="edge"),
       _case(12, 8, k=1, pads=(0, 0, 0, 0), hw=(3, 37), act=ACTS[6], residual=True)]
    + [_case(6, 3, hw=(5, 21), act=a, residual=True) for a in ACTS[1::2]]
)
DW_CASES = [_case(c, c, group=c) for c in (3, 13, 24, 64, 65, 130)] + [
    _case(24, 24, group=24, strides=(2, 2), pads=(1, 0, 1, 0)),
    _case(16, 16, group=16, k=5, dilations=(2, 2), hw=(11, 9), pad_mode="reflect"),
    _case(32, 32, group=32, upsample=2, pad_mode="edge", hw=(4, 5), act=ACTS[7], residual=True),
    _case(3, 6, group=3), _case(8, 24, group=8, strides=(2, 2), n=2)]              # multipliers
TRANSPOSE_CASES = [  # (n, hw, ci, cog, k, strides, dilations, pads, group, output_padding)
    (1, (7, 11), 32, 32, 3, (2, 2), (1, 1), (1, 1, 1, 1), 1, (1, 1)),
    (2, (4, 5), 8, 13, 4, (2, 2), (1, 1), (0, 1, 2, 1), 1, (0, 0)),
    (1, (5, 5), 8, 6, 3, (3, 3), (2, 2), (2, 2, 2, 2), 2, (2, 1)),
    (1, (5, 6), 65, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1, (0, 0)),
    (1, (6, 4), 4, 64, 2, (2, 1), (1, 1), (0, 0, 0, 0), 4, (1, 0)),
]


def _ids(cases):
    return [f"{c['n']}x{c['hw'][0]}x{c['hw'][1]}x{c['c']}-{c['co']}-k{c['k']}-s{c['strides']}"
            f"-d{c['dilations']}-p{c['pads']}-g{c['group']}-{c['pad_mode']}-up{c['upsample']}"
            f"-{Activation(c['act'][0]).name}{'-res' if c['residual'] else ''}" for c in cases]


def _data(case):
    x = _rand(case["n"], *case["hw"], case["c"])
    w = _rand(case["co"], case["c"] // case["group"], case["k"], case["k"],
              scale=1 / np.sqrt(case["c"] // case["group"] * case["k"] ** 2))
    bias = _rand(case["co"])
    geo = dict(strides=case["strides"], dilations=case["dilations"], pads=case["pads"],
               group=case["group"], pad_mode=case["pad_mode"], upsample=case["upsample"])
    expected_plain = ref.conv2d(x, w, bias, **geo)
    res = _rand(*expected_plain.shape) if case["residual"] else None
    kind, params = case["act"]
    expected = ref.conv2d(x, w, bias, res, **geo, activation_kind=kind, act_params=params)
    return x, w, bias, res, geo, expected, case["c"] // case["group"] * case["k"] ** 2


# --- indirection tables ------------------------------------------------------------------
@pytest.mark.parametrize("size,k,stride,dil,p0,p1,mode,up", [
    (7, 3, 1, 1, 1, 1, "constant", 1), (11, 9, 1, 1, 4, 4, "reflect", 1),
    (6, 3, 2, 1, 0, 1, "edge", 2), (5, 3, 1, 2, 3, 1, "reflect", 2), (4, 1, 2, 1, 0, 0, "constant", 1),
    (3, 5, 1, 1, 4, 4, "edge", 1), (5, 3, 3, 2, 2, 0, "constant", 3)])
def test_conv_axis_map_matches_pad_and_repeat(size, k, stride, dil, p0, p1, mode, up):
    m = conv_axis_map(size, k, stride, dil, p0, p1, mode, up)
    # rows of an NHWC array hold their own index + 1 (so zero padding reads 0)
    x = np.arange(1, size + 1, dtype=np.float32).reshape(1, size, 1, 1)
    padded = ref.pad_nhwc(x.repeat(up, axis=1), (p0, 0, p1, 0), mode)[0, :, 0, 0]
    expected = np.array([[padded[o * stride + t * dil] for t in range(k)]
                         for o in range(m.shape[0])]) - 1
    assert m.dtype == np.int32 and m.flags.c_contiguous
    np.testing.assert_array_equal(m, expected)
    assert m.shape[0] == (size * up + p0 + p1 - dil * (k - 1) - 1) // stride + 1


@pytest.mark.parametrize("size,k,stride,dil,p0,p1,op", [
    (5, 3, 2, 1, 1, 1, 1), (4, 4, 2, 1, 0, 2, 0), (5, 3, 3, 2, 2, 2, 2), (3, 1, 1, 1, 0, 0, 0)])
def test_conv_transpose_axis_map_lists_every_contribution(size, k, stride, dil, p0, p1, op):
    out = stride * (size - 1) + op + dil * (k - 1) + 1 - p0 - p1
    m = conv_transpose_axis_map(size, out, k, stride, dil, p0)
    expected = np.full((out, k), -1)
    for i in range(size):            # scatter form: input i, tap t lands on i*s + t*d - p0
        for t in range(k):
            o = i * stride + t * dil - p0
            if 0 <= o < out:
                expected[o, t] = i
    np.testing.assert_array_equal(m, expected)


# --- kernels called directly -------------------------------------------------------------
def _methods(case):
    return ["igemm", "kdot"] if igemm.use_kdot(case["co"], case["group"]) else ["igemm"]


CONV_RUNS = [(case, method) for case in CONV_CASES + KDOT_CASES for method in _methods(case)]


@pytest.mark.parametrize("case,method", CONV_RUNS,
                         ids=[f"{m}-{i}" for m, i in zip([m for _, m in CONV_RUNS],
                                                         _ids([c for c, _ in CONV_RUNS]))])
def test_conv2d(case, method):
    x, w, bias, res, geo, expected, red = _data(case)
    kind, params = case["act"]
    got = igemm.conv2d(x, w, bias, res, **geo, activation_kind=kind, act_params=params,
                       method=method)
    assert_f32_close(got, expected, red, f"{method} conv2d")


TABLE_GRAMMARS = ("f32_conv2d_igemm_{mr}x{nr}_minmax", "f32_conv2d_kdot4_{mr}x{lanes}_minmax",
                  "f32_dwconv2d_minmax", "f32_conv_transpose2d_igemm_{mr}x{nr}_minmax")


@pytest.mark.parametrize("grammar", TABLE_GRAMMARS)
def test_kernel_table(grammar):
    """Every kernel of the table's conv rows on two shapes with leftovers in every dimension."""
    row = next(r for r in table.ROWS if r.grammar == grammar)
    module = {"f32_dwconv2d": dw, "f32_conv_transpose2d": convt}.get(row.family, igemm)
    for kernel, fields in row.ids.items():
        entry, fixed, reference = row.entry, row.options(fields), row.reference
        for c, co in ((5, 7), (13, 65)):
            if module is dw:
                c = co
            elif "lanes" in fields:
                co = fields["lanes"] - 1                      # lanes of the tile, minus 1
            x = _rand(2, 5, 7, c)
            if module is convt:
                w = _rand(c, co, 3, 3, scale=0.3)
                geo = dict(strides=(2, 2), pads=(1, 0, 0, 1), output_padding=(1, 0))
            else:
                w = _rand(co, 1 if module is dw else c, 3, 3, scale=0.3)
                geo = dict(strides=(1, 2), pads=(1, 0, 2, 1), pad_mode="reflect")
            bias = _rand(co)
            expected = reference()(x, w, bias, **geo, group=c if module is dw else 1)
            got = entry(x, w, bias, **geo, **fixed)
            assert_f32_close(got, expected, c * 9, kernel)


@pytest.mark.parametrize("tile", [(mr, nr) for nr, mr in igemm.TILES.items()])
@pytest.mark.parametrize("parallel", [False, True])
def test_igemm_every_tile(tile, parallel):
    """Each tile on a shape with partial channel blocks, border and tail tiles, two batches."""
    case = _case(13, 65, n=2, hw=(9, 21), pads=(1, 2, 0, 1), residual=True, act=ACTS[3])
    x, w, bias, res, geo, expected, red = _data(case)
    got = igemm.conv2d(x, w, bias, res, **geo, activation_kind=case["act"][0],
                       act_params=case["act"][1], tile=tile, parallel=parallel)
    assert_f32_close(got, expected, red, f"igemm {tile} parallel={parallel}")


def test_row_splits_for_threads_and_for_the_cache():
    """Parts give every thread a few tasks, keep a part's outputs within PART_BYTES (the
    activation re-reads them), are whole tiles, and one row of a few pixels stays whole."""
    assert igemm.row_splits(1, 3136, 256, 4, 2) == -(-3136 * 256 * 4 // igemm.PART_BYTES)
    assert igemm.row_splits(1, 169, 16, 8, 2) == 2 * igemm.TASKS_PER_THREAD
    assert igemm.row_splits(64, 64, 32, 8, 2) == 1
    assert igemm.row_splits(1, 169, 16, 8, 1) == 1
    assert igemm.row_splits(1, 5, 16, 8, 2) == 1


@pytest.mark.parametrize("splits", [2, 3, 7])
@pytest.mark.parametrize("parallel", [False, True])
def test_igemm_row_splits(splits, parallel):
    """Rows cut into column parts (whole tiles; the last parts empty when there are more parts
    than tiles): every output once, the activation once, tails and a residual."""
    case = _case(13, 40, n=2, hw=(5, 37), residual=True, act=ACTS[3])
    x, w, bias, res, geo, expected, red = _data(case)
    mr, nr = igemm.TILES[16], 16
    rowmap, colmap = igemm.conv_tables(x.shape, (3, 3), pads=case["pads"])
    out = np.full(expected.shape, np.nan, np.float32)
    p0, p1 = igemm.activation_params(*case["act"])
    ro = igemm.readonly
    igemm.igemm_kernel(mr, nr, parallel)(
        ro(x), ro(rowmap), ro(colmap), ro(igemm.pack_weights(w, nr)), ro(bias), ro(res), out, 1,
        1, int(case["act"][0]), np.float32(p0), np.float32(p1), ro(igemm.NO_SLOPES), True,
        igemm.NO_SUMS, False, False, splits)
    assert_f32_close(out, expected, red, f"igemm splits={splits}")


@pytest.mark.parametrize("splits", [2, 5, 40])
def test_dwconv2d_row_splits(splits):
    """Rows cut into column parts (more parts than columns: the last parts empty): every output
    once, the activation once."""
    case = _case(24, 24, k=5, group=24, n=2, hw=(3, 37), residual=True, act=ACTS[3])
    x, w, bias, res, geo, expected, red = _data(case)
    rowmap, colmap = igemm.conv_tables(x.shape, (5, 5), pads=case["pads"])
    out = np.full(expected.shape, np.nan, np.float32)
    p0, p1 = igemm.activation_params(*case["act"])
    ro = igemm.readonly
    dw.dwconv_kernel(True)(ro(x), ro(rowmap), ro(colmap), ro(dw.pack_weights(w)), ro(bias),
                           ro(res), out, 1, int(case["act"][0]), np.float32(p0), np.float32(p1),
                           True, splits)
    assert_f32_close(out, expected, red, f"dwconv splits={splits}")


@pytest.mark.parametrize("case", DW_CASES, ids=_ids(DW_CASES))
@pytest.mark.parametrize("parallel", [False, True])
def test_dwconv2d(case, parallel):
    x, w, bias, res, geo, expected, red = _data(case)
    kind, params = case["act"]
    got = dw.dwconv2d(x, w, bias, res, **geo, activation_kind=kind, act_params=params,
                      parallel=parallel)
    assert_f32_close(got, expected, red, "dwconv2d")


@pytest.mark.parametrize("n,hw,ci,cog,k,strides,dilations,pads,group,opad", TRANSPOSE_CASES)
@pytest.mark.parametrize("parallel", [False, True])
def test_conv_transpose2d(n, hw, ci, cog, k, strides, dilations, pads, group, opad, parallel):
    x = _rand(n, *hw, ci)
    w = _rand(ci, cog, k, k, scale=1 / np.sqrt(ci // group * k * k))
    bias = _rand(cog * group)
    geo = dict(strides=strides, dilations=dilations, pads=pads, group=group,
               output_padding=opad, activation_kind=Activation.TANH)
    expected = ref.conv_transpose2d(x, w, bias, **geo)
    got = convt.conv_transpose2d(x, w, bias, **geo, parallel=parallel)
    assert_f32_close(got, expected, ci // group * k * k, "conv_transpose2d")


@pytest.mark.parametrize("isa, feats, tiles", [
    # AVX-512, 32 zmm x 16 lanes: the tables' own rows (fp32 and int8 igemm, kdot)
    ("x86-64", {"+avx512f", "+avx"}, {(4, 64): 4, (8, 32): 8, (16, 16): 16, (6, 64): 6,
                                      (10, 32): 10, (14, 16): 14}),
    # AVX2, 16 ymm x 8 lanes: NR=16 takes 2 per row, (16 - 2 - 2) // 2 = 6; NR=32: 4, 10 // 4
    ("x86-64", {"-avx512f", "+avx"}, {(4, 64): 1, (8, 32): 2, (16, 16): 6, (16, 32): 2}),
    # NEON, 32 q x 4 lanes: NR=16 takes 4 per row, (32 - 4 - 2) // 4 = 6; NR=32: 8, 22 // 8
    ("aarch64", set(), {(4, 64): 1, (8, 32): 2, (16, 16): 6, (10, 32): 2}),
])
def test_tile_rows_fit_the_register_file(monkeypatch, isa, feats, tiles):
    """A tile whose accumulators do not fit the registers spills in its inner loop: the
    kernels take fewer rows (pixels) on machines with fewer vector lanes."""
    monkeypatch.setattr(config, "is_aarch64", lambda: isa == "aarch64")
    monkeypatch.setattr(config, "compile_features", lambda: feats)
    for (rows, lanes), want in tiles.items():
        assert config.fit_rows(rows, lanes) == want, (rows, lanes)


def test_conv_padding_is_zero_not_garbage():
    """A ones input with zero padding: border outputs count only the in-bounds taps."""
    x = np.ones((1, 4, 5, 3), np.float32)
    w = np.ones((16, 3, 3, 3), np.float32)
    got = igemm.conv2d(x, w, pads=(1, 1, 1, 1))
    taps = np.convolve(np.ones(4), np.ones(3), "same")[:, None] * \
        np.convolve(np.ones(5), np.ones(3), "same")[None, :]
    np.testing.assert_array_equal(got[0, :, :, 0], 3 * taps)


# --- lowering + binding ------------------------------------------------------------------
def _run_steps(steps, feeds, out_shape, threads=None):
    """Bind like the runtime: JSON-round-tripped params, read-only weights, arena-like views
    (the step's scratch tensors, e.g. the Winograd conv's, after its output)."""
    out = np.full(out_shape, np.nan, np.float32)
    (step,) = steps
    extra = [np.full(shape, np.nan, dtype) for shape, dtype in step.scratch.values()]
    params = json.loads(json.dumps(step.params))
    weights = {}
    for k, v in step.weights.items():
        v = np.ascontiguousarray(v).copy()
        v.flags.writeable = False
        weights[k] = v
    fn, args = BINDERS[step.kernel](params, weights, [feeds[n] for n in step.inputs],
                                    [out, *extra], threads)
    fn(*args)
    return step, out


LOWERING_CASES = CONV_CASES[::3] + KDOT_CASES[::3] + DW_CASES[::2] + [CONV_CASES[-4],
                                                                       DW_CASES[-1]]


@pytest.mark.parametrize("case", LOWERING_CASES, ids=_ids(LOWERING_CASES))
def test_conv2d_lowering_and_binding(case):
    x, w, bias, res, geo, expected, red = _data(case)
    b = GraphBuilder("conv")
    xin = b.input("x", x.shape)
    inputs = [xin, b.const(w), b.const(bias)]
    feeds = {"x": x}
    if res is not None:
        inputs.append(b.input("res", res.shape))
        feeds["res"] = res
    kind, params = case["act"]
    y = b.node(Op.CONV2D, *inputs, name="conv", **geo, activation=kind, act_params=params)
    g = b.build(y)
    steps = lower_node(g.nodes[0], g)
    step, got = _run_steps(steps, feeds, expected.shape)
    depthwise = case["group"] == case["c"] > 1
    expect = "f32_dwconv2d" if depthwise else "f32_conv2d_pix" \
        if pix.applicable(case["co"], case["group"], case["strides"][1]) and case["k"] > 1 \
        else "f32_conv2d_kdot4_" \
        if igemm.use_kdot(case["co"], case["group"]) and case["co"] <= 4 \
        else ("f32_conv2d_igemm_", wino.KERNEL_ID)
    assert step.kernel.startswith(expect)
    co_g = case["co"] // case["group"]
    assert step.flops == 2 * expected.size * case["k"] ** 2 * (case["c"] // case["group"])
    assert co_g >= 1
    assert_f32_close(got, expected, red, step.kernel)


@pytest.mark.parametrize("hw,c,co,group,cut", [((13, 13), 160, 200, 1, True),
                                               ((14, 14), 128, 192, 4, True),
                                               ((1, 5), 3, 20, 1, False)])      # serial: small
def test_pointwise_conv_binds_one_row_per_image(hw, c, co, group, cut):
    """A 1x1 stride-1 unpadded conv runs over [N, 1, H * W, C] views, cut into parts for two
    threads (not when it runs serial); the outputs land where the NHWC output has them."""
    case = _case(c, co, k=1, n=2, hw=hw, pads=(0, 0, 0, 0), group=group, residual=True,
                 act=ACTS[3])
    x, w, bias, res, geo, expected, red = _data(case)
    b = GraphBuilder("pointwise")
    y = b.node(Op.CONV2D, b.input("x", x.shape), b.const(w), b.const(bias),
               b.input("res", res.shape), name="conv", **geo, activation=case["act"][0],
               act_params=case["act"][1])
    g = b.build(y)
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel.startswith("f32_conv2d_igemm_")
    step, got = _run_steps([step], {"x": x, "res": res}, expected.shape, threads=2)
    assert_f32_close(got, expected, red, step.kernel)
    _, args = BINDERS[step.kernel](json.loads(json.dumps(step.params)), step.weights,
                                   [x, res], [np.empty(expected.shape, np.float32)], 2)
    assert args[0].shape == (2, 1, hw[0] * hw[1], c)
    assert (args[-1] > 1) == cut


def test_depthwise_binds_column_parts_for_few_rows():
    """Three output rows on two threads: each row cut into parts, the output as the reference."""
    case = _case(256, 256, k=5, group=256, hw=(3, 400), act=ACTS[3])
    x, w, bias, res, geo, expected, red = _data(case)
    b = GraphBuilder("dw")
    y = b.node(Op.CONV2D, b.input("x", x.shape), b.const(w), b.const(bias), name="dw", **geo,
               activation=case["act"][0], act_params=case["act"][1])
    g = b.build(y)
    (step,) = lower_node(g.nodes[0], g)
    step, got = _run_steps([step], {"x": x}, expected.shape, threads=2)
    assert step.kernel == dw.KERNEL_ID
    assert_f32_close(got, expected, red, step.kernel)
    _, args = BINDERS[step.kernel](json.loads(json.dumps(step.params)), step.weights, [x],
                                   [np.empty(expected.shape, np.float32)], 2)
    assert args[-1] > 1


def test_conv2d_lowering_constant_residual_and_no_bias():
    x, w = _rand(1, 6, 7, 8), _rand(16, 8, 3, 3)
    res = _rand(1, 6, 7, 16)
    b = GraphBuilder("conv")
    y = b.node(Op.CONV2D, b.input("x", x.shape), b.const(w), None, b.const(res), pads=(1, 1, 1, 1),
               activation=Activation.RELU)
    g = b.build(y)
    _, got = _run_steps(lower_node(g.nodes[0], g), {"x": x}, res.shape)
    expected = ref.conv2d(x, w, None, res, pads=(1, 1, 1, 1), activation_kind=Activation.RELU)
    assert_f32_close(got, expected, 72, "const residual")


@pytest.mark.parametrize("n,hw,ci,cog,k,strides,dilations,pads,group,opad", TRANSPOSE_CASES[:3])
def test_conv_transpose2d_lowering_and_binding(n, hw, ci, cog, k, strides, dilations, pads,
                                               group, opad):
    x = _rand(n, *hw, ci)
    w, bias = _rand(ci, cog, k, k), _rand(cog * group)
    attrs = dict(strides=strides, dilations=dilations, pads=pads, group=group,
                 output_padding=opad)
    b = GraphBuilder("convt")
    y = b.node(Op.CONV_TRANSPOSE2D, b.input("x", x.shape), b.const(w), b.const(bias), **attrs,
               activation=Activation.LEAKY_RELU, act_params=(0.2,))
    g = b.build(y)
    expected = ref.conv_transpose2d(x, w, bias, **attrs, activation_kind=Activation.LEAKY_RELU,
                                    act_params=(0.2,))
    step, got = _run_steps(lower_node(g.nodes[0], g), {"x": x}, expected.shape)
    assert step.kernel.startswith("f32_conv_transpose2d_igemm_")
    assert step.flops == 2 * x.size * cog * k * k
    assert_f32_close(got, expected, ci // group * k * k, step.kernel)


# few output channels and column stride 2: the pix kernel's two phases (PP-OCRv4's 2x2 24->1)
PIX_TRANSPOSE_CASES = [  # (n, hw, ci, co, k, strides, dilations, pads, output_padding)
    (1, (9, 13), 24, 1, 2, (2, 2), (1, 1), (0, 0, 0, 0), (0, 0)),
    (2, (4, 21), 13, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, (5, 17), 7, 8, 4, (2, 2), (1, 1), (1, 2, 1, 0), (0, 1)),
    (1, (3, 40), 65, 4, 3, (1, 2), (1, 1), (0, 1, 0, 2), (0, 0)),
    (1, (6, 9), 16, 2, 3, (3, 2), (1, 2), (2, 0, 1, 1), (0, 1)),
]


@pytest.mark.parametrize("n,hw,ci,co,k,strides,dilations,pads,opad", PIX_TRANSPOSE_CASES)
def test_conv_transpose2d_few_channels_run_the_pix_kernel(n, hw, ci, co, k, strides, dilations,
                                                          pads, opad):
    x = _rand(n, *hw, ci)
    w, bias = _rand(ci, co, k, k), _rand(co)
    attrs = dict(strides=strides, dilations=dilations, pads=pads, output_padding=opad)
    b = GraphBuilder("convt")
    y = b.node(Op.CONV_TRANSPOSE2D, b.input("x", x.shape), b.const(w), b.const(bias), **attrs,
               activation=Activation.HARD_SWISH_AFFINE, act_params=(0.75, -0.25))
    g = b.build(y)
    expected = ref.conv_transpose2d(x, w, bias, **attrs,
                                    activation_kind=Activation.HARD_SWISH_AFFINE,
                                    act_params=(0.75, -0.25))
    step, got = _run_steps(lower_node(g.nodes[0], g), {"x": x}, expected.shape)
    assert step.kernel.startswith("f32_conv2d_pixup2_"), step.kernel
    assert step.flops == 2 * x.size * co * k * k
    assert_f32_close(got, expected, ci * k * k, step.kernel)


def test_conv2d_lowering_rejects_runtime_weights():
    b = GraphBuilder("conv")
    y = b.node(Op.CONV2D, b.input("x", (1, 5, 5, 4)), b.input("w", (8, 4, 3, 3)), name="c7")
    g = b.build(y)
    with pytest.raises(UnsupportedOperatorError, match="'c7'.*weight 'w'"):
        lower_node(g.nodes[0], g)


@pytest.mark.parametrize("co,strides", [(16, (1, 1)), (8, (1, 2))])    # igemm, kdot
def test_binder_rejects_inconsistent_blobs(co, strides):
    b = GraphBuilder("conv")
    y = b.node(Op.CONV2D, b.input("x", (1, 5, 5, 4)), b.const(_rand(co, 4, 3, 3)),
               pads=(1, 1, 1, 1), strides=strides)
    g = b.build(y)
    (step,) = lower_node(g.nodes[0], g)
    x = np.zeros((1, 5, 5, 4), np.float32)
    out = np.zeros(g.tensors[y].shape, np.float32)
    bad = dict(step.weights, rowmap=step.weights["rowmap"][:3])
    with pytest.raises(BindError, match="weight 'rowmap'"):       # Session names the step
        BINDERS[step.kernel](step.params, bad, [x], [out])
    bad = dict(step.weights, w=step.weights["w"][:, :1])
    with pytest.raises(BindError, match="weight 'w'"):
        BINDERS[step.kernel](step.params, bad, [x], [out])
    fn, args = BINDERS[step.kernel](step.params, step.weights, [x], [out])
    fn(*args)
    assert not out.any()


# --- instance-norm statistics in the igemm epilogue ------------------------------------------
@pytest.mark.parametrize("co,tile,parallel", [(32, (8, 32), False), (40, (4, 64), True),
                                              (13, (16, 16), False)])
def test_igemm_row_sums(co, tile, parallel):
    """``sums[row, 0/1, c]`` = sum of the stored outputs / their squares per output row (whole
    and partial channel blocks, tail tiles, a residual, two images)."""
    case = _case(13, co, n=2, hw=(5, 21), residual=True)
    x, w, bias, res, geo, expected, red = _data(case)
    mr, nr = tile
    rowmap, colmap = igemm.conv_tables(x.shape, (3, 3), pads=case["pads"])
    out = np.empty(expected.shape, np.float32)
    sums = np.full(2 * 5 * 2 * co, np.nan)
    ro = igemm.readonly
    igemm.igemm_kernel(mr, nr, parallel)(
        ro(x), ro(rowmap), ro(colmap), ro(igemm.pack_weights(w, nr)), ro(bias), ro(res), out, 1,
        1, 0, np.float32(0), np.float32(0), ro(igemm.NO_SLOPES), True, sums, True, False,
        1)
    assert_f32_close(out, expected, red, "igemm with sums")
    y = out.astype(np.float64).reshape(10, 21, co)
    got = sums.reshape(10, 2, co)
    # float32 sums of (y - y[row, 0]) per row: a few ulps of the row's spread
    np.testing.assert_allclose(got[:, 0], y.sum(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got[:, 1], (y * y).sum(axis=1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("runtime_params,residual,act", [
    (False, False, Activation.RELU), (True, True, Activation.NONE), (True, False, Activation.TANH)])
def test_conv_absorbs_instance_norm(runtime_params, residual, act):
    """CONV2D -> INSTANCE_NORM lowers to one step (statistics from the conv's epilogue, the norm
    in place); the norm's own lowering emits nothing; values match the reference interpreter,
    also with |mean| >> std and style-computed per-image scale/bias."""
    from mobile_engine.ir.interpret import run_graph
    from tests.kernels.harness import fused, lower_and_run
    n, c, co = 2, 8, 32
    b = GraphBuilder("cn")
    x = b.input("x", (n, 9, 11, c))
    feeds = {"x": _rand(n, 9, 11, c)}
    if runtime_params:         # per-image scale, and a style-vector bias (multistyle26's form)
        s = b.input("s", (n, co))
        feeds["s"], feeds["u"] = _rand(n, co), _rand(26)
        scale = b.node(Op.MUL, s, b.const(_rand(co)))
        u = b.node(Op.RESHAPE, b.input("u", (26,)), shape=(26, 1))
        shift = b.node(Op.REDUCE_SUM, b.node(Op.MUL, u, b.const(_rand(26, co))), axes=(0,),
                       keepdims=False)
    else:
        scale, shift = b.const(_rand(co)), b.const(_rand(co))
    inputs = [x, b.const(_rand(co, c, 3, 3, scale=0.2)), b.const(_rand(co) + np.float32(40))]
    if residual:
        inputs.append(b.input("r", (n, 9, 11, co)))
        feeds["r"] = _rand(n, 9, 11, co)
    y = b.node(Op.CONV2D, *inputs, pads=(1, 1, 1, 1), pad_mode="reflect")
    z = b.node(Op.INSTANCE_NORM, y, scale, shift, epsilon=1e-5, activation=act)
    g = fused(b.build(z))
    conv, norm = g.nodes[-2], g.nodes[-1]
    (step,) = lower_node(conv, g)
    assert step.kernel == f"f32_conv2d_igemm_8x32_instnorm{'_relu' if act == 1 else ''}" \
        f"{'_tanh' if act == Activation.TANH else ''}"
    assert step.outputs == [z] and lower_node(norm, g) == []
    if runtime_params:
        assert step.params["norm_inputs"][-2:] == ["scale", "style_bias"]
    got, want = lower_and_run(g, feeds)[z], run_graph(g, feeds)[z]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_conv_keeps_a_norm_it_cannot_absorb():
    """A conv read by the norm and another node, or with an activation, leaves the norm alone."""
    b = GraphBuilder("cn")
    x = b.input("x", (1, 6, 7, 8))
    w, bias = b.const(_rand(16, 8, 3, 3)), b.const(_rand(16))
    p = [b.const(_rand(16)), b.const(_rand(16))]
    y1 = b.node(Op.CONV2D, x, w, bias, pads=(1, 1, 1, 1))
    z1 = b.node(Op.INSTANCE_NORM, y1, *p)
    z2 = b.node(Op.RELU, y1)
    y3 = b.node(Op.CONV2D, x, w, bias, pads=(1, 1, 1, 1), activation=Activation.RELU)
    z3 = b.node(Op.INSTANCE_NORM, y3, *p)
    y4 = b.node(Op.CONV2D, x, w, bias, pads=(1, 1, 1, 1))
    late = b.node(Op.MUL, b.input("s", (16,)), p[0])        # scale computed after the conv
    z4 = b.node(Op.INSTANCE_NORM, y4, late, p[1])
    g = b.build(z1, z2, z3, z4)
    for node in g.nodes:
        if node.op in (Op.CONV2D, Op.INSTANCE_NORM):
            (step,) = lower_node(node, g)
            assert "instnorm" not in step.kernel


@pytest.mark.parametrize("act", [Activation.NONE, Activation.RELU])
def test_conv_absorbs_norm_and_residual_add(act):
    """conv -> norm -> ADD(., r) (a residual block's end) is one step writing the ADD's output;
    norm and ADD lower to nothing. An ADD whose other operand is computed after the conv stays."""
    from mobile_engine.ir.interpret import run_graph
    from tests.kernels.harness import fused, lower_and_run
    b = GraphBuilder("res")
    x = b.input("x", (1, 7, 9, 16))
    feeds = {"x": _rand(1, 7, 9, 16)}
    p = [b.const(_rand(16)), b.const(_rand(16))]

    def conv_norm(inp, seed):
        y = b.node(Op.CONV2D, inp, b.const(_rand(16, 16, 3, 3, scale=0.2)), b.const(_rand(16)),
                   pads=(1, 1, 1, 1), pad_mode="reflect")
        return b.node(Op.INSTANCE_NORM, y, *p)

    h = b.node(Op.RELU, x)
    z = b.node(Op.ADD, conv_norm(h, 1), h, activation=act)        # r = h, computed before
    late = conv_norm(z, 2)
    z2 = b.node(Op.ADD, late, b.node(Op.TANH, z))                  # r computed after the conv
    g = fused(b.build(z, z2))
    steps = {n.name: lower_node(n, g) for n in g.nodes}
    kinds = [s.kernel for v in steps.values() for s in v]
    assert kinds.count(f"f32_conv2d_igemm_16x16_instnorm_add{'_relu' if act else ''}") == 1
    assert "f32_conv2d_igemm_16x16_instnorm" in kinds and sum("vbinary_add" in k for k in kinds) == 1
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in (z, z2):
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=2e-5)


@pytest.mark.parametrize("act,residual_first", [(Activation.NONE, False), (Activation.RELU, True)])
def test_norm_left_by_its_conv_absorbs_the_residual_add(act, residual_first):
    """A norm that keeps its own step (its conv runs Winograd, or no conv writes it) adds the
    residual in its pass: the ADD lowers to nothing (``passes/fusions/norm_add.py``). A norm with
    an activation, or a residual computed after the norm, leaves its ADD a step."""
    from mobile_engine.ir.interpret import run_graph
    from tests.kernels.harness import fused, lower_and_run
    b = GraphBuilder("norm_add")
    x = b.input("x", (2, 8, 12, 32))
    feeds = {"x": _rand(2, 8, 12, 32), "s": _rand(2, 32)}
    p = [b.node(Op.MUL, b.input("s", (2, 32)), b.const(_rand(32))), b.const(_rand(32))]
    h = b.node(Op.RELU, x)
    y = b.node(Op.CONV2D, h, b.const(_rand(32, 32, 3, 3, scale=0.1)), b.const(_rand(32)),
               pads=(1, 1, 1, 1), pad_mode="reflect")              # 3x3 32->32: Winograd
    n1 = b.node(Op.INSTANCE_NORM, y, *p, epsilon=1e-5)
    z = b.node(Op.ADD, *((h, n1) if residual_first else (n1, h)), activation=act)
    n2 = b.node(Op.INSTANCE_NORM, z, *p, epsilon=1e-5, activation=Activation.RELU)
    z2 = b.node(Op.ADD, n2, z)                                     # the norm has an activation
    n3 = b.node(Op.INSTANCE_NORM, z2, *p, epsilon=1e-5)
    z3 = b.node(Op.ADD, n3, b.node(Op.TANH, z2))                   # r computed after the norm
    g = fused(b.build(z, z3))
    steps = [s for n in g.nodes for s in lower_node(n, g)]
    norms = [s for s in steps if s.kernel.startswith("f32_instance_norm_nhwc")]
    assert [s.params["inputs"] for s in norms] == [["scale", "residual"], ["scale"], ["scale"]]
    assert norms[0].outputs == [z] and norms[0].kernel.endswith("_relu" if act else "nhwc")
    assert sum("vbinary_add" in s.kernel for s in steps) == 2
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in (z, z3):       # Winograd's rounding (~1e-5 of the magnitude), normalised
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


# --- a residual zero-padded on the channel axis, read unpadded ---------------------------------
@pytest.mark.parametrize("cr,co,tile", [(1, 3, None), (13, 24, None), (24, 28, (8, 32)),
                                        (24, 64, (4, 64)), (32, 64, (4, 64)), (63, 64, (4, 64)),
                                        (64, 65, None), (24, 63, (16, 16)), (3, 13, (16, 16)),
                                        (65, 130, None)])
def test_igemm_narrow_residual_is_its_zero_padding(cr, co, tile):
    """Residual f32[N, OH, OW, Cr], Cr < Co: added to the first Cr output channels, as the
    residual zero-padded to Co channels (vector blocks that the residual covers, skips or ends
    inside; the scalar tail block)."""
    case = _case(13, co, k=1, n=2, hw=(5, 19), pads=(0, 0, 0, 0), act=ACTS[1])
    x, w, bias, _, geo, _, red = _data(case)
    res = _rand(2, 5, 19, cr)
    padded = np.pad(res, ((0, 0), (0, 0), (0, 0), (0, co - cr)))
    expected = ref.conv2d(x, w, bias, padded, **geo, activation_kind=case["act"][0])
    got = igemm.conv2d(x, w, bias, res, **geo, activation_kind=case["act"][0], method="igemm",
                       tile=tile, parallel=False)
    assert_f32_close(got, expected, red, f"igemm narrow residual {cr} of {co}")


@pytest.mark.parametrize("co,tile,parallel", [(1, (16, 16), False), (3, (16, 16), False),
                                              (13, None, False), (24, (8, 32), True),
                                              (63, (4, 64), False), (64, None, True),
                                              (65, None, False)])
def test_igemm_prelu_epilogue(co, tile, parallel):
    """A PReLU with per-channel slopes after bias, residual and activation, over each finished
    row part (serial and parallel parts)."""
    case = _case(13, co, n=2, hw=(6, 23), residual=True)
    x, w, bias, res, geo, expected, red = _data(case)
    slopes = _rand(co)
    expected = ref.prelu(expected, slopes)
    got = igemm.conv2d(x, w, bias, res, **geo, method="igemm", tile=tile, parallel=parallel,
                       prelu_slopes=slopes)
    assert_f32_close(got, expected, red, f"igemm prelu {co}")


@pytest.mark.parametrize("co,res_shape,channels,ok", [
    (16, (1, 5, 5, 12), 12, True), (16, (1, 5, 5, 12), None, False),
    (16, (1, 5, 5, 12), 13, False), (16, (1, 5, 5, 16), 17, False),
    (16, (1, 5, 4, 12), 12, False), (8, (1, 5, 5, 4), 4, False)])
def test_only_igemm_binds_a_residual_of_fewer_channels(co, res_shape, channels, ok):
    """igemm takes a residual of the output's pixels and the step's ``residual_channels``
    (at most Co); kdot (Co 8) wants exactly the output's shape."""
    b = GraphBuilder("conv")
    y = b.node(Op.CONV2D, b.input("x", (1, 5, 5, 4)), b.const(_rand(co, 4, 3, 3)),
               b.const(_rand(co)), b.input("res", (1, 5, 5, co)), pads=(1, 1, 1, 1))
    g = b.build(y)
    (step,) = lower_node(g.nodes[0], g)
    params = step.params if channels is None else {**step.params, "residual_channels": channels}
    x, res = np.zeros((1, 5, 5, 4), np.float32), np.ones(res_shape, np.float32)
    out = np.zeros(g.tensors[y].shape, np.float32)
    if not ok:
        with pytest.raises(BindError, match="the residual|residual_channels"):
            BINDERS[step.kernel](params, step.weights, [x, res], [out])
        return
    fn, args = BINDERS[step.kernel](params, step.weights, [x, res], [out])
    fn(*args)
    expected = step.weights["bias"] + np.pad(res, ((0, 0), (0, 0), (0, 0), (0, co - 12)))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


# --- planar (NCHW) input: igemm reads C runs of KW per kernel row -----------------------------
@pytest.mark.parametrize("case", [
    _case(3, 32, k=9, hw=(13, 14), pad_mode="reflect", pads=(4, 4, 4, 4), n=2),  # the first layer
    _case(13, 24, strides=(2, 1), pads=(0, 2, 1, 1)),
    _case(8, 16, group=2, pad_mode="edge", upsample=2, hw=(5, 6)),
    _case(5, 40, k=3, dilations=(2, 2), hw=(9, 9), act=ACTS[3], residual=True)],
    ids=lambda c: f"c{c['c']}-co{c['co']}-k{c['k']}-g{c['group']}")
def test_igemm_planar_input(case):
    x, w, bias, res, geo, expected, red = _data(case)
    kind, params = case["act"]
    got = igemm.conv2d(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, bias, res, **geo,
                       activation_kind=kind, act_params=params, in_nchw=True)
    assert_f32_close(got, expected, red, "igemm planar input")


def test_conv_reads_the_nchw_input_of_its_transpose():
    """TRANSPOSE(image NCHW -> NHWC) -> CONV2D: the conv reads the image itself, the transpose
    lowers to nothing (multistyle26's first layer); a transpose with two readers stays."""
    from mobile_engine.ir.interpret import run_graph
    from tests.kernels.harness import fused, lower_and_run
    b = GraphBuilder("first")
    img = b.input("image", (1, 3, 12, 17))
    t = b.node(Op.TRANSPOSE, img, perm=(0, 2, 3, 1))
    y = b.node(Op.CONV2D, t, b.const(_rand(32, 3, 9, 9, scale=0.1)), b.const(_rand(32)),
               pads=(4, 4, 4, 4), pad_mode="reflect", activation=Activation.RELU)
    t2 = b.node(Op.TRANSPOSE, img, perm=(0, 2, 3, 1))
    y2 = b.node(Op.CONV2D, t2, b.const(_rand(4, 3, 3, 3)), pads=(1, 1, 1, 1))
    g = fused(b.build(y, y2, t2))
    steps = {id(n): lower_node(n, g) for n in g.nodes}
    first_t, first_conv = g.nodes[0], g.nodes[1]
    assert steps[id(first_t)] == [] and steps[id(first_conv)][0].inputs == ["image"]
    assert steps[id(first_conv)][0].params["in_nchw"] is True
    assert len(steps[id(g.nodes[2])]) == 1                   # read by a conv and a graph output
    feeds = {"image": _rand(1, 3, 12, 17)}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in (y, y2):
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=2e-5)
