"""Resize kernels (kernels/f32_resize.py) against kernels/reference.resize, directly (walking
the kernel table over channel counts and every coordinate/nearest mode) and through
lowering+binding, plus hand-derived cases."""
import json

import numpy as np
import pytest

import mobile_engine.planning.families  # noqa: F401  (registers the lowerings and binders)
from kernels import f32_resize as k
from kernels import reference as ref
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import DType, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.planning.step import lower_node
from mobile_engine.runtime.binders import BINDERS
from tests.tolerances import assert_f32_close

CHANNELS = [1, 3, 13, 24, 63, 64, 65]
COORD = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
         "tf_half_pixel_for_nn"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SIZES = [(14, 22), (5, 8), (1, 1), (13, 17)]          # from 7x11: up 2x, down, to 1x1, odd
RNG = np.random.default_rng(2)


def _ro(a):
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _direct(x, size, mode, coord, nearest, parallel):
    n, h, w, c = x.shape
    sh, sw = k.resize_scales((h, w), size, ())
    yi, yw = k.axis_tables(h, size[0], sh, mode, coord, nearest)
    xi, xw = k.axis_tables(w, size[1], sw, mode, coord, nearest)
    out = np.full((n,) + tuple(size) + (c,), np.nan if x.dtype.kind == "f" else 7, x.dtype)
    if mode == "nearest":
        fn = k.nearest_parallel if parallel else k.nearest_serial
        lane = np.uint32 if (c * x.itemsize) % 4 == 0 else np.uint8
        fn(x.view(lane), out.view(lane), _ro(yi[0]), _ro(xi[0]))
    else:
        fn = k.bilinear_parallel if parallel else k.bilinear_serial
        fn(x, out, _ro(yi), _ro(yw), _ro(xi), _ro(xw))
    return out


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_table_bilinear(c, size):
    x = RNG.standard_normal((2, 7, 11, c)).astype(np.float32)
    for coord in COORD[:4]:
        out = _direct(x, size, "linear", coord, "floor", parallel=c == 64)
        assert_f32_close(out, ref.resize(x, size, "linear", coord), 4, f"linear {coord} c={c}")


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_table_nearest(c, size):
    x = RNG.standard_normal((2, 7, 11, c)).astype(np.float32)
    for coord in COORD:
        for nearest in NEAREST:
            out = _direct(x, size, "nearest", coord, nearest, parallel=c == 64)
            np.testing.assert_array_equal(out, ref.resize(x, size, "nearest", coord, nearest),
                                          err_msg=f"nearest {coord} {nearest} c={c}")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int64, np.int32, np.bool_])
def test_nearest_dtypes(dtype):
    x = (RNG.integers(0, 100, (2, 7, 11, 3)) % (2 if dtype == np.bool_ else 100)).astype(dtype)
    out = _direct(x, (14, 22), "nearest", "asymmetric", "floor", parallel=False)
    np.testing.assert_array_equal(out, x.repeat(2, axis=1).repeat(2, axis=2))


def test_hand_derived():
    """2x nearest half_pixel is pixel repetition; align_corners linear 2 -> 3 adds midpoints."""
    x = RNG.standard_normal((1, 3, 4, 5)).astype(np.float32)
    out = _direct(x, (6, 8), "nearest", "half_pixel", "round_prefer_floor", parallel=False)
    np.testing.assert_array_equal(out, x.repeat(2, axis=1).repeat(2, axis=2))
    x = np.array([0, 2, 10, 20], np.float32).reshape(1, 2, 2, 1)
    out = _direct(x, (3, 3), "linear", "align_corners", "floor", parallel=False)
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 1, 2], [5, 8, 11], [10, 15, 20]])


