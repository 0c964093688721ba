"""Data-movement kernels (kernels/f32_layout.py) against numpy, directly and via lowering+binding.

Cases are generated from tables over edge shapes (channels 1, 3, 13, 24, 63, 64, 65; odd spatial
sizes 7x11; batch 2), every pad mode and every IR dtype. The truth is kernels/reference.py and
numpy's own pad/concatenate/transpose/take/astype (ir.interpret), never the engine itself.
"""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import f32_layout as k
from kernels import table
from mobile_engine.errors import EngineError
from mobile_engine.ir import DType, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS

CHANNELS = [1, 3, 13, 24, 63, 64, 65]
DTYPES = [np.float32, np.int64, np.int32, np.uint8, np.int8, np.bool_]
RNG = np.random.default_rng(0)


def _rand(shape, dtype=np.float32):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return RNG.random(shape) < 0.5
    if dtype.kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True,
                        dtype=dtype)


def _readonly(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def run_lowered(graph, feeds):
    """Lower every node, bind with plain numpy arrays (weights read-only, params through JSON),
    run; returns (graph outputs, kernel ids)."""
    values, kernels = dict(feeds), []
    values.update({n: t.data for n, t in graph.tensors.items() if t.is_const})
    for node in graph.nodes:
        for step in lower_node(node, graph):
            params = json.loads(json.dumps(step.params))
            for w in step.weights.values():
                assert w.flags.c_contiguous
            weights = {name: _readonly(w) for name, w in step.weights.items()}
            ins = [values[n] for n in step.inputs]
            outs = [np.full(graph.tensors[o].shape, 77, graph.tensors[o].dtype.np)
                    for o in step.outputs]
            fn, args = BINDERS[step.kernel](params, weights, ins, outs)
            fn(*args)
            values.update(zip(step.outputs, outs))
            kernels.append(step.kernel)
    return {o: values[o] for o in graph.outputs}, kernels


def check_graph(b, y, feeds):
    g = b.build(*(y if isinstance(y, list) else [y]))
    got, kernels = run_lowered(g, feeds)
    want = run_graph(g, feeds)
    for name in g.outputs:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} via {kernels}")
    return kernels


# --- PAD --------------------------------------------------------------------------------------
PAD_NHWC = [((2, 7, 11, c), (0, 2, 1, 0, 0, 1, 3, 0)) for c in CHANNELS]
PAD_ND = [((5,), (2, 3)), ((4, 6), (1, 0, 2, 5)), ((3, 4, 5), (0, 0, 2, 0, 0, 3)),
          ((2, 3, 4, 5), (1, 0, 0, 0, 0, 1, 0, 0)),                    # pad batch and channels
          ((2, 3, 4, 5), (0, 0, 0, 2, 0, 0, 0, 1)),                    # innermost only
          ((2, 2, 3, 2, 3), (0, 1, 1, 0, 1, 1, 0, 1, 1, 0)),
          ((1, 2, 3, 2, 3, 2), (0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 2, 1))]


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("shape,pads", PAD_NHWC + PAD_ND)
def test_pad_f32(shape, pads, mode):
    b = GraphBuilder()
    x = b.input("x", shape)
    kernels = check_graph(b, b.node(Op.PAD, x, pads=pads, mode=mode, value=1.5),
                          {"x": _rand(shape)})
    assert kernels == ["x32_pad_nd"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_dtypes(dtype, mode):
    shape, pads = (2, 7, 11, 3), (0, 1, 2, 0, 0, 2, 1, 0)
    b = GraphBuilder()
    x = b.input("x", shape, DType.from_numpy(dtype))
    check_graph(b, b.node(Op.PAD, x, pads=pads, mode=mode, value=3.0), {"x": _rand(shape, dtype)})


def test_pad_parallel_and_zero_pads():
    shape = (1, 64, 64, 24)                                  # > PARALLEL_MIN_WORK elements
    b = GraphBuilder()
    x = b.input("x", shape)
    y = b.node(Op.PAD, x, pads=(0, 4, 4, 0, 0, 4, 4, 0), mode="reflect")
    z = b.node(Op.PAD, y, pads=(0,) * 8)                     # nothing to pad: a copy
    assert check_graph(b, z, {"x": _rand(shape)}) == ["x32_pad_nd", "copy_bytes"]


def test_pad_kernel_direct():
    """The kernel on tables built by hand: NHWC H/W constant pad of a [1, 2, 3, 2] array."""
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2)
    want = np.pad(x, ((0, 0), (1, 0), (0, 1), (0, 0)), constant_values=-1)
    out = np.zeros_like(want)
    row_src = _readonly(np.array([-1, 0, 1], np.int64))
    col_src = _readonly(np.array([0, 1, 2, -1], np.int64))
    fill = np.full(2, -1, np.float32).view(np.uint32)
    k.pad_serial(x.reshape(2, 6).view(np.uint32), out.reshape(3, 8).view(np.uint32), 2,
                 row_src, col_src, fill, 0, 3, 0)
    np.testing.assert_array_equal(out, want)


