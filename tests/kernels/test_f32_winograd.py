"""The Winograd F(4x4, 3x3) conv (kernels/f32_conv2d_winograd.py) against kernels/reference.py:
the kernel over edge shapes (channels, partial tiles, padding modes, upsampling, batches,
residuals, every activation, several chunks), its lowering choice, and its binder."""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import f32_conv2d_winograd as wino
from kernels import reference as ref
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.ops import Activation
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS
from mobile_engine.runtime.validate import BindError
from tests.tolerances import assert_close, assert_f32_close

RNG = np.random.default_rng(11)
ACTS = [(Activation.NONE, ()), (Activation.RELU, ()), (Activation.CLAMP, (-0.5, 0.75)),
        (Activation.LEAKY_RELU, (0.1,)), (Activation.SIGMOID, ()), (Activation.TANH, ()),
        (Activation.HARD_SIGMOID, (0.2, 0.5)), (Activation.HARD_SWISH, ()),
        (Activation.SILU, ())]
# NOTE: a Winograd output sums 36 products of transformed values whose transforms gain up to
# ~10x (B^T's rows sum |4| + |5| + 1; A^T's last row 1 + 1 + 8 + 8 + 1): rounding grows with
# them, so the tolerance counts GAIN times the direct conv's reduction (measured: 2e-6 to
# 1.3e-5 of the output's largest magnitude on 3x3 layers of 16 to 512 channels).
GAIN = 8


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _check(n, hw, c, co, pads=(1, 1, 1, 1), pad_mode="constant", upsample=1, act=ACTS[0],
           residual=False, parallel=False):
    x = _rand(n, *hw, c)
    w = _rand(co, c, 3, 3, scale=1 / np.sqrt(9 * c))
    bias = _rand(co)
    geo = dict(pads=pads, pad_mode=pad_mode, upsample=upsample)
    plain = ref.conv2d(x, w, bias, **geo)
    res = _rand(*plain.shape) if residual else None
    expected = ref.conv2d(x, w, bias, res, **geo, activation_kind=act[0], act_params=act[1])
    got = wino.conv2d(x, w, bias, res, **geo, activation_kind=act[0], act_params=act[1],
                      parallel=parallel)
    assert_f32_close(got, expected, GAIN * 9 * c, f"winograd {n}x{hw}x{c}->{co}")


@pytest.mark.parametrize("c,co", [(1, 3), (3, 16), (8, 13), (13, 24), (24, 32), (32, 63),
                                  (63, 64), (64, 65), (65, 8)])
@pytest.mark.parametrize("parallel", [False, True])
def test_winograd_channels(c, co, parallel):
    """Channel counts around the 16/32-lane register tiles, partial tiles on both axes."""
    _check(1, (9, 14), c, co, parallel=parallel)


@pytest.mark.parametrize("hw,pads,mode,up", [
    ((1, 1), (1, 1, 1, 1), "constant", 1), ((4, 4), (0, 0, 0, 0), "constant", 1),
    ((5, 3), (2, 0, 1, 2), "constant", 1), ((7, 11), (1, 1, 1, 1), "reflect", 1),
    ((6, 9), (1, 2, 0, 1), "edge", 1), ((5, 6), (1, 1, 1, 1), "reflect", 2),
    ((3, 5), (0, 1, 2, 0), "edge", 2)])
def test_padding_and_upsampling(hw, pads, mode, up):
    """Zero, reflect and edge padding and nearest upsampling through the padded maps."""
    _check(2, hw, 16, 24, pads=pads, pad_mode=mode, upsample=up, parallel=True)


@pytest.mark.parametrize("act", ACTS, ids=[Activation(a).name for a, _ in ACTS])
def test_epilogue(act):
    """Bias, residual and every activation on a batch of two with partial tiles."""
    _check(2, (6, 7), 24, 40, act=act, residual=True)


def test_several_chunks(monkeypatch):
    """Chunks smaller than the tiles (the loop over chunks), a partial last chunk."""
    monkeypatch.setattr(wino, "CHUNK_BYTES", 1)
    assert wino.chunk_tiles(70, 16, 32) == wino.MR
    _check(1, (22, 27), 16, 32, act=ACTS[1], residual=True, parallel=True)