# --- through lowering + binding ---------------------------------------------------------------
def run_lowered(graph, feeds):
    values = {**feeds, **{n: t.data for n, t in graph.tensors.items() if t.is_const}}
    kernels = []
    for node in graph.nodes:
        for step in lower_node(node, graph):
            params = json.loads(json.dumps(step.params))
            weights = {name: _ro(w) for name, w in step.weights.items()}
            outs = [np.zeros(graph.tensors[o].shape, graph.tensors[o].dtype.np)
                    for o in step.outputs]
            fn, args = BINDERS[step.kernel](params, weights, [values[n] for n in step.inputs],
                                             outs)
            fn(*args)
            values.update(zip(step.outputs, outs))
            kernels.append(step.kernel)
    return {o: values[o] for o in graph.outputs}, kernels


@pytest.mark.parametrize("shape,size,scales", [((2, 7, 11, 3), (14, 22), (2.0, 2.0)),
                                               ((1, 64, 64, 8), (128, 128), ()),   # parallel
                                               ((1, 9, 13, 5), (4, 6), (0.45, 0.47))])
def test_lowered(shape, size, scales):
    b = GraphBuilder()
    x = b.input("x", shape)
    outs = [b.node(Op.RESIZE, x, size=size, scales=scales, mode="nearest",
                   coordinate_mode="asymmetric", nearest_mode="floor"),
            b.node(Op.RESIZE, x, size=size, scales=scales, mode="nearest"),
            b.node(Op.RESIZE, x, size=size, scales=scales, mode="linear"),
            b.node(Op.RESIZE, x, size=size, scales=scales, mode="linear",
                   coordinate_mode="align_corners")]
    g = b.build(*outs)
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
    got, kernels = run_lowered(g, feeds)
    assert kernels == ["x32_resize_nearest_nhwc"] * 2 + ["f32_resize_bilinear_nhwc"] * 2
    want = run_graph(g, feeds)
    for o in outs[:2]:
        np.testing.assert_array_equal(got[o], want[o])
    for o in outs[2:]:
        assert_f32_close(got[o], want[o], 4, o)


def test_lowered_uint8_and_errors():
    b = GraphBuilder()
    x = b.input("x", (1, 5, 7, 3), DType.UINT8)
    y = b.node(Op.RESIZE, x, size=(10, 14), mode="nearest")
    g = b.build(y)
    feeds = {"x": RNG.integers(0, 255, (1, 5, 7, 3), dtype=np.uint8)}
    got, kernels = run_lowered(g, feeds)
    assert kernels == ["x8_resize_nearest_nhwc"]
    np.testing.assert_array_equal(got[y], run_graph(g, feeds)[y])
    b.node(Op.RESIZE, x, size=(10, 14), mode="linear", name="lin_u8")
    with pytest.raises(UnsupportedOperatorError, match="lin_u8"):
        lower_node(b.graph.nodes[-1], b.graph)
    b.node(Op.RESIZE, x, size=(10, 14), mode="cubic", name="cubic_u8")
    with pytest.raises(UnsupportedOperatorError, match="cubic_u8.*float32"):
        lower_node(b.graph.nodes[-1], b.graph)
    b.node(Op.RESIZE, b.input("f", (1, 5, 7, 3)), size=(10, 14), mode="lanczos", name="lz")
    with pytest.raises(UnsupportedOperatorError, match="lz.*lanczos"):
        lower_node(b.graph.nodes[-1], b.graph)


# --- the general K-tap kernel (cubic, antialias, tf_crop_and_resize, half_pixel_symmetric) ----
TAPS = [dict(mode="cubic"), dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=True),
        dict(mode="cubic", coordinate_mode="align_corners"),
        dict(mode="linear", antialias=True), dict(mode="cubic", antialias=True),
        dict(mode="linear", coordinate_mode="half_pixel_symmetric"),
        dict(mode="linear", coordinate_mode="tf_crop_and_resize", roi=(0.1, -0.2, 1.2, 0.8),
             extrapolation_value=5.0),
        dict(mode="nearest", coordinate_mode="tf_crop_and_resize", roi=(0.4, 0.2, 0.6, 0.9))]


