"""conv_prelu: PRELU(conv(x) [+ r]) with per-channel constant slopes runs in the igemm conv's
epilogue; the PRELU lowers to nothing and the conv's step writes its output."""
import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes.pipeline import optimize
from mobile_engine.planning.step import lower_node
from tests.kernels.harness import fused, lower_and_run
from tests.passes.helpers import feeds_for, rand


def conv_prelu_graph(c, co, k=1, residual=True, slope_shape=None, channel_pad=0,
                     second_reader=False, strides=(1, 1)):
    """x -> conv k x k (+ r, or + channel-padded x) -> PRELU(slopes)."""
    b = GraphBuilder("prelu")
    x = b.input("x", (1, 6, 9, c))
    y = b.node(Op.CONV2D, x, b.const(rand((co, c, k, k), 1, scale=1 / np.sqrt(c * k * k))),
               b.const(rand((co,), 2)), pads=(k // 2,) * 4, strides=strides)
    oh, ow = (6 - 1) // strides[0] + 1, (9 - 1) // strides[1] + 1
    if channel_pad:
        y = b.node(Op.ADD, y, b.node(Op.PAD, x, pads=(0,) * 7 + (channel_pad,)))
    elif residual:
        y = b.node(Op.ADD, y, b.input("r", (1, oh, ow, co)))
    z = b.node(Op.PRELU, y, b.const(rand(slope_shape or (1, 1, co), 3, scale=0.3)))
    g = b.build(z, y) if second_reader else b.build(z)
    optimize(g)                      # fuse_residual_add: the ADD becomes the conv's residual
    return g


def steps_of(g):
    return [s for n in g.nodes for s in lower_node(n, g)]


def assert_runs_as_interpreted(g):
    feeds = feeds_for(g)
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in g.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=2e-5)


@pytest.mark.parametrize("c,co,k,residual,slope_shape", [
    (3, 13, 3, False, None), (13, 24, 1, True, None), (24, 63, 1, True, (63,)),
    (16, 64, 3, True, (1, 1, 1, 64)), (64, 65, 1, False, None), (8, 32, 1, True, (1,))])
def test_prelu_runs_in_the_conv_epilogue(c, co, k, residual, slope_shape):
    g = conv_prelu_graph(c, co, k, residual, slope_shape, strides=(2, 2) if k == 3 else (1, 1))
    marked = fused(g)
    conv, prelu = marked.nodes[0], marked.nodes[-1]
    assert conv.attrs["fusion"] == {"prelu": prelu.name}
    (step,) = steps_of(marked)
    assert step.kernel.startswith("f32_conv2d_igemm_") and step.outputs == prelu.outputs
    assert step.weights["slopes"].shape == (co,)
    assert_runs_as_interpreted(g)


def test_prelu_joins_a_channel_padded_residual():
    """Face landmark's block: PRELU(conv(x) + PAD_c(x)): one step, no PAD, no PRELU."""
    g = conv_prelu_graph(16, 32, channel_pad=16)
    marked = fused(g)
    assert set(marked.nodes[-1].attrs.get("fusion", {})) | \
        set(next(n for n in marked.nodes if n.op is Op.CONV2D).attrs["fusion"]) == \
        {"channel_pad_residual", "prelu"}
    (step,) = steps_of(marked)
    assert step.inputs == ["x", "x"]
    assert_runs_as_interpreted(g)


@pytest.mark.parametrize("why,kw", [
    ("conv output read twice", dict(second_reader=True)),
    ("kdot conv (Co 4, 1x1)", dict(co=4)),
    ("slopes per pixel", dict(slope_shape=(6, 9, 24))),
])
def test_prelu_stays_a_step(why, kw):
    args = dict(c=13, co=24)
    args.update(kw)
    g = conv_prelu_graph(**args)
    marked = fused(g)
    assert not any("prelu" in n.attrs.get("fusion", {}) for n in marked.nodes), why
    assert any("prelu" in s.kernel for s in steps_of(marked)), why
    assert_runs_as_interpreted(g)


def test_winograd_conv_keeps_its_prelu():
    """A 3x3 stride-1 conv of 64 channels runs the Winograd kernel, which has no PReLU epilogue."""
    marked = fused(conv_prelu_graph(64, 64, k=3))
    assert not any("prelu" in n.attrs.get("fusion", {}) for n in marked.nodes)
    assert [s.kernel.split("_")[2] for s in steps_of(marked)] == ["winograd", "prelu"]
