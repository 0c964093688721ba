"""fp32 instance norm and batch norm kernels against kernels/reference.py: directly (the kernel
table's rows over edge shapes) and through lowering + binding (GraphBuilder nodes)."""
from __future__ import annotations

import numpy as np
import pytest

from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from kernels import f32_norm as knorm
from kernels import f32_norm_planar as knorm_planar
from kernels import table

from tests.kernels.harness import fused, lower_and_run
from tests.tolerances import assert_close


RNG = np.random.default_rng(99)
CHANNELS = (1, 3, 13, 24, 63, 64, 65)


def rand(shape, lo=-3.0, hi=3.0):
    return RNG.uniform(lo, hi, size=shape).astype(np.float32)


# NOTE: instance norm divides by the per-channel std; its float32 error is a few ulps of the
# output whatever the reduction length (statistics are float64), so reduction_len stays small.
NORM_ULPS = 8


@pytest.mark.parametrize("c", CHANNELS + (32, 96, 128))
@pytest.mark.parametrize("per_image", [False, True])
def test_instance_norm_table(c, per_image):
    run, reference = table.entry_and_reference("f32_instance_norm_nhwc")
    x = rand((2, 5, 7, c)) * np.float32(4) + np.float32(50)        # |mean| >> std
    s_shape = (2, c) if per_image else (c,)
    scale, bias = rand(s_shape), rand(s_shape)
    for act, params in [(0, ()), (int(Activation.RELU), ()), (int(Activation.CLAMP), (-0.5, 1)),
                        (int(Activation.HARD_SWISH), ())]:
        assert_close(run(x, scale, bias, 1e-5, act, params),
                     reference(x, scale, bias, 1e-5, act, params), NORM_ULPS,
                     what=f"c={c} per_image={per_image} act={act}")


@pytest.mark.parametrize("c,lanes", [(1, 64), (3, 48), (13, 0), (24, 48), (32, 64), (63, 0),
                                     (64, 64), (65, 0), (96, 48), (128, 64)])
def test_instance_norm_lane_choice(c, lanes):
    """Vector kernel when C divides or is a multiple of a lane width, else the generic one;
    the generic kernel also serves every C (forced here)."""
    assert knorm.lane_width(c) == lanes
    run, reference = table.entry_and_reference("f32_instance_norm_nhwc")
    x = rand((2, 3, 5, c))
    scale, bias = rand((c,)), rand((c,))
    want = reference(x, scale, bias, 1e-5, int(Activation.RELU))
    assert_close(run(x, scale, bias, 1e-5, int(Activation.RELU), lanes=0), want, NORM_ULPS)


@pytest.mark.parametrize("blocks,parallel", [(1, True), (3, False), (5, True), (35, True)])
@pytest.mark.parametrize("c", [24, 32, 13])
def test_instance_norm_blocks(blocks, parallel, c):
    """Partial sums over row blocks (ragged last block, more blocks than rows) combine to the
    per-image statistics."""
    run, reference = table.entry_and_reference("f32_instance_norm_nhwc")
    x = rand((2, 5, 7, c))
    scale, bias = rand((c,)), rand((c,))
    assert_close(run(x, scale, bias, 1e-3, blocks=blocks, parallel=parallel),
                 reference(x, scale, bias, 1e-3), NORM_ULPS)


@pytest.mark.parametrize("c", [65, 32])
def test_instance_norm_constant_channel_and_large_default_path(c):
    x = rand((1, 33, 65, c)) * np.float32(10) - np.float32(200)
    x[..., 3] = 7.0                                   # zero variance: y = bias
    scale, bias = rand((c,)), rand((c,))
    run, reference = table.entry_and_reference("f32_instance_norm_nhwc")
    got = run(x, scale, bias, 1e-5)
    assert_close(got, reference(x, scale, bias, 1e-5), NORM_ULPS)
    np.testing.assert_allclose(got[..., 3], bias[3], rtol=0, atol=1e-6)
    assert knorm.instance_norm_blocks(1, 33 * 65, c) > 1          # the parallel default path


@pytest.mark.parametrize("c", (1, 3, 4, 8, 13))
@pytest.mark.parametrize("hw,blocks,parallel", [((5, 7), None, False), ((3, 37), 4, True),
                                                ((33, 65), None, None), ((2, 3), 9, True)])
