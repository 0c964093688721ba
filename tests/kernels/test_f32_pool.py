"""fp32 pooling kernels (kernels/f32_pool.py) against kernels/reference.py, directly (walking the
kernel table) and through lowering+binding of GraphBuilder nodes."""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import f32_pool as k
from kernels import reference as ref
from kernels import table
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import DType, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS
from tests.tolerances import assert_f32_close

CHANNELS = [1, 3, 13, 24, 63, 64, 65]
RNG = np.random.default_rng(1)
# (kernel, strides, pads top/left/bottom/right, dilations)
GEOMETRIES = [((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
              ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
              ((2, 3), (1, 2), (0, 1, 2, 1), (2, 3)),
              ((5, 5), (3, 1), (2, 2, 2, 2), (1, 1)),
              ((7, 11), (1, 1), (0, 0, 0, 0), (1, 1))]          # window = whole image


def close(out, want, n, what):
    """assert_f32_close where NaN (a window wholly in padding: 0/0) must match NaN."""
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(out), nan, err_msg=what)
    assert_f32_close(np.where(nan, 0, out), np.where(nan, 0, want), n, what)


def _x(shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _direct(kid, x, geo, parallel, count_include_pad=False):
    serial_fn, parallel_fn, reference = k.KERNELS[kid]
    fn = parallel_fn if parallel else serial_fn
    if kid == "f32_global_avgpool_nhwc":
        n, h, w, c = x.shape
        out = np.full((n, 1, 1, c), np.nan, np.float32)
        partial = np.zeros((n * (k.GLOBAL_CHUNKS if parallel else 1), c))
        fn(x.reshape(n, h * w, c), out.reshape(n, c), partial)
        return out, reference(x), h * w
    (kh, kw), (sh, sw), pads, (dh, dw) = geo
    if kid == "f32_maxpool2d_nhwc":
        want = reference(x, (kh, kw), (sh, sw), pads, (dh, dw))
        out = np.full(want.shape, np.nan, np.float32)
        fn(x, out, kh, kw, sh, sw, pads[0], pads[1], dh, dw)
        return out, want, 1
    want = reference(x, (kh, kw), (sh, sw), pads, count_include_pad)
    out = np.full(want.shape, np.nan, np.float32)
    fn(x, out, kh, kw, sh, sw, pads[0], pads[1], count_include_pad)
    return out, want, kh * kw


POOL_IDS = [kid for r in table.ROWS if r.family == "f32_pool" for kid in r.ids]
CASES = [(kid, c, g) for kid in POOL_IDS for c in CHANNELS
         for g in (range(len(GEOMETRIES)) if kid != "f32_global_avgpool_nhwc" else [0])]


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # 0/0 in padding
@pytest.mark.parametrize("kid,c,g", CASES)
def test_table(kid, c, g):
    geo = GEOMETRIES[g]
    if kid != "f32_maxpool2d_nhwc":
        geo = geo[:3] + ((1, 1),)
    x = _x((2, 7, 11, c))
    for count_include_pad in (False, True) if kid == "f32_avgpool2d_nhwc" else (False,):
        out, want, n = _direct(kid, x, geo, parallel=c == 64, count_include_pad=count_include_pad)
        if kid == "f32_maxpool2d_nhwc":
            np.testing.assert_array_equal(out, want)
        else:
            close(out, want, n, f"{kid} c={c} {geo} cip={count_include_pad}")


def test_maxpool_nan_and_all_padding():
    x = _x((1, 3, 3, 5))
    x[0, 1, 1, 2] = np.nan
    geo = ((2, 2), (1, 1), (0, 0, 0, 0), (1, 1))
    out, want, _ = _direct("f32_maxpool2d_nhwc", x, geo, parallel=False)
    assert np.isnan(out[0, :2, :2, 2]).all() and not np.isnan(out[..., [0, 1, 3, 4]]).any()
    np.testing.assert_array_equal(out, want)
    # windows entirely in padding: -inf (max pool) like the reference
    geo = ((1, 1), (3, 3), (2, 2, 0, 0), (1, 1))
    out, want, _ = _direct("f32_maxpool2d_nhwc", x, geo, parallel=False)
    assert np.isneginf(out[0, 0, 0]).all()
    np.testing.assert_array_equal(out, want)


def test_global_avgpool_large_parallel():
    x = _x((2, 96, 80, 24)) + np.float32(3)
    for parallel in (False, True):
        out, want, n = _direct("f32_global_avgpool_nhwc", x, (None,) * 4, parallel)
        assert_f32_close(out, want, 4, "global avg pool (float64 sums)")


# --- through lowering + binding ---------------------------------------------------------------
def run_lowered(graph, feeds):
    values = {**feeds, **{n: t.data for n, t in graph.tensors.items() if t.is_const}}
    kernels = []
    for node in graph.nodes:
        for step in lower_node(node, graph):
            params = json.loads(json.dumps(step.params))
            outs = [np.full(graph.tensors[o].shape, np.nan, np.float32) for o in step.outputs]
            fn, args = BINDERS[step.kernel](params, step.weights,
                                             [values[n] for n in step.inputs], outs)
            fn(*args)
            values.update(zip(step.outputs, outs))
            kernels.append(step.kernel)
    return {o: values[o] for o in graph.outputs}, kernels


@pytest.mark.parametrize("shape", [(2, 7, 11, 3), (1, 64, 64, 24)])   # serial, parallel
def test_lowered_graph(shape):
    b = GraphBuilder()
    x = b.input("x", shape)
    m = b.node(Op.MAX_POOL, x, kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
               dilations=(1, 2))
    a = b.node(Op.AVG_POOL, x, kernel=(3, 2), strides=(1, 2), pads=(1, 0, 1, 1))
    ai = b.node(Op.AVG_POOL, x, kernel=(2, 2), strides=(2, 2), pads=(1, 1, 0, 0),
                count_include_pad=True)
    gp = b.node(Op.GLOBAL_AVG_POOL, x)
    g = b.build(m, a, ai, gp)
    feeds = {"x": _x(shape)}
    got, kernels = run_lowered(g, feeds)
    assert kernels == ["f32_maxpool2d_nhwc", "f32_avgpool2d_nhwc", "f32_avgpool2d_nhwc",
                       "f32_global_avgpool_nhwc"]
    want = run_graph(g, feeds)
    np.testing.assert_array_equal(got[m], want[m])
    assert_f32_close(got[a], want[a], 6, "avg pool")
    assert_f32_close(got[ai], want[ai], 4, "avg pool count_include_pad")
    assert_f32_close(got[gp], want[gp], 4, "global avg pool")
    assert np.isfinite(got[m]).all()


def test_non_f32_rejected_naming_node():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 4, 2), DType.UINT8)
    b.node(Op.MAX_POOL, x, kernel=(2, 2), name="pool_u8")
    with pytest.raises(UnsupportedOperatorError, match="pool_u8"):
        lower_node(b.graph.nodes[0], b.graph)


def test_reference_sanity():
    """The reference itself on a hand-computed case (so the truth can be trusted)."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(ref.max_pool(x, (2, 2), (2, 2))[..., 0], [[[5, 7], [13, 15]]])
    np.testing.assert_allclose(ref.avg_pool(x, (2, 2), (2, 2))[..., 0], [[[2.5, 4.5],
                                                                          [10.5, 12.5]]])
