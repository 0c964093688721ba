"""fuse_instance_norm: exporter variants of the written-out norm -> one INSTANCE_NORM."""
import numpy as np
import pytest

from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.passes import fuse_instance_norm, sink_transposes
from tests.passes.helpers import apply, conv_nchw, counts, rand

SPATIAL = {"nchw": (2, 3), "nhwc": (1, 2)}


def written_norm(b, x, layout="nchw", square="pow", normalize="div", eps_first=False,
                 scale=None, shift=None, eps=1e-5):
    """The instance norm as exporters write it, on ``x`` in ``layout``."""
    axes = SPATIAL[layout]
    m = b.node(Op.REDUCE_MEAN, x, axes=axes, keepdims=True)
    d = b.node(Op.SUB, x, m)
    sq = b.node(Op.POW, d, b.const(np.float32(2))) if square == "pow" else b.node(Op.MUL, d, d)
    v = b.node(Op.REDUCE_MEAN, sq, axes=axes, keepdims=True)
    e = b.const(np.full((1,), eps, np.float32))
    v = b.node(Op.ADD, e, v) if eps_first else b.node(Op.ADD, v, e)
    s = b.node(Op.SQRT, v)
    if normalize == "div":
        n = b.node(Op.DIV, d, s)
    elif normalize == "reciprocal":
        n = b.node(Op.MUL, b.node(Op.RECIPROCAL, s), d)
    else:
        n = b.node(Op.MUL, d, b.node(Op.DIV, b.const(np.float32(1)), s))
    if scale is not None:
        n = b.node(Op.MUL, n, scale)
    if shift is not None:
        n = b.node(Op.ADD, shift, n)
    return n


def affine(b, kind, n, c, seed):
    """A scale/shift operand: None, a constant of some shape, or a run-time input."""
    if kind is None:
        return None
    if kind == "runtime":                        # computed from an input, like style_weights
        w = b.input(f"style{seed}", (5,))
        table = b.const(rand((5, c), seed))
        v = b.node(Op.REDUCE_SUM, b.node(Op.MUL, b.node(Op.RESHAPE, w, shape=(5, 1)), table),
                   axes=(0,), keepdims=False)
        return b.node(Op.RESHAPE, v, shape=(1, c, 1, 1))
    if kind == "runtime_per_image":
        return b.input(f"style{seed}", (n, c, 1, 1))
    shape = {"c11": (c, 1, 1), "1c11": (1, c, 1, 1), "nc11": (n, c, 1, 1), "c": (c,),
             "scalar": ()}[kind]
    return b.const(rand(shape, seed))


CASES = [  # (layout, square, normalize, eps_first, scale, shift, channels)
    ("nchw", "pow", "div", False, "runtime", "runtime", 3),
    ("nchw", "mul", "reciprocal", True, "1c11", "c11", 13),
    ("nchw", "pow", "div1", False, "c11", "1c11", 1),
    ("nchw", "mul", "div", True, None, None, 24),
    ("nchw", "pow", "reciprocal", False, "1c11", None, 8),
    ("nchw", "pow", "div", False, None, "runtime", 4),
    ("nchw", "pow", "div", False, "scalar", "scalar", 5),
    ("nhwc", "pow", "div", False, "c", "c", 13),
    ("nhwc", "mul", "div1", True, "runtime", "c", 3),
]


@pytest.mark.parametrize("layout,square,normalize,eps_first,scale,shift,c", CASES)
def test_fuses_exporter_variants(layout, square, normalize, eps_first, scale, shift, c):
    b = GraphBuilder()
    shape = (1, c, 6, 7) if layout == "nchw" else (1, 6, 7, c)
    x = b.node(Op.RELU, b.input("x", shape))
    if layout == "nhwc" and scale == "runtime":
        s = b.node(Op.RESHAPE, affine(b, "runtime", 1, c, 3), shape=(c,))
    else:
        s = affine(b, scale, 1, c, 3)
    y = written_norm(b, x, layout, square, normalize, eps_first, s, affine(b, shift, 1, c, 4))
    g, n = apply(fuse_instance_norm.run, b.build(y), atol=1e-4)
    assert n == 1
    k = counts(g)
    assert k[Op.INSTANCE_NORM] == 1 and k[Op.SQRT] == 0 and k[Op.REDUCE_MEAN] == 0
    assert k[Op.TRANSPOSE] == (2 if layout == "nchw" else 0)
    norm = next(nd for nd in g.nodes if nd.op is Op.INSTANCE_NORM)
    assert norm.attrs["epsilon"] == pytest.approx(1e-5)
    assert g.tensors[norm.inputs[1]].shape == (c,)


