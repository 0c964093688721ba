"""sink_transposes on importer-style graphs: NCHW tensors, NHWC spatial ops in transposes."""
import numpy as np
import pytest

from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.passes import sink_transposes
from tests.passes.helpers import NCHW_TO_NHWC, NHWC_TO_NCHW, apply, conv_nchw, counts, rand


def run(graph):
    return apply(sink_transposes.run, graph, atol=1e-5)


def transposes(g):
    return [n for n in g.nodes if n.op is Op.TRANSPOSE]


def assert_boundary_only(g):
    """Exactly one transpose after the input and one before the output."""
    ts = transposes(g)
    assert len(ts) == 2, [t.attrs["perm"] for t in ts]
    assert ts[0].inputs == g.inputs[:1] and ts[0].attrs["perm"] == NCHW_TO_NHWC
    assert ts[1].outputs == g.outputs[:1] and ts[1].attrs["perm"] == NHWC_TO_NCHW


@pytest.mark.parametrize("c", [1, 3, 13])
def test_conv_relu_conv_chain_keeps_two_boundary_transposes(c):
    b = GraphBuilder()
    x = b.input("x", (1, c, 7, 6))
    y = b.node(Op.RELU, conv_nchw(b, x, c, 8, pads=(1, 1, 1, 1)))
    y = b.node(Op.SIGMOID, conv_nchw(b, y, 8, c, seed=2))
    g, n = run(b.build(y))
    assert n > 0 and counts(g)[Op.TRANSPOSE] == 2
    assert_boundary_only(g)
    assert [nd.op for nd in g.nodes] == [Op.TRANSPOSE, Op.CONV2D, Op.RELU, Op.CONV2D, Op.SIGMOID,
                                         Op.TRANSPOSE]


def test_pad_and_resize_on_nchw_tensors_become_nhwc():
    """image -> Pad(NCHW, reflect) -> conv, a residual add, a wrapped resize, a Pad, a conv."""
    b = GraphBuilder()
    x = b.input("image", (1, 3, 8, 10))
    p = b.node(Op.PAD, x, pads=(0, 0, 2, 1, 0, 0, 1, 2), mode="reflect")
    y = b.node(Op.RELU, conv_nchw(b, p, 3, 4))
    z = b.node(Op.RELU, conv_nchw(b, b.node(Op.PAD, y, pads=(0, 0, 1, 1, 0, 0, 1, 1),
                                            mode="reflect"), 4, 4, seed=3))
    y = b.node(Op.ADD, y, z)
    r = b.node(Op.TRANSPOSE, y, perm=NCHW_TO_NHWC)
    r = b.node(Op.RESIZE, r, size=(14, 18), coordinate_mode="asymmetric", nearest_mode="floor")
    r = b.node(Op.TRANSPOSE, r, perm=NHWC_TO_NCHW)
    r = b.node(Op.PAD, r, pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="reflect")
    out = conv_nchw(b, r, 4, 3, seed=4)
    g, _ = run(b.build(out))
    assert_boundary_only(g)
    pads = [nd for nd in g.nodes if nd.op is Op.PAD]
    assert pads[0].inputs[0] == transposes(g)[0].outputs[0]
    assert pads[0].attrs["pads"] == (0, 2, 1, 0, 0, 1, 2, 0)          # NHWC order now


OPERANDS = {  # name -> (builder of the other operand, expected extra nodes)
    "const_c11": (lambda b, c: b.const(rand((c, 1, 1), 3)), {}),
    "const_full": (lambda b, c: b.const(rand((1, c, 5, 6), 3)), {}),
    "const_scalar": (lambda b, c: b.const(np.float32(0.5)), {}),
    "runtime_vector": (lambda b, c: b.node(Op.EXP, b.input("v", (1, c, 1, 1))), {Op.RESHAPE: 1}),
    "runtime_small": (lambda b, c: b.node(Op.EXP, b.input("v", (c, 5, 1))),
                      {Op.RESHAPE: 1, Op.TRANSPOSE: 1}),
}


@pytest.mark.parametrize("op", [Op.ADD, Op.MUL, Op.SUB, Op.DIV, Op.PRELU])
@pytest.mark.parametrize("operand", OPERANDS)
def test_binary_operands(op, operand):
    c = 3
    b = GraphBuilder()
    x = b.input("x", (1, c, 5, 6))
    make, extra = OPERANDS[operand]
    y = conv_nchw(b, x, c, c, pads=(1, 1, 1, 1))
    other = make(b, c)
    y = b.node(op, y, other) if op is not Op.PRELU or "runtime" not in operand else \
        b.node(Op.MUL, y, other)
    y = conv_nchw(b, y, c, c, seed=3, pads=(1, 1, 1, 1))
    g, _ = run(b.build(y))
    k = counts(g)
    assert k[Op.TRANSPOSE] == 2 + extra.get(Op.TRANSPOSE, 0)
    assert k[Op.RESHAPE] == extra.get(Op.RESHAPE, 0)