@pytest.mark.parametrize("parallel", [False, True])
def test_inf_and_nan_reach_the_pixels_the_direct_conv_reaches(parallel):
    """An Inf or NaN in a tile's patch: the transforms would spread it over the whole tile; the
    tile runs the direct conv instead (onnxruntime's positions), its neighbours Winograd."""
    x = _rand(2, 11, 13, 16)
    x[0, 5, 6, 3], x[0, 0, 0, 0], x[1, 9, 12, 15], x[1, 4, 4, 7] = np.inf, -np.inf, np.nan, 1e38
    w = _rand(24, 16, 3, 3, scale=1 / 12)
    bias, res = _rand(24), _rand(2, 11, 13, 24)
    expected = ref.conv2d(x, w, bias, res, pads=(1, 1, 1, 1), activation_kind=Activation.SIGMOID)
    got = wino.conv2d(x, w, bias, res, pads=(1, 1, 1, 1), activation_kind=Activation.SIGMOID,
                      parallel=parallel)
    assert (~np.isfinite(expected)).any() and np.isfinite(expected).mean() > 0.9
    assert_close(got, expected, GAIN * 9 * 16, "winograd with Inf and NaN")


def test_padded_maps_refuse_strides_and_dilations():
    from kernels.f32_conv2d import conv_tables
    for strides, dil in (((2, 2), (1, 1)), ((1, 1), (2, 2)), ((1, 2), (1, 1))):
        rowmap, colmap = conv_tables((1, 9, 9, 8), (3, 3), strides, dil, (1, 1, 1, 1))
        assert wino.padded_maps(rowmap, colmap, rowmap.shape[0], colmap.shape[0]) is None
    rowmap, colmap = conv_tables((1, 9, 9, 8), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "reflect")
    prow, pcol = wino.padded_maps(rowmap, colmap, 9, 9)
    assert list(prow) == [1, *range(9), 7, -1, -1, -1] and list(pcol) == list(prow)


def test_transform_weights_layout():
    """U[p, block, c, lane] = (G g G^T)[p] of output channel block * NR + lane, zero past Co."""
    w = _rand(20, 3, 3, 3)
    u = wino.transform_weights(w, 16)
    assert u.shape == (36, 2, 3, 16)
    g = wino.G @ w[17, 2].astype(np.float64) @ wino.G.T
    np.testing.assert_allclose(u[:, 1, 2, 1], g.reshape(36), rtol=1e-6)
    assert not u[:, 1, :, 4:].any()


def _lower(c, co, hw, strides=(1, 1), n=1):
    b = GraphBuilder("conv")
    x = _rand(n, *hw, c)
    w, bias = _rand(co, c, 3, 3, scale=1 / np.sqrt(9 * c)), _rand(co)
    y = b.node(Op.CONV2D, b.input("x", x.shape), b.const(w), b.const(bias), name="conv",
               strides=strides, pads=(1, 1, 1, 1), activation=Activation.RELU)
    g = b.build(y)
    return g, lower_node(g.nodes[0], g), x, w, bias


@pytest.mark.parametrize("c,co,hw,strides,chosen", [
    (32, 32, (14, 14), (1, 1), True), (16, 16, (56, 56), (1, 1), False),  # too few channels
    (64, 64, (4, 4), (1, 1), False),                                         # one tile
    (64, 64, (14, 14), (2, 2), False), (24, 40, (8, 8), (1, 1), True)])
def test_lowering_chooses_winograd_where_it_pays(c, co, hw, strides, chosen):
    g, (step,), *_ = _lower(c, co, hw, strides)
    assert (step.kernel == wino.KERNEL_ID) == chosen, step.kernel


@pytest.mark.parametrize("threads", [1, 2])
def test_lowered_step_binds_and_runs(threads):
    """The step's scratch (an arena tensor of the step alone, not of the graph) follows its
    output; bound like the runtime."""
    g, (step,), x, w, bias = _lower(24, 40, (10, 13), n=2)
    assert step.kernel == wino.KERNEL_ID and len(step.outputs) == 1
    assert list(step.scratch) == ["conv:winograd"] and "conv:winograd" not in g.tensors
    outs = [np.full(g.tensors[step.outputs[0]].shape, np.nan, np.float32)] + [
        np.full(shape, np.nan, dtype) for shape, dtype in step.scratch.values()]
    weights = {k: np.ascontiguousarray(v) for k, v in step.weights.items()}
    for v in weights.values():
        v.flags.writeable = False
    fn, args = BINDERS[step.kernel](json.loads(json.dumps(step.params)), weights, [x], outs,
                                    threads)
    fn(*args)
    expected = ref.conv2d(x, w, bias, pads=(1, 1, 1, 1), activation_kind=Activation.RELU)
    assert_f32_close(outs[0], expected, GAIN * 9 * 24, "bound winograd step")
    small = [outs[0], outs[1][:-1]]
    with pytest.raises(BindError, match="the scratch has"):
        BINDERS[step.kernel](step.params, weights, [x], small, threads)
