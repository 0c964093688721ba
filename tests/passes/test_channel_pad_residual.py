"""channel_pad_residual: relu(conv(dw(x)) + PAD_c(x)) reads x unpadded, the PAD lowers to nothing."""
import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes.pipeline import optimize
from mobile_engine.planning.step import lower_node
from tests.kernels.harness import fused, lower_and_run
from tests.passes.helpers import feeds_for, rand


def blaze_block(c, co, hw=(6, 9), pads=None, value=0.0, mode="constant", pad_out=False):
    """BlazeFace's widening block: x -> dw 3x3 -> 1x1 to co; + x padded to co channels; relu."""
    b = GraphBuilder("blaze")
    x = b.input("x", (1, *hw, c))
    d = b.node(Op.CONV2D, x, b.const(rand((c, 1, 3, 3), 1, scale=0.3)), b.const(rand((c,), 2)),
               group=c, pads=(1, 1, 1, 1))
    y = b.node(Op.CONV2D, d, b.const(rand((co, c, 1, 1), 3, scale=1 / np.sqrt(c))),
               b.const(rand((co,), 4)))
    p = b.node(Op.PAD, x, pads=pads or (0, 0, 0, 0, 0, 0, 0, co - c), mode=mode, value=value)
    z = b.node(Op.RELU, b.node(Op.ADD, y, p))
    g = b.build(z, p) if pad_out else b.build(z)
    optimize(g)                     # fuse_residual_add, fuse_activation: relu(conv(d) + p)
    return g


def steps_of(g):
    return [s for n in g.nodes for s in lower_node(n, g)]


@pytest.mark.parametrize("c,co", [(1, 9), (3, 13), (13, 24), (24, 28), (24, 64), (63, 64),
                                  (64, 65), (32, 96)])
def test_padded_residual_is_read_unpadded(c, co):
    g = blaze_block(c, co)
    assert [n.op for n in g.nodes] == [Op.CONV2D, Op.PAD, Op.CONV2D]
    marked = fused(g)
    conv = marked.nodes[-1]
    assert conv.attrs["fusion"] == {"channel_pad_residual": "x"}
    steps = steps_of(marked)
    assert len(steps) == 2 and steps[-1].kernel.startswith("f32_conv2d_igemm_")
    assert steps[-1].inputs[1] == "x"
    feeds = feeds_for(g)
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in g.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)


@pytest.mark.parametrize("why,kw", [
    ("nonzero value", dict(value=1.0)),
    ("channels before", dict(pads=(0, 0, 0, 4, 0, 0, 0, 0))),
    ("reflect", dict(mode="reflect")),
    ("pad read twice", dict(pad_out=True)),
])
def test_pad_stays_when_not_a_zero_channel_tail(why, kw):
    g = blaze_block(8, 12, **kw)
    marked = fused(g)
    assert not any(n.attrs.get("fusion") for n in marked.nodes), why
    assert any(s.kernel.endswith("pad_nd") for s in steps_of(marked)), why
    feeds = feeds_for(g)
    got, want = lower_and_run(g, feeds), run_graph(g, feeds)
    for name in g.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5)


def test_few_channel_conv_keeps_its_pad():
    """A 1x1 conv of Co <= 4 runs kdot, whose epilogue wants the full residual: no fusion."""
    marked = fused(blaze_block(2, 4))
    assert not any(n.attrs.get("fusion") for n in marked.nodes)
    feeds = feeds_for(marked)
    got, want = lower_and_run(marked, feeds), run_graph(marked, feeds)
    np.testing.assert_allclose(got[marked.outputs[0]], want[marked.outputs[0]], atol=1e-5)
