"""fold_batch_norm, absorb_pad, absorb_upsample, fuse_residual_add, fuse_activation (NHWC)."""
import numpy as np
import pytest

from kernels import reference as ref
from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.passes import (absorb_pad, absorb_upsample, fold_batch_norm, fuse_activation,
                                  fuse_residual_add)
from tests.passes.helpers import apply, counts, rand


def conv(b, x, ci, co, k=3, bias=True, seed=1, **attrs):
    w = b.const(rand((co, ci, k, k), seed, scale=1 / np.sqrt(ci * k * k)))
    return b.node(Op.CONV2D, x, w, b.const(rand((co,), seed + 1)) if bias else None, **attrs)


def bn(b, x, c, seed=5):
    var = np.abs(rand((c,), seed + 3)) + 0.1
    return b.node(Op.BATCH_NORM, x, b.const(rand((c,), seed)), b.const(rand((c,), seed + 1)),
                  b.const(rand((c,), seed + 2)), b.const(var), epsilon=1e-3)


# --- fold_batch_norm ---------------------------------------------------------------------------
@pytest.mark.parametrize("ci,co,bias,group", [(1, 1, True, 1), (3, 13, False, 1),
                                              (24, 24, True, 24), (8, 64, True, 2),
                                              (13, 65, False, 1)])
def test_fold_batch_norm(ci, co, bias, group):
    b = GraphBuilder()
    x = b.input("x", (1, 5, 6, ci))
    w = b.const(rand((co, ci // group, 3, 3), 1, scale=0.3))
    y = b.node(Op.CONV2D, x, w, b.const(rand((co,), 2)) if bias else None, group=group,
               pads=(1, 1, 1, 1))
    y = b.node(Op.RELU, bn(b, y, co))
    g, n = apply(fold_batch_norm.run, b.build(y), atol=1e-5)
    assert n == 1 and counts(g) == {Op.CONV2D: 1, Op.RELU: 1}


def test_fold_batch_norm_moves_the_bn_activation_and_keeps_output_name():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 4, 3))
    params = [b.const(np.abs(rand((5,), s)) + 0.5) for s in range(4)]
    y = b.node(Op.BATCH_NORM, conv(b, x, 3, 5), *params, activation=Activation.RELU)
    g, n = apply(fold_batch_norm.run, b.build(y))
    assert n == 1 and g.nodes[0].attrs["activation"] is Activation.RELU
    assert g.nodes[0].outputs == [y]


def test_fold_batch_norm_refusals():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 4, 3))
    two_users = conv(b, x, 3, 4)
    out1 = b.node(Op.ADD, bn(b, two_users, 4), two_users)
    fused_act = conv(b, x, 3, 4, activation=Activation.RELU)
    out2 = bn(b, fused_act, 4)
    graph_out = conv(b, x, 3, 4)
    out3 = bn(b, graph_out, 4)
    runtime_mean = b.input("mean", (4,))
    out4 = b.node(Op.BATCH_NORM, conv(b, x, 3, 4), *[b.const(np.ones(4, np.float32))] * 2,
                  runtime_mean, b.const(np.ones(4, np.float32)))
    out5 = bn(b, b.node(Op.RELU, x), 3)                                # BN alone stays
    g, n = apply(fold_batch_norm.run, b.build(out1, out2, graph_out, out3, out4, out5))
    assert n == 0 and counts(g)[Op.BATCH_NORM] == 5


# --- absorb_pad --------------------------------------------------------------------------------
PAD_CASES = [  # (pad mode, pads t l b r, conv pads, conv pad_mode, absorbed)
    ("reflect", (1, 1, 1, 1), (0, 0, 0, 0), "constant", True),
    ("reflect", (4, 3, 2, 1), (0, 0, 0, 0), "constant", True),
    ("edge", (2, 0, 1, 3), (1, 1, 1, 1), "edge", True),
    ("constant", (1, 2, 0, 1), (1, 1, 1, 1), "constant", True),
    ("constant", (1, 1, 1, 1), (0, 0, 0, 0), "reflect", True),        # no conv pads: mode is free
    ("reflect", (1, 1, 1, 1), (1, 1, 1, 1), "reflect", False),        # reflect twice != once
    ("edge", (1, 1, 1, 1), (1, 1, 1, 1), "constant", False),          # modes differ
]


@pytest.mark.parametrize("mode,pads,conv_pads,conv_mode,absorbed", PAD_CASES)
def test_absorb_pad(mode, pads, conv_pads, conv_mode, absorbed):
    t, l, bo, r = pads
    b = GraphBuilder()
    x = b.input("x", (1, 6, 7, 3))
    p = b.node(Op.PAD, b.node(Op.RELU, x), pads=(0, t, l, 0, 0, bo, r, 0), mode=mode)
    y = conv(b, p, 3, 4, pads=conv_pads, pad_mode=conv_mode)
    g, n = apply(absorb_pad.run, b.build(y))
    assert n == int(absorbed) and counts(g)[Op.PAD] == int(not absorbed)
    if absorbed:
        c = next(nd for nd in g.nodes if nd.op is Op.CONV2D)
        assert c.attrs["pad_mode"] == mode
        assert c.attrs["pads"] == tuple(a + q for a, q in zip(pads, conv_pads))


