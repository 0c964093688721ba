"""fold_constants and remove_dead on tiny graphs."""
import numpy as np
import pytest

from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes import fold_constants, remove_dead
from tests.passes.helpers import apply, counts, feeds_for, rand


def test_fold_constants_folds_a_chain_in_one_sweep():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    c = b.const(rand((3, 2)))
    c = b.node(Op.TRANSPOSE, c, perm=(1, 0))            # [2, 3]
    c = b.node(Op.RESHAPE, c, shape=(2, 3))
    c = b.node(Op.MUL, c, b.const(np.float32(2)))
    y = b.node(Op.ADD, x, c)
    g, n = apply(fold_constants.run, b.build(y))
    assert n == 3
    assert counts(g) == {Op.ADD: 1}
    np.testing.assert_array_equal(g.const(g.nodes[0].inputs[1]),
                                  b.graph.const(b.graph.nodes[0].inputs[0]).T * 2)


def test_fold_constants_keeps_runtime_nodes_and_graph_outputs():
    b = GraphBuilder()
    x = b.input("x", (4,))
    y = b.node(Op.RELU, x)
    z = b.node(Op.NEG, b.const(rand((4,))))              # writes a graph output: stays
    g, n = apply(fold_constants.run, b.build(y, z))
    assert n == 0 and counts(g) == {Op.RELU: 1, Op.NEG: 1}


IDENTITIES = [  # (op, input shape, attrs)
    (Op.RESHAPE, (1, 4, 5, 3), {"shape": (1, 4, 5, 3)}),
    (Op.TRANSPOSE, (1, 4, 5, 3), {"perm": (0, 1, 2, 3)}),
    (Op.CAST, (1, 4, 5, 3), {"to": "float32"}),
    (Op.PAD, (1, 4, 5, 3), {"pads": (0,) * 8, "mode": "reflect"}),
    (Op.RESIZE, (1, 4, 5, 3), {"size": (4, 5)}),
    (Op.RESIZE, (1, 4, 5, 3), {"size": (4, 5), "mode": "linear",
                               "coordinate_mode": "align_corners"}),
    (Op.RESIZE, (1, 4, 5, 3), {"size": (4, 5), "coordinate_mode": "asymmetric",
                               "nearest_mode": "floor"}),
]


@pytest.mark.parametrize("op,shape,attrs", IDENTITIES, ids=[f"{o.name}-{i}" for i, (o, _, _)
                                                             in enumerate(IDENTITIES)])
def test_remove_dead_drops_identity_nodes(op, shape, attrs):
    b = GraphBuilder()
    x = b.input("x", shape)
    y = b.node(op, b.node(Op.RELU, x), **attrs)
    y = b.node(Op.SIGMOID, y)
    g, n = apply(remove_dead.run, b.build(y))
    assert n == 1 and counts(g) == {Op.RELU: 1, Op.SIGMOID: 1}


def test_remove_dead_keeps_a_same_size_resize_that_shifts():
    """tf_half_pixel_for_nn + round_prefer_ceil samples x+0.5 rounded up: not the identity."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 2))
    y = b.node(Op.RESIZE, b.node(Op.RELU, x), size=(4, 5), coordinate_mode="tf_half_pixel_for_nn",
               nearest_mode="round_prefer_ceil")
    graph = b.build(y)
    feeds = feeds_for(graph)
    out = run_graph(graph, feeds)[y]
    assert not np.array_equal(out, np.maximum(feeds["x"], 0))     # the reference shifts
    g, n = apply(remove_dead.run, graph)
    assert n == 0 and counts(g)[Op.RESIZE] == 1


def test_remove_dead_keeps_non_identities_and_boundary_copies():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 3))
    a = b.node(Op.TRANSPOSE, x, perm=(0, 2, 1, 3))                  # a real transpose
    c = b.node(Op.CAST, x, to="int32")                              # a real cast
    d = b.node(Op.PAD, x, pads=(0, 1, 0, 0, 0, 0, 0, 0))
    e = b.node(Op.RESHAPE, x, shape=(1, 4, 5, 3))                    # input -> output copy
    g, n = apply(remove_dead.run, b.build(a, c, d, e))
    assert n == 0 and len(g.nodes) == 4


def test_remove_dead_prunes_unused_branches_and_collapses_reshapes():
    b = GraphBuilder()
    x = b.input("x", (2, 6))
    b.node(Op.EXP, b.node(Op.NEG, x))                                # dead branch
    y = b.node(Op.RESHAPE, b.node(Op.RESHAPE, x, shape=(3, 4)), shape=(12,))
    y = b.node(Op.RESHAPE, y, shape=(2, 6))                          # == x's shape: identity
    y = b.node(Op.RELU, y)
    g, n = apply(remove_dead.run, b.build(y))
    assert n == 5 and counts(g) == {Op.RELU: 1}
    assert g.nodes[0].inputs == ["x"]
    assert set(g.tensors) == {"x", y}