def test_instance_norm_planar_table(c, hw, blocks, parallel):
    """Planar (NCHW) kernel: |mean| >> std, per-image params, ragged blocks and vector tails,
    more blocks than vectors, the clamp and a transcendental activation."""
    run, reference = table.entry_and_reference("f32_instance_norm_nchw")
    x = rand((2, c) + hw) * np.float32(4) + np.float32(50)
    x[1, 0] = 7.0                                     # a constant plane: y = bias
    for s_shape, act, params in [((c,), int(Activation.SIGMOID), ()),
                                 ((2, c), int(Activation.CLAMP), (-0.5, 1)),
                                 ((2, c), 0, ())]:
        scale, bias = rand(s_shape), rand(s_shape)
        got = run(x, scale, bias, 1e-5, act, params, blocks=blocks, parallel=parallel)
        assert_close(got, reference(x, scale, bias, 1e-5, act, params), NORM_ULPS,
                     what=f"c={c} hw={hw} act={act}")


@pytest.mark.parametrize("kernel,shape", [("f32_instance_norm_nhwc", (2, 3, 5, 4)),
                                          ("f32_instance_norm_nhwc", (2, 3, 5, 13)),
                                          ("f32_instance_norm_nchw", (2, 4, 3, 5))])
def test_instance_norm_per_image_scale_shared_bias(kernel, shape):
    """scale [N, C] with bias [C] (and the reverse): each indexed by its own shape."""
    run, reference = table.entry_and_reference(kernel)
    x = rand(shape)
    c = shape[1] if kernel.endswith("nchw") else shape[3]
    for s_shape, b_shape in (((2, c), (c,)), ((c,), (2, c))):
        scale, bias = rand(s_shape), rand(b_shape)
        assert_close(run(x, scale, bias, 1e-5), reference(x, scale, bias, 1e-5), NORM_ULPS)


@pytest.mark.parametrize("c,act", [(32, int(Activation.RELU)), (13, int(Activation.CLAMP)),
                                   (24, 0)])
def test_instance_norm_residual(c, act):
    """out = act(norm(x) + r): the activation (a clamp too) follows the residual add."""
    run, reference = table.entry_and_reference("f32_instance_norm_nhwc")
    x, r = rand((2, 9, 7, c)), rand((2, 9, 7, c))
    scale, bias = rand((c,)), rand((c,))
    params = (-0.5, 1.0) if act == int(Activation.CLAMP) else ()
    assert_close(run(x, scale, bias, 1e-5, act, params, residual=r),
                 reference(x, scale, bias, 1e-5, act, params, residual=r), NORM_ULPS)


def test_instance_norm_planar_blocks_are_even():
    """3 planes on 2 threads: an even number of (plane, block) tasks."""
    for n, p, c in ((1, 480 * 640, 3), (1, 256 * 256, 4), (2, 128 * 128, 8), (1, 100, 3)):
        nblk = knorm_planar.planar_blocks(n, p, c)
        assert nblk == 1 if n * p * c < knorm.PARALLEL_MIN_WORK else (n * c * nblk) % 2 == 0


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("parallel", [False, True])
def test_batch_norm_table(c, parallel):
    run, reference = table.entry_and_reference("f32_batch_norm_nhwc")
    x = rand((2, 5, 7, c))
    scale, bias, mean, var = rand((c,)), rand((c,)), rand((c,)), rand((c,), 0.1, 2.0)
    assert_close(run(x, scale, bias, mean, var, 1e-3, int(Activation.HARD_SWISH), (),
                     parallel=parallel),
                 reference(x, scale, bias, mean, var, 1e-3, int(Activation.HARD_SWISH)),
                 NORM_ULPS, what=f"c={c}")