def test_reflect_twice_is_not_reflect_once():
    """Why reflect pads are absorbed only into a conv without pads of its own."""
    x = np.arange(5, dtype=np.float32)
    assert not np.array_equal(np.pad(np.pad(x, 1, mode="reflect"), 1, mode="reflect"),
                              np.pad(x, 2, mode="reflect"))


def test_absorb_pad_refusals():
    b = GraphBuilder()
    x = b.node(Op.RELU, b.input("x", (1, 6, 7, 3)))
    nonzero = b.node(Op.PAD, x, pads=(0, 1, 1, 0, 0, 1, 1, 0), value=0.5)
    o1 = conv(b, nonzero, 3, 2)
    channels = b.node(Op.PAD, x, pads=(0, 1, 1, 1, 0, 1, 1, 0))            # pads C too
    o2 = conv(b, channels, 4, 2)
    shared = b.node(Op.PAD, x, pads=(0, 1, 1, 0, 0, 1, 1, 0), mode="reflect")
    o3 = b.node(Op.ADD, conv(b, shared, 3, 2, k=1), conv(b, shared, 3, 2, k=1, seed=3))
    upsampled = b.node(Op.PAD, x, pads=(0, 1, 1, 0, 0, 1, 1, 0), mode="edge")
    o4 = conv(b, upsampled, 3, 2, upsample=2)                               # pad, then upsample
    g, n = apply(absorb_pad.run, b.build(o1, o2, o3, o4))
    assert n == 0 and counts(g)[Op.PAD] == 4


# --- absorb_upsample -----------------------------------------------------------------------------
MODES = [(cm, nm) for cm in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                             "tf_half_pixel_for_nn")
         for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")]


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("coordinate_mode,nearest_mode", MODES)
def test_absorb_upsample_accepts_exactly_the_repeats(coordinate_mode, nearest_mode, k):
    """Accepted iff the reference RESIZE equals np.repeat on this very input."""
    b = GraphBuilder()
    x = b.node(Op.RELU, b.input("x", (1, 5, 6, 3)))
    r = b.node(Op.RESIZE, x, size=(5 * k, 6 * k), coordinate_mode=coordinate_mode,
               nearest_mode=nearest_mode)
    y = conv(b, r, 3, 4, pads=(1, 1, 1, 1), pad_mode="reflect")
    data = rand((1, 5, 6, 3), 7)
    is_repeat = np.array_equal(
        ref.resize(data, (5 * k, 6 * k), "nearest", coordinate_mode, nearest_mode),
        data.repeat(k, axis=1).repeat(k, axis=2))
    g, n = apply(absorb_upsample.run, b.build(y))
    assert n == int(is_repeat) and counts(g)[Op.RESIZE] == int(not is_repeat)
    if is_repeat:
        assert next(nd for nd in g.nodes if nd.op is Op.CONV2D).attrs["upsample"] == k


