"""fold_layout_chain against the IR interpreter (helpers.apply): a channel shuffle in NHWC is one
transpose, an identity chain only views, chains that are not a strided permutation stay."""
import numpy as np
import pytest

from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.passes import fold_layout_chain
from tests.passes.helpers import apply, counts


def _shuffle(h, w, groups, c):
    b = GraphBuilder("shuffle")
    x = b.input("x", (1, h, w, c))
    t = b.node(Op.TRANSPOSE, x, perm=(0, 3, 1, 2))
    t = b.node(Op.RESHAPE, t, shape=(1, groups, c // groups, h, w))
    t = b.node(Op.TRANSPOSE, t, perm=(0, 2, 1, 3, 4))
    t = b.node(Op.RESHAPE, t, shape=(1, c, h, w))
    return b.build(b.node(Op.TRANSPOSE, t, perm=(0, 2, 3, 1)))


@pytest.mark.parametrize("groups,c", [(3, 24), (4, 112), (2, 6), (8, 64)])
def test_channel_shuffle_is_one_transpose(groups, c):
    g, n = apply(fold_layout_chain.run, _shuffle(5, 7, groups, c))
    assert n == 1 and counts(g)[Op.TRANSPOSE] == 1


def test_a_round_trip_is_only_views():
    b = GraphBuilder("round_trip")
    x = b.input("x", (1, 4, 6, 8))
    t = b.node(Op.TRANSPOSE, b.node(Op.TRANSPOSE, x, perm=(0, 3, 1, 2)), perm=(0, 2, 3, 1))
    g, n = apply(fold_layout_chain.run, b.build(b.node(Op.RELU, t)))
    assert n == 1 and Op.TRANSPOSE not in counts(g)


def test_an_intermediate_read_elsewhere_stops_the_chain():
    b = GraphBuilder("shared")
    x = b.input("x", (1, 4, 6, 8))
    t1 = b.node(Op.TRANSPOSE, x, perm=(0, 3, 1, 2))
    t2 = b.node(Op.TRANSPOSE, t1, perm=(0, 2, 3, 1))
    g, n = apply(fold_layout_chain.run, b.build(t2, t1))
    assert n == 0


def test_a_single_transpose_stays():
    b = GraphBuilder("one")
    x = b.input("x", (1, 4, 6, 8))
    g, n = apply(fold_layout_chain.run, b.build(b.node(Op.TRANSPOSE, x, perm=(0, 3, 1, 2))))
    assert n == 0


def test_digits_reject_a_non_strided_map():
    assert fold_layout_chain._digits(np.array([0, 2, 1, 3, 5, 4])) is None
    assert fold_layout_chain._digits(np.arange(6)) == [(6, 1)]