# --- CONCAT -----------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("c", CHANNELS)
def test_concat_nhwc(axis, c):
    b = GraphBuilder()
    shapes = [(2, 7, 11, c), (2, 7, 11, c)]
    shapes[1] = tuple(d + 2 if i == axis % 4 else d for i, d in enumerate(shapes[1]))
    x0, x1 = b.input("x0", shapes[0]), b.input("x1", shapes[1])
    w = b.const(_rand(tuple(3 if i == axis % 4 else d for i, d in enumerate(shapes[0]))))
    feeds = {"x0": _rand(shapes[0]), "x1": _rand(shapes[1])}
    assert check_graph(b, b.node(Op.CONCAT, x0, w, x1, axis=axis), feeds) == ["x32_concat"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_dtypes(dtype):
    b = GraphBuilder()
    dt = DType.from_numpy(dtype)
    x0, x1 = b.input("x0", (2, 3, 1), dt), b.input("x1", (2, 3, 2), dt)
    check_graph(b, b.node(Op.CONCAT, x0, x1, axis=2),
                {"x0": _rand((2, 3, 1), dtype), "x1": _rand((2, 3, 2), dtype)})


def test_concat_parallel():
    b = GraphBuilder()
    x0, x1 = b.input("x0", (1, 64, 64, 13)), b.input("x1", (1, 64, 64, 3))
    check_graph(b, b.node(Op.CONCAT, x0, x1, axis=3),
                {"x0": _rand((1, 64, 64, 13)), "x1": _rand((1, 64, 64, 3))})


# --- TRANSPOSE --------------------------------------------------------------------------------
@pytest.mark.parametrize("perm", [(0, 3, 1, 2), (0, 2, 3, 1)])
@pytest.mark.parametrize("c", CHANNELS)
def test_transpose_nhwc_nchw(perm, c):
    b = GraphBuilder()
    x = b.input("x", (2, 7, 11, c))
    kernels = check_graph(b, b.node(Op.TRANSPOSE, x, perm=perm), {"x": _rand((2, 7, 11, c))})
    if perm == (0, 2, 3, 1):                     # read as NCHW: 7 "channels"
        expected = "x32_transpose_nchw_to_nhwc"
    elif c == 1:
        expected = "copy_bytes"
    elif c <= k.SMALL_MAX:
        expected = "x32_transpose_nhwc_to_nchw"
    else:
        expected = "x32_transpose_b2d_tiled"
    assert kernels == [expected]


PERMS = [((3, 5), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (1, 0, 2)),
         ((2, 3, 4, 5), (3, 1, 0, 2)), ((2, 3, 1, 4, 5), (4, 2, 0, 3, 1)),
         ((2, 3, 2, 3, 2, 3), (5, 3, 1, 4, 2, 0)), ((2, 3, 2, 3, 2, 3), (0, 1, 3, 2, 4, 5)),
         ((1, 3, 480, 64), (0, 2, 3, 1)), ((1, 96, 96, 8), (0, 3, 1, 2)),   # parallel, 3/8 ch
         ((1, 64, 64, 24), (0, 3, 1, 2)),                                  # parallel tiled
         ((4, 64, 2, 130), (1, 3, 0, 2)),                                  # parallel strided
         ((2, 13, 5, 7), (0, 2, 3, 1))]                                    # tiled NCHW->NHWC


@pytest.mark.parametrize("shape,perm", PERMS)
def test_transpose_perms(shape, perm):
    b = GraphBuilder()
    x = b.input("x", shape)
    check_graph(b, b.node(Op.TRANSPOSE, x, perm=perm), {"x": _rand(shape)})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("perm", [(0, 3, 1, 2), (2, 0, 3, 1)])
def test_transpose_dtypes(dtype, perm):
    b = GraphBuilder()
    x = b.input("x", (2, 5, 7, 3), DType.from_numpy(dtype))
    check_graph(b, b.node(Op.TRANSPOSE, x, perm=perm), {"x": _rand((2, 5, 7, 3), dtype)})


def test_tiled_kernel_direct():
    x = _rand((2, 37, 19))
    out = np.empty((2, 19, 37), np.float32)
    k.tiled_parallel(x.view(np.uint32), out.view(np.uint32))
    np.testing.assert_array_equal(out, x.transpose(0, 2, 1))


@pytest.mark.parametrize("c", [2, 4, 8])
def test_small_transpose_direct(c):
    x = _rand((2, c, 5000))                                  # crosses a SMALL_CHUNK boundary
    out = np.empty((2, 5000, c), np.float32)
    k.small_transpose(c, True, False)(x.view(np.uint32), out.view(np.uint32))
    np.testing.assert_array_equal(out, x.transpose(0, 2, 1))
    back = np.empty_like(x)
    k.small_transpose(c, False, False)(out.view(np.uint32), back.view(np.uint32))
    np.testing.assert_array_equal(back, x)


# --- SLICE ------------------------------------------------------------------------------------
SLICES = [((2, 7, 11, 13), (0, 1), (7, 10), (1, 2), (1, 3)),
          ((2, 7, 11, 13), (-1,), (-1000,), (3,), (-2,)),
          ((2, 7, 11, 13), (1, 0, 5), (2, 100, 13), (0, 1, 3), (1, 1, 1)),   # contiguous block
          ((2, 7, 11, 64), (3,), (-3,), (-1,), (1,)),
          ((5, 6), (-1, 4), (-6, 0), (0, 1), (-1, -1)),
          ((4, 3, 2, 5, 3, 2), (1, 0), (3, 3), (0, 5), (1, 2)),
          ((1, 256, 256, 3), (0,), (256,), (2,), (2,))]                      # parallel


@pytest.mark.parametrize("shape,starts,ends,axes,steps", SLICES)
def test_slice(shape, starts, ends, axes, steps):
    b = GraphBuilder()
    x = b.input("x", shape)
    y = b.node(Op.SLICE, x, starts=starts, ends=ends, axes=axes, steps=steps)
    check_graph(b, y, {"x": _rand(shape)})


@pytest.mark.parametrize("dtype", DTYPES)
def test_slice_dtypes(dtype):
    b = GraphBuilder()
    x = b.input("x", (3, 7, 5), DType.from_numpy(dtype))
    y = b.node(Op.SLICE, x, starts=(1, 1), ends=(7, 4), axes=(1, 2), steps=(2, 1))
    check_graph(b, y, {"x": _rand((3, 7, 5), dtype)})


# --- GATHER -----------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("const", [True, False])
def test_gather(axis, const):
    shape = (2, 7, 11, 13)
    d = shape[axis]
    idx = np.array([[0, d - 1, -1], [1, -d, 0]], np.int64)
    b = GraphBuilder()
    x = b.input("x", shape)
    feeds = {"x": _rand(shape)}
    if const:
        i = b.const(idx)
    else:
        i = b.input("i", idx.shape, DType.INT64)
        feeds["i"] = idx
    check_graph(b, b.node(Op.GATHER, x, i, axis=axis), feeds)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_dtypes_int32_indices(dtype):
    b = GraphBuilder()
    x = b.input("x", (5, 3), DType.from_numpy(dtype))
    i = b.input("i", (4,), DType.INT32)
    check_graph(b, b.node(Op.GATHER, x, i, axis=0),
                {"x": _rand((5, 3), dtype), "i": np.array([4, 0, -2, 1], np.int32)})


def test_gather_scalar_const_data_and_errors():
    b = GraphBuilder()
    table = b.const(_rand((10, 64)))
    i = b.input("i", (3,), DType.INT64)
    y = b.node(Op.GATHER, table, i, axis=0)                  # embedding lookup
    s = b.node(Op.GATHER, y, b.const(np.array(2, np.int64)), axis=1)  # scalar index
    g = b.build(y, s)
    feeds = {"i": np.array([9, 0, 3], np.int64)}
    got, _ = run_lowered(g, feeds)
    want = run_graph(g, feeds)
    for name in g.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    with pytest.raises(IndexError):
        run_lowered(g, {"i": np.array([10, 0, 3], np.int64)})
    b = GraphBuilder()
    x = b.input("x", (4, 3))
    b.node(Op.GATHER, x, b.const(np.array([4], np.int64)), axis=0, name="bad_gather")
    with pytest.raises(EngineError, match="bad_gather"):
        lower_node(b.graph.nodes[0], b.graph)


# --- CAST and RESHAPE -------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [("float32", "int32"), ("float32", "int64"),
                                     ("float32", "uint8"), ("float32", "bool"),
                                     ("int32", "float32"), ("int64", "float32"),
                                     ("uint8", "float32"), ("bool", "float32"),
                                     ("float32", "float32")])