def test_asymmetric_floor_is_absorbed():
    """The exporter's mode for nearest x2 (multistyle26) must be among the accepted ones."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 4, 2))
    r = b.node(Op.RESIZE, x, size=(8, 8), coordinate_mode="asymmetric", nearest_mode="floor",
               scales=(2.0, 2.0))
    g, n = apply(absorb_upsample.run, b.build(conv(b, r, 2, 2)))
    assert n == 1


def test_absorb_upsample_refusals():
    b = GraphBuilder()
    x = b.node(Op.RELU, b.input("x", (1, 4, 6, 3)))
    linear = b.node(Op.RESIZE, x, size=(8, 12), mode="linear")
    o1 = conv(b, linear, 3, 2)
    unequal = b.node(Op.RESIZE, x, size=(8, 18), coordinate_mode="asymmetric", nearest_mode="floor")
    o2 = conv(b, unequal, 3, 2)
    fractional = b.node(Op.RESIZE, x, size=(6, 9), coordinate_mode="asymmetric",
                        nearest_mode="floor")
    o3 = conv(b, fractional, 3, 2)
    shared = b.node(Op.RESIZE, x, size=(8, 12), coordinate_mode="asymmetric", nearest_mode="floor")
    o4 = b.node(Op.ADD, conv(b, shared, 3, 2), conv(b, shared, 3, 2, seed=4))
    already = b.node(Op.RESIZE, x, size=(8, 12), coordinate_mode="asymmetric", nearest_mode="floor")
    o5 = conv(b, already, 3, 2, upsample=2)
    g, n = apply(absorb_upsample.run, b.build(o1, o2, o3, o4, o5))
    assert n == 0 and counts(g)[Op.RESIZE] == 5


# --- fuse_residual_add ---------------------------------------------------------------------------
@pytest.mark.parametrize("bias,conv_first,act", [(True, True, Activation.NONE),
                                                 (False, False, Activation.RELU)])
def test_fuse_residual_add(bias, conv_first, act):
    b = GraphBuilder()
    x = b.input("x", (1, 5, 5, 4))
    c = conv(b, x, 4, 4, bias=bias, pads=(1, 1, 1, 1))
    other = b.node(Op.TANH, x)                    # computed after the conv: the conv must move
    y = b.node(Op.ADD, *((c, other) if conv_first else (other, c)), activation=act)
    g, n = apply(fuse_residual_add.run, b.build(y))
    assert n == 1 and counts(g) == {Op.CONV2D: 1, Op.TANH: 1}
    node = next(nd for nd in g.nodes if nd.op is Op.CONV2D)
    assert len(node.inputs) == 4 and node.inputs[3] == other and node.outputs == [y]
    assert node.attrs["activation"] is act


def test_relu_of_conv_plus_x_fuses_both():
    b = GraphBuilder()
    x = b.input("x", (1, 5, 5, 4))
    y = b.node(Op.RELU, b.node(Op.ADD, conv(b, x, 4, 4, pads=(1, 1, 1, 1)), x))
    g, n = apply(fuse_residual_add.run, b.build(y))
    g, m = apply(fuse_activation.run, g)
    assert (n, m) == (1, 1) and counts(g) == {Op.CONV2D: 1}
    assert g.nodes[0].attrs["activation"] is Activation.RELU and g.nodes[0].inputs[3] == x


def test_fuse_residual_add_refusals():
    b = GraphBuilder()
    x = b.input("x", (1, 5, 5, 4))
    acted = conv(b, x, 4, 4, pads=(1, 1, 1, 1), activation=Activation.RELU)
    o1 = b.node(Op.ADD, acted, x)
    shared = conv(b, x, 4, 4, pads=(1, 1, 1, 1))
    o2 = b.node(Op.ADD, shared, x)
    o3 = b.node(Op.MUL, shared, x)
    broadcast = conv(b, x, 4, 4, pads=(1, 1, 1, 1))
    o4 = b.node(Op.ADD, broadcast, b.const(rand((4,))))
    graph_out = conv(b, x, 4, 4, pads=(1, 1, 1, 1))
    o5 = b.node(Op.ADD, graph_out, x)
    same = conv(b, x, 4, 4, pads=(1, 1, 1, 1))
    o6 = b.node(Op.ADD, same, same)
    g, n = apply(fuse_residual_add.run, b.build(o1, o2, o3, o4, graph_out, o5, o6))
    assert n == 0 and counts(g)[Op.ADD] == 5


# --- fuse_activation -----------------------------------------------------------------------------
ACTS = [(Op.RELU, {}, Activation.RELU, ()),
        (Op.CLIP, {"min": 0.0, "max": 6.0}, Activation.CLAMP, (0.0, 6.0)),
        (Op.LEAKY_RELU, {"alpha": 0.1}, Activation.LEAKY_RELU, (0.1,)),
        (Op.SIGMOID, {}, Activation.SIGMOID, ()),
        (Op.TANH, {}, Activation.TANH, ()),
        (Op.HARD_SIGMOID, {"alpha": 0.3, "beta": 0.4}, Activation.HARD_SIGMOID, (0.3, 0.4)),
        (Op.HARD_SWISH, {}, Activation.HARD_SWISH, ())]
PRODUCERS = ["conv", "add", "instance_norm"]


@pytest.mark.parametrize("producer", PRODUCERS)
@pytest.mark.parametrize("op,attrs,act,params", ACTS, ids=[a[0].name for a in ACTS])
def test_fuse_activation(op, attrs, act, params, producer):
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 3))
    if producer == "conv":
        y = conv(b, x, 3, 3, pads=(1, 1, 1, 1))
    elif producer == "add":
        y = b.node(Op.ADD, x, b.const(rand((3,), 2)))
    else:
        y = b.node(Op.INSTANCE_NORM, x, b.const(rand((3,), 2)), b.const(rand((3,), 3)))
    y = b.node(op, y, **attrs)
    g, n = apply(fuse_activation.run, b.build(y))
    assert n == 1 and len(g.nodes) == 1 and g.nodes[0].outputs == [y]
    assert g.nodes[0].attrs["activation"] is act
    assert g.nodes[0].attrs["act_params"] == pytest.approx(params)


def test_fuse_activation_refusals():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 3))
    shared = conv(b, x, 3, 3)
    o1 = b.node(Op.ADD, b.node(Op.RELU, shared), shared)
    acted = conv(b, x, 3, 3, activation=Activation.TANH)
    o2 = b.node(Op.RELU, acted)
    graph_out = conv(b, x, 3, 3)
    o3 = b.node(Op.SIGMOID, graph_out)
    o4 = b.node(Op.RELU, b.node(Op.RESHAPE, x, shape=(1, 5, 4, 3)))    # no epilogue
    o5 = b.node(Op.RELU, x)                                            # a graph input
    g, n = apply(fuse_activation.run, b.build(o1, o2, graph_out, o3, o4, o5))
    assert n == 0 and counts(g)[Op.RELU] == 4 and counts(g)[Op.SIGMOID] == 1