def test_per_image_runtime_scale_becomes_n_by_c():
    b = GraphBuilder()
    x = b.input("x", (2, 3, 5, 4))
    y = written_norm(b, x, scale=affine(b, "runtime_per_image", 2, 3, 1),
                     shift=affine(b, "nc11", 2, 3, 2))
    g, n = apply(fuse_instance_norm.run, b.build(y), atol=1e-4)
    norm = next(nd for nd in g.nodes if nd.op is Op.INSTANCE_NORM)
    assert n == 1 and [g.tensors[i].shape for i in norm.inputs[1:]] == [(2, 3), (2, 3)]


def test_graph_output_name_is_kept():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    y = written_norm(b, x, scale=affine(b, "1c11", 1, 3, 1), shift=affine(b, "1c11", 1, 3, 2))
    graph = b.build(y)
    g, n = apply(fuse_instance_norm.run, graph, atol=1e-4)
    assert n == 1 and g.outputs == [y] and g.producer(y).op is Op.TRANSPOSE


def test_importer_form_cancels_against_conv_wrappers():
    """x comes from an NHWC conv through the importer's transposes; after sink_transposes the
    conv feeds the norm directly."""
    b = GraphBuilder()
    x = b.input("x", (1, 3, 8, 8))
    c = conv_nchw(b, x, 3, 8, pads=(1, 1, 1, 1))
    y = written_norm(b, c, scale=affine(b, "runtime", 1, 8, 1), shift=affine(b, "runtime", 1, 8, 2))
    y = conv_nchw(b, b.node(Op.RELU, y), 8, 4)
    g, _ = apply(fuse_instance_norm.run, b.build(y), atol=1e-4)
    g, _ = apply(sink_transposes.run, g, atol=1e-4)
    k = counts(g)
    assert k[Op.INSTANCE_NORM] == 1 and k[Op.TRANSPOSE] == 2
    norm = next(nd for nd in g.nodes if nd.op is Op.INSTANCE_NORM)
    assert g.producer(norm.inputs[0]).op is Op.CONV2D


def _refused(build):
    b = GraphBuilder()
    y = build(b)
    g, n = apply(fuse_instance_norm.run, b.build(*([y] if isinstance(y, str) else y)), atol=1e-4)
    return n, counts(g)


def test_refuses_when_an_intermediate_is_used_elsewhere():
    def build(b):
        x = b.input("x", (1, 3, 4, 4))
        y = written_norm(b, x)
        d = b.graph.nodes[1].outputs[0]                              # x - mean
        return [y, b.node(Op.NEG, d)]
    n, k = _refused(build)
    assert n == 0 and k[Op.INSTANCE_NORM] == 0


def test_refuses_other_axes_and_runtime_eps():
    def other_axes(b):
        x = b.input("x", (1, 3, 4, 4))
        m = b.node(Op.REDUCE_MEAN, x, axes=(3,), keepdims=True)       # one axis: not a norm
        d = b.node(Op.SUB, x, m)
        v = b.node(Op.REDUCE_MEAN, b.node(Op.MUL, d, d), axes=(3,), keepdims=True)
        return b.node(Op.DIV, d, b.node(Op.SQRT, b.node(Op.ADD, v, b.const(np.float32(1e-5)))))

    def runtime_eps(b):
        x = b.input("x", (1, 3, 4, 4))
        e = b.input("eps", (1,))
        m = b.node(Op.REDUCE_MEAN, x, axes=(2, 3), keepdims=True)
        d = b.node(Op.SUB, x, m)
        v = b.node(Op.REDUCE_MEAN, b.node(Op.MUL, d, d), axes=(2, 3), keepdims=True)
        return b.node(Op.DIV, d, b.node(Op.SQRT, b.node(Op.ADD, v, b.node(Op.EXP, e))))
    for build in (other_axes, runtime_eps):
        n, k = _refused(build)
        assert n == 0 and k[Op.INSTANCE_NORM] == 0


def test_spatially_varying_scale_stays_outside():
    """A scale that varies along W is not a per-channel affine: the norm fuses, the MUL stays."""
    def build(b):
        x = b.input("x", (1, 3, 4, 5))
        return written_norm(b, x, scale=b.const(rand((1, 3, 1, 5))),
                            shift=b.const(rand((3, 1, 1))))
    n, k = _refused(build)
    assert n == 1 and k[Op.INSTANCE_NORM] == 1 and k[Op.MUL] == 1 and k[Op.ADD] == 1