def test_cast(src, dst):
    x = _rand((2, 7, 11, 3), src)
    if src == "float32" and dst == "uint8":
        x = np.abs(x) * 50                                    # in range: other values are UB
    b = GraphBuilder()
    xi = b.input("x", x.shape, DType(src))
    kernels = check_graph(b, b.node(Op.CAST, xi, to=dst), {"x": x})
    assert kernels == (["copy_bytes"] if src == dst else ["np_cast"])


@pytest.mark.parametrize("n", [1, 3, 4, 13, 70001])
def test_copy_bytes_reshape_of_const(n):
    b = GraphBuilder()
    c = b.const(_rand((n, 1), np.uint8 if n % 2 else np.float32))
    y = b.node(Op.RESHAPE, c, shape=(1, n))
    assert check_graph(b, y, {}) == ["copy_bytes"]


def test_plans():
    """Compile-time plans: NHWC<->NCHW are batched 2-D transposes; pad runs cover interiors."""
    p = k.transpose_plan((1, 480, 640, 3), (0, 3, 1, 2))
    assert k.batched_transpose(p) == (1, 480 * 640, 3)
    p = k.transpose_plan((2, 3, 480, 640), (0, 2, 3, 1))
    assert k.batched_transpose(p) == (2, 3, 480 * 640)
    plan = k.pad_plan((1, 5, 6, 8), (0, 1, 2, 0, 0, 1, 2, 0), "constant")
    assert plan.run == (2, 8, 0) and plan.in_view == (5, 6, 8) and plan.out_view == (7, 10, 8)
    assert list(plan.row_src) == [-1, 0, 1, 2, 3, 4, -1]


def test_kernel_table_names():
    """The table's layout rows are this module's kernels (with a reference each), all bound."""
    rows = [r for r in table.ROWS if r.family == "f32_layout"]
    assert {kid for r in rows for kid in r.ids} == set(k.KERNELS)
    for r in rows:
        assert all(kid in BINDERS for kid in r.ids) and r.reference() is not None, r.grammar


def test_empty_tensors():
    b = GraphBuilder()
    x = b.input("x", (2, 4, 3))
    e = b.input("e", (2, 0, 3))
    y = b.node(Op.SLICE, x, starts=(2,), ends=(2,), axes=(1,), steps=(1,))      # (2, 0, 3)
    c = b.node(Op.CONCAT, e, x, e, axis=1)
    p = b.node(Op.PAD, e, pads=(0, 1, 0, 0, 1, 0), value=2.0)                   # constant rows
    check_graph(b, [y, c, p], {"x": _rand((2, 4, 3)), "e": _rand((2, 0, 3))})