def test_full_size_runtime_operand_blocks_the_push():
    """ADD(T(x), big) would need a full-size transpose of big: the transpose stays."""
    b = GraphBuilder()
    x = b.input("x", (1, 3, 5, 6))
    big = b.input("big", (1, 3, 5, 6))
    y = b.node(Op.ADD, conv_nchw(b, x, 3, 3, pads=(1, 1, 1, 1)), big)
    g, _ = run(b.build(y))
    add = next(nd for nd in g.nodes if nd.op is Op.ADD)
    assert g.producer(add.inputs[0]).op is Op.TRANSPOSE and add.inputs[1] == "big"


AXIS_OPS = {
    "reduce_keepdims": lambda b, y: b.node(Op.REDUCE_MEAN, y, axes=(2, 3), keepdims=True),
    "reduce_drop_c": lambda b, y: b.node(Op.REDUCE_SUM, y, axes=(1,), keepdims=False),
    "reduce_drop_h": lambda b, y: b.node(Op.REDUCE_SUM, y, axes=(-2,), keepdims=False),
    "reduce_all": lambda b, y: b.node(Op.REDUCE_MEAN, y, keepdims=False),
    "softmax": lambda b, y: b.node(Op.SOFTMAX, y, axis=1),
    "concat": lambda b, y: b.node(Op.CONCAT, y, b.node(Op.NEG, y), axis=1),
    "concat_const": lambda b, y: b.node(Op.CONCAT, y, b.const(rand((1, 2, 5, 6))), axis=-3),
    "slice": lambda b, y: b.node(Op.SLICE, y, starts=(1, 0), ends=(3, 4), axes=(1, -1),
                                 steps=(1, 2)),
    "pad": lambda b, y: b.node(Op.PAD, y, pads=(0, 1, 2, 0, 0, 0, 1, 3)),
    "cast": lambda b, y: b.node(Op.CAST, y, to="int32"),
}


@pytest.mark.parametrize("name", AXIS_OPS)
def test_axis_ops_are_remapped(name):
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 6))
    y = AXIS_OPS[name](b, conv_nchw(b, x, 4, 4, pads=(1, 1, 1, 1)))
    g, n = run(b.build(y))
    assert n >= 1
    # the op now reads the conv (NHWC) directly; the only transposes left are at the boundary
    op = g.producer(y) if g.producer(y).op is not Op.TRANSPOSE else \
        g.producer(g.producer(y).inputs[0])
    src = g.producer(op.inputs[0])
    assert src.op in (Op.CONV2D, Op.NEG), op
    assert all(t.outputs == [y] or t.inputs == ["x"] for t in transposes(g))


def test_hoists_preprocessing_next_to_the_input():
    """image -> (x - mean) / std -> Pad (NCHW) -> T -> conv: the transpose moves up to the image."""
    b = GraphBuilder()
    x = b.input("image", (1, 3, 6, 7))
    y = b.node(Op.SUB, x, b.const(rand((3, 1, 1), 5)))
    y = b.node(Op.DIV, y, b.const(np.abs(rand((1, 3, 1, 1), 6)) + 0.5))
    y = b.node(Op.PAD, y, pads=(0, 0, 1, 2, 0, 0, 2, 1), mode="edge")
    y = conv_nchw(b, y, 3, 5)
    g, _ = run(b.build(y))
    assert_boundary_only(g)
    assert [nd.op for nd in g.nodes] == [Op.TRANSPOSE, Op.SUB, Op.DIV, Op.PAD, Op.CONV2D,
                                         Op.TRANSPOSE]


def test_transpose_feeding_a_non_agnostic_op_is_not_duplicated():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 6))
    y = conv_nchw(b, x, 4, 4, pads=(1, 1, 1, 1))
    o1 = b.node(Op.RELU, y)
    o2 = b.node(Op.MATMUL, y, b.const(rand((6, 2))))                   # layout-sensitive user
    g, _ = run(b.build(o1, o2))
    assert counts(g)[Op.TRANSPOSE] == 2


def test_compose_and_cancel():
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4, 5))
    y = b.node(Op.TRANSPOSE, x, perm=(0, 2, 3, 1))
    y = b.node(Op.TRANSPOSE, y, perm=(1, 0, 2, 3))
    y = b.node(Op.TRANSPOSE, y, perm=(3, 2, 1, 0))
    z = b.node(Op.TRANSPOSE, b.node(Op.TRANSPOSE, x, perm=(0, 2, 3, 1)), perm=(0, 3, 1, 2))
    z = b.node(Op.RELU, z)
    g, _ = run(b.build(y, z))
    assert counts(g) == {Op.TRANSPOSE: 1, Op.RELU: 1}


def test_no_hoist_away_from_the_output():
    """norm -> T -> sigmoid -> output: the transpose sinks below the sigmoid, never back up."""
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    y = b.node(Op.SIGMOID, conv_nchw(b, x, 3, 3))
    g, _ = run(b.build(y))
    assert [nd.op for nd in g.nodes] == [Op.TRANSPOSE, Op.CONV2D, Op.SIGMOID, Op.TRANSPOSE]
    assert g.nodes[-1].outputs == [y]