def _attrs(**kw):
    a = dict(mode="nearest", coordinate_mode="half_pixel", nearest_mode="round_prefer_floor",
             cubic_coeff_a=-0.75, exclude_outside=False, antialias=False, roi=(),
             extrapolation_value=0.0)
    a.update(kw)
    return a


def _direct_taps(x, size, a, parallel):
    n, h, w, c = x.shape
    sh, sw = k.resize_scales((h, w), size, ())
    yi, yw, yo = k.axis_taps(h, size[0], sh, a, 0)
    xi, xw, xo = k.axis_taps(w, size[1], sw, a, 1)
    out = np.full((n,) + tuple(size) + (c,), np.nan, np.float32)
    fn = k.taps_parallel if parallel else k.taps_serial
    fn(x, out, _ro(yi), _ro(yw), _ro(yo), _ro(xi), _ro(xw), _ro(xo),
       _ro(np.array([a["extrapolation_value"]], np.float32)))
    return out


def _ref(x, size, a):
    return ref.resize(x, size, a["mode"], a["coordinate_mode"], a["nearest_mode"], (),
                      a["cubic_coeff_a"], a["exclude_outside"], a["antialias"], a["roi"],
                      a["extrapolation_value"])


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("size", SIZES)
def test_table_taps(c, size):
    x = RNG.standard_normal((2, 7, 11, c)).astype(np.float32)
    for kw in TAPS:
        a = _attrs(**kw)
        out = _direct_taps(x, size, a, parallel=c == 64)
        assert_f32_close(out, _ref(x, size, a), 16, f"{kw} c={c}")


def test_taps_hand_derived():
    """Every K-tap mode keeps a constant image constant (weights sum to 1); Keys' cubic with
    a = -0.5 reproduces a quadratic exactly away from the edges; tf_crop_and_resize writes the
    extrapolation value where the crop leaves the input."""
    const = np.full((1, 6, 9, 2), 3.5, np.float32)
    for kw in TAPS[:6]:
        np.testing.assert_allclose(_direct_taps(const, (4, 13), _attrs(**kw), False), 3.5,
                                   rtol=1e-6, err_msg=str(kw))
    col = np.arange(12, dtype=np.float32)
    x = np.broadcast_to((col * col)[None, None, :, None], (1, 1, 12, 1)).copy()
    out = _direct_taps(x, (1, 24), _attrs(mode="cubic", cubic_coeff_a=-0.5,
                                          coordinate_mode="asymmetric"), False)[0, 0, :, 0]
    src = np.arange(24) / 2
    inner = (src >= 1) & (src <= 9)
    np.testing.assert_allclose(out[inner], (src * src)[inner], rtol=1e-5)
    crop = _attrs(mode="linear", coordinate_mode="tf_crop_and_resize",
                  roi=(0.0, 0.5, 1.0, 1.5), extrapolation_value=-1.0)
    out = _direct_taps(np.ones((1, 3, 5, 1), np.float32), (3, 5), crop, False)[0, :, :, 0]
    # W coordinates 2, 3, 4, 5, 6 (of 0..4): the last two outside
    np.testing.assert_array_equal(out, [[1, 1, 1, -1, -1]] * 3)


def test_lowered_taps():
    b = GraphBuilder()
    x = b.input("x", (1, 9, 13, 5))
    outs = [b.node(Op.RESIZE, x, size=(4, 6), **{k_: v for k_, v in _attrs(**kw).items()})
            for kw in TAPS]
    g = b.build(*outs)
    feeds = {"x": RNG.standard_normal((1, 9, 13, 5)).astype(np.float32)}
    got, kernels = run_lowered(g, feeds)
    assert kernels == ["f32_resize_taps_nhwc"] * len(TAPS)
    want = run_graph(g, feeds)
    for o in outs:
        assert_f32_close(got[o], want[o], 16, o)