# --- through lowering and binding ---------------------------------------------------------------
@pytest.mark.parametrize("runtime_params", [False, True])
@pytest.mark.parametrize("per_image", [False, True])
def test_lowered_instance_norm(runtime_params, per_image):
    """Scale and bias constant, or computed at run time from another input (multistyle26)."""
    n, c = 2, 13
    bld = GraphBuilder()
    x = bld.input("x", (n, 5, 7, c))
    s_shape = (n, c) if per_image else (c,)
    feeds = {"x": rand((n, 5, 7, c)) + np.float32(10)}
    if runtime_params:
        w = bld.input("w", s_shape)
        feeds["w"] = rand(s_shape)
        scale = bld.node(Op.MUL, w, bld.const(rand(s_shape)))
        bias = bld.node(Op.ADD, w, bld.const(rand(s_shape)))
    else:
        scale, bias = bld.const(rand(s_shape)), bld.const(rand(s_shape))
    y = bld.node(Op.INSTANCE_NORM, x, scale, bias, epsilon=1e-4,
                 activation=Activation.RELU)
    g = bld.build(y)
    step = lower_node(g.nodes[-1], g)[0]
    assert step.kernel == "f32_instance_norm_nhwc_relu"
    assert len(step.inputs) == (3 if runtime_params else 1)
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[y], want[y], NORM_ULPS)


def test_lowered_planar_instance_norm():
    n, c = 2, 3
    bld = GraphBuilder()
    x = bld.input("x", (n, c, 5, 7))
    y = bld.node(Op.INSTANCE_NORM, x, bld.input("s", (n, c)), bld.const(rand((c,))),
                 layout="nchw", activation=Activation.SIGMOID)
    g = bld.build(y)
    (step,) = lower_node(g.nodes[-1], g)
    assert step.kernel == "f32_instance_norm_nchw_sigmoid"
    feeds = {"x": rand((n, c, 5, 7)), "s": rand((n, c))}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[y], want[y], NORM_ULPS)


@pytest.mark.parametrize("runtime_params", [False, True])
def test_lowered_batch_norm(runtime_params):
    c = 24
    bld = GraphBuilder()
    x = bld.input("x", (1, 6, 5, c))
    feeds = {"x": rand((1, 6, 5, c))}
    params = [rand((c,)), rand((c,)), rand((c,)), rand((c,), 0.2, 3.0)]
    names = [bld.const(p) for p in params]
    if runtime_params:
        names[3] = bld.input("var", (c,))
        feeds["var"] = params[3]
    y = bld.node(Op.BATCH_NORM, x, *names, epsilon=1e-3, activation=Activation.CLAMP,
                 act_params=(0.0, 6.0))
    g = bld.build(y)
    (step,) = lower_node(g.nodes[0], g)
    assert step.kernel == ("f32_batch_norm_nhwc_rt_minmax" if runtime_params
                           else "f32_batch_norm_nhwc_minmax")
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    assert_close(got[y], want[y], NORM_ULPS)


# --- style-computed scale and bias (multistyle26: REDUCE_SUM(MUL(u[K, 1], G[K, C]), axis 0)) ----
def _style_param(bld, u, k, c, seed):
    g = np.random.default_rng(seed).standard_normal((k, c)).astype(np.float32)
    return bld.node(Op.REDUCE_SUM, bld.node(Op.MUL, u, bld.const(g)), axes=(0,), keepdims=False)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_norm_absorbs_style_matvec(layout):
    """The norm computes u @ G itself: MUL and REDUCE_SUM lower to nothing, the norm step reads
    the style vector; one REDUCE_SUM also read elsewhere stays a step of its own."""
    k, c = 26, 13
    bld = GraphBuilder()
    shape = (1, c, 5, 7) if layout == "nchw" else (1, 5, 7, c)
    x = bld.input("x", shape)
    u = bld.node(Op.RESHAPE, bld.input("w", (k,)), shape=(k, 1))
    scale, bias = _style_param(bld, u, k, c, 1), _style_param(bld, u, k, c, 2)
    y = bld.node(Op.INSTANCE_NORM, x, scale, bias, layout=layout, activation=Activation.RELU)
    scale2 = _style_param(bld, u, k, c, 3)
    y2 = bld.node(Op.INSTANCE_NORM, x, scale2, bias, layout=layout)      # bias read twice
    g = fused(bld.build(y, y2, scale2))                                  # scale2 is an output
    steps = {n.name: lower_node(n, g) for n in g.nodes}
    norm = next(n for n in g.nodes if n.outputs == [y])
    (step,) = steps[norm.name]
    assert step.params["inputs"] == ["style_scale", "bias"] and step.inputs[1] == u
    assert sum(len(steps[n.name]) for n in g.nodes if n.op is Op.MUL) == 2     # bias', scale2'
    feeds = {"x": rand(shape), "w": rand((k,), 0, 1)}
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in (y, y2):
        assert_close(got[name], want[name], NORM_ULPS + k)
