"""nchw_tail: the few-channel tail before an NCHW output computes planar; the transpose goes."""
import numpy as np

from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes import nchw_tail
from tests.kernels.harness import lower_and_run
from tests.passes.helpers import NHWC_TO_NCHW, apply, counts, feeds_for, rand


def conv(b, x, ci, co, k=3, seed=1, **attrs):
    w = b.const(rand((co, ci, k, k), seed, scale=1 / np.sqrt(ci * k * k)))
    return b.node(Op.CONV2D, x, w, b.const(rand((co,), seed + 1)), **attrs)


def norm(b, x, c, act=Activation.RELU, seed=7):
    return b.node(Op.INSTANCE_NORM, x, b.const(rand((c,), seed)), b.const(rand((c,), seed + 1)),
                  activation=act)


def style_tail(c=16, h=4, w=5):
    """multistyle26's expand stage in small: up2 3x3 c->8, norm, up2 3x3 8->4, norm, 9x9 4->3,
    norm + sigmoid, transpose to NCHW."""
    b = GraphBuilder()
    x = b.input("x", (1, h, w, c))
    up = dict(pads=(1, 1, 1, 1), pad_mode="reflect", upsample=2)
    y = norm(b, conv(b, x, c, 8, **up), 8)
    y = norm(b, conv(b, y, 8, 4, seed=3, **up), 4, seed=9)
    y = conv(b, y, 4, 3, k=9, seed=5, pads=(4, 4, 4, 4), pad_mode="reflect")
    y = norm(b, y, 3, Activation.SIGMOID, seed=11)
    return b, b.node(Op.TRANSPOSE, y, perm=NHWC_TO_NCHW)


def test_style_tail_runs_planar():
    b, out = style_tail()
    g, n = apply(nchw_tail.run, b.build(out))
    assert n == 1 and counts(g) == {Op.CONV2D: 3, Op.INSTANCE_NORM: 3}
    convs = [nd for nd in g.nodes if nd.op is Op.CONV2D]
    assert [(c.attrs["in_layout"], c.attrs["out_layout"]) for c in convs] == \
        [("nhwc", "nchw"), ("nchw", "nchw"), ("nchw", "nchw")]
    assert all(nd.attrs["layout"] == "nchw" for nd in g.nodes if nd.op is Op.INSTANCE_NORM)
    assert g.nodes[-1].outputs == [out] and g.tensors[out].shape == (1, 3, 16, 20)


def test_style_tail_through_the_kernels():
    """The planar plan's kernels (pix conv, planar norm) give the interpreter's output."""
    b, out = style_tail()
    g = b.build(out)
    want = run_graph(g, feeds_for(g))[out]
    nchw_tail.run(g)
    got = lower_and_run(g, feeds_for(g))[out]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


def test_stops_where_the_layout_cannot_change():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 8))
    wide = norm(b, conv(b, x, 8, 16), 16)                      # Co 16: no planar kernel
    y1 = b.node(Op.TRANSPOSE, norm(b, wide, 16, seed=3), perm=NHWC_TO_NCHW)
    shared = conv(b, x, 8, 4, seed=5)                          # read twice
    y2 = b.node(Op.TRANSPOSE, shared, perm=NHWC_TO_NCHW)
    y3 = b.node(Op.RELU, shared)
    strided = conv(b, x, 8, 4, seed=6, strides=(1, 2))         # column stride 2
    y4 = b.node(Op.TRANSPOSE, strided, perm=NHWC_TO_NCHW)
    res = conv(b, x, 8, 8, seed=8, pads=(1, 1, 1, 1))
    with_res = b.node(Op.CONV2D, x, b.const(rand((8, 8, 1, 1), 9)), b.const(rand((8,), 10)),
                      res)                                     # residual input
    y5 = b.node(Op.TRANSPOSE, with_res, perm=(0, 2, 3, 1))     # another permutation
    y6 = b.node(Op.TRANSPOSE, with_res, perm=NHWC_TO_NCHW)
    g, n = apply(nchw_tail.run, b.build(y1, y2, y3, y4, y5, y6))
    assert n == 0 and counts(g)[Op.TRANSPOSE] == 5


def test_conv_reads_nhwc_when_its_input_stays_nhwc():
    """A norm whose input is a graph input cannot go planar: the conv after it still writes
    NCHW and reads NHWC."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 6, 8))
    y = conv(b, norm(b, x, 8), 8, 3, pads=(1, 1, 1, 1))
    out = b.node(Op.TRANSPOSE, y, perm=NHWC_TO_NCHW)
    g, n = apply(nchw_tail.run, b.build(out))
    assert n == 1 and counts(g) == {Op.INSTANCE_NORM: 1, Op.CONV2D: 1}
    c = next(nd for nd in g.nodes if nd.op is Op.CONV2D)
    assert (c.attrs["in_layout"], c.attrs["out_layout"]) == ("nhwc", "nchw")
    assert next(nd for nd in g.nodes if nd.op is Op.INSTANCE_NORM).attrs["layout"] == "nhwc"
