"""The TFLite importer against LiteRT (its Interpreter, XNNPACK inside): every mapped operator on
flatbuffers built in code, the errors a user can provoke, and MediaPipe's real models."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import mobile_engine as me
from mobile_engine import zoo
from mobile_engine.compiler import import_model
from mobile_engine.errors import ModelFormatError, UnsupportedOperatorError
from mobile_engine.ir.ops import Op
from tests.tflite_nets import TFLiteBuilder

# NOTE: both sides compute in fp32 with different summation orders (XNNPACK's packed GEMMs,
# polynomial sigmoid/tanh): a few ulps of the output's range
OP_RTOL = 2e-5
MODEL_RTOL = 1e-3                     # issue 17: max |diff| <= 1e-3 of the output's range

litert = pytest.importorskip("ai_edge_litert.interpreter")
RNG = np.random.default_rng(17)


def rand(*shape, lo=-1.0, hi=1.0) -> np.ndarray:
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def litert_run(data: bytes, feeds: dict, threads: int = 1) -> dict:
    it = litert.Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feeds[d["name"]])
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}


def engine_run(model, feeds: dict) -> dict:
    plan = me.compile(model)
    outs = me.Session(plan, threads=1).run(None, feeds)
    return {o["name"]: v for o, v in zip(plan.outputs, outs)}


def assert_matches(got: dict, want: dict, rtol: float, what: str) -> None:
    assert set(got) == set(want), what
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, f"{what}:{name}: shape {g.shape} != {w.shape}"
        span = max(float(w.max() - w.min()), float(np.abs(w).max()), 1e-6)
        err = float(np.abs(g.astype(np.float64) - w).max())
        assert err <= rtol * span, f"{what}:{name}: max |diff| {err:.3g} > {rtol} x {span:.3g}"


# --- one small net per mapped operator ----------------------------------------------------------
def _single(code, x_shape, out_shape, consts=(), options=None, custom=b"", **values):
    """x -> code(x, *consts) -> y."""
    b = TFLiteBuilder()
    x = b.input("x", x_shape)
    ins = [x] + [b.const(c) if isinstance(c, np.ndarray) else c for c in consts]
    y = b.op(code, ins, out_shape, options, custom, name="y", **values)
    return b.build([y]), {"x": rand(*x_shape)}


def conv(x_shape, w_shape, out_shape, bias=True, **opts):
    consts = [rand(*w_shape), rand(w_shape[0]) if bias else -1]
    return _single("CONV_2D", x_shape, out_shape, consts, "Conv2DOptions", **opts)


def binary(code, b_shape, act, two_inputs=False, lo=-1.0):
    b = TFLiteBuilder()
    x = b.input("x", (1, 4, 5, 6))
    other = b.input("z", b_shape) if two_inputs else b.const(rand(*b_shape, lo=lo))
    y = b.op(code, [x, other], (1, 4, 5, 6), f"{code.capitalize()}Options", name="y",
             FusedActivationFunction=act)
    feeds = {"x": rand(1, 4, 5, 6)}
    if two_inputs:
        feeds["z"] = rand(*b_shape, lo=lo)
    return b.build([y]), feeds


def resize(code, in_shape, size, **opts):
    options = "ResizeBilinearOptions" if code == "RESIZE_BILINEAR" else \
        "ResizeNearestNeighborOptions"
    out = (in_shape[0], *size, in_shape[3])
    return _single(code, in_shape, out, [np.array(size, np.int32)], options, **opts)


def strided_slice(shape, begin, end, strides, out_shape, **masks):
    consts = [np.array(v, np.int32) for v in (begin, end, strides)]
    return _single("STRIDED_SLICE", shape, out_shape, consts, "StridedSliceOptions", **masks)


def dequantized_conv(weights, quant=None):
    """A 3x3 conv whose weights are fp16 or int8 behind DEQUANTIZE."""
    b = TFLiteBuilder()
    x = b.input("x", (1, 6, 6, 3))
    w = b.const(weights, quant=quant)
    wf = b.op("DEQUANTIZE", [w], weights.shape)
    y = b.op("CONV_2D", [x, wf, b.const(rand(4))], (1, 6, 6, 4), "Conv2DOptions", name="y",
             Padding=0, StrideW=1, StrideH=1)
    return b.build([y]), {"x": rand(1, 6, 6, 3)}


def int8_conv():
    w = RNG.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    return dequantized_conv(w, quant=([0.01, 0.02, 0.005, 0.03], [0, 0, 0, 0], 0))


def densified_fc(block: bool):
    """FULLY_CONNECTED whose [4, 8] weights are stored sparse (CSR rows, or 1x4 blocks)."""
    dense = rand(4, 8)
    dense[dense < 0.2] = 0.0
    if block:
        dense[:, 4:][[0, 2]] = 0.0                 # blocks (0, 1) and (2, 1) all zero
        keep = [(r, c) for r in range(4) for c in range(2) if dense[r, 4 * c: 4 * c + 4].any()]
        segs = np.searchsorted([r for r, _ in keep], np.arange(5)).tolist()
        values = np.concatenate([dense[r, 4 * c: 4 * c + 4] for r, c in keep])
        sparsity = {"traversal_order": [0, 1, 2], "block_map": [1],
                    "dims": [("dense", 4), ("csr", segs, [c for _, c in keep]), ("dense", 4)]}
    else:
        rows, cols = np.nonzero(dense)
        segs = np.searchsorted(rows, np.arange(5)).tolist()
        values = dense[rows, cols]
        sparsity = {"traversal_order": [0, 1], "dims": [("dense", 4), ("csr", segs, cols)]}
    b = TFLiteBuilder()
    x = b.input("x", (2, 8))
    w = b.const(values.astype(np.float32), sparsity=sparsity, shape=(4, 8))
    wd = b.op("DENSIFY", [w], (4, 8))
    y = b.op("FULLY_CONNECTED", [x, wd, b.const(rand(4))], (2, 4), "FullyConnectedOptions",
             name="y")
    return b.build([y]), {"x": rand(2, 8)}


def transpose_conv(x_shape, w_shape, out_shape, padding):
    b = TFLiteBuilder()
    x = b.input("x", x_shape)
    y = b.op("TRANSPOSE_CONV", [b.const(np.array(out_shape, np.int32)), b.const(rand(*w_shape)),
                                x, b.const(rand(w_shape[0]))], out_shape,
             "TransposeConvOptions", name="y", Padding=padding, StrideW=2, StrideH=2)
    return b.build([y]), {"x": rand(*x_shape)}


def mediapipe_transpose_conv(padding, k):
    """MediaPipe's custom op; options: TfLiteTransposeConvParams (padding 1 SAME, 2 VALID)."""
    b = TFLiteBuilder()
    x = b.input("x", (1, 4, 5, 3))
    out = (1, 8, 10, 5) if padding == 1 else (1, 6 + k, 8 + k, 5)
    y = b.op("CUSTOM:Convolution2DTransposeBias", [x, b.const(rand(5, k, k, 3)),
                                                   b.const(rand(5))], out,
             custom=struct.pack("<3i", padding, 2, 2), name="y")
    return b.build([y]), {"x": rand(1, 4, 5, 3)}


def split_net(code):
    """x -> SPLIT into 3 along channels (SPLIT_V: sizes 1, 3, -1) -> three outputs."""
    b = TFLiteBuilder()
    x = b.input("x", (1, 3, 4, 6))
    if code == "SPLIT":
        ins, sizes = [b.const(np.array(3, np.int32)), x], [2, 2, 2]
        opts = {"options": "SplitOptions", "NumSplits": 3}
    else:
        ins, sizes = [x, b.const(np.array([1, 3, -1], np.int32)),
                      b.const(np.array(3, np.int32))], [1, 3, 2]
        opts = {"options": "SplitVOptions", "NumSplits": 3}
    first = b.op(code, ins, (1, 3, 4, sizes[0]), name="y0", **opts)
    rest = b.more_outputs(*[(1, 3, 4, n) for n in sizes[1:]], names=["y1", "y2"])
    return b.build([first, *rest]), {"x": rand(1, 3, 4, 6)}


def pack_net():
    b = TFLiteBuilder()
    x, z = b.input("x", (2, 3)), b.input("z", (2, 3))
    y = b.op("PACK", [x, z], (2, 2, 3), "PackOptions", name="y", ValuesCount=2, Axis=1)
    return b.build([y]), {"x": rand(2, 3), "z": rand(2, 3)}


def sqrt_net():
    b = TFLiteBuilder()
    x = b.input("x", (1, 4, 4, 3))
    y = b.op("RSQRT", [b.op("SQRT", [x], (1, 4, 4, 3))], (1, 4, 4, 3), name="y")
    return b.build([y]), {"x": rand(1, 4, 4, 3, lo=0.1, hi=4.0)}


def binary_plain(code):
    b = TFLiteBuilder()
    x, z = b.input("x", (1, 4, 5, 6)), b.input("z", (1, 1, 5, 6))
    y = b.op(code, [x, z], (1, 4, 5, 6), name="y")
    return b.build([y]), {"x": rand(1, 4, 5, 6), "z": rand(1, 1, 5, 6)}


def concat(axis, act):
    b = TFLiteBuilder()
    x = b.input("x", (1, 3, 4, 2))
    z = b.input("z", (1, 3, 4, 5))
    y = b.op("CONCATENATION", [x, z, b.const(rand(1, 3, 4, 1))], (1, 3, 4, 8),
             "ConcatenationOptions", name="y", Axis=axis, FusedActivationFunction=act)
    return b.build([y]), {"x": rand(1, 3, 4, 2), "z": rand(1, 3, 4, 5)}


CASES = {
    "conv_same_relu": lambda: conv((1, 8, 8, 3), (4, 3, 3, 3), (1, 8, 8, 4), Padding=0,
                                   StrideW=1, StrideH=1, FusedActivationFunction=1),
    "conv_valid_s2_relu6": lambda: conv((1, 9, 9, 3), (5, 3, 3, 3), (1, 4, 4, 5),
                                        Padding=1, StrideW=2, StrideH=2,
                                        FusedActivationFunction=3),
    "conv_same_s2_odd": lambda: conv((1, 7, 7, 3), (6, 3, 3, 3), (1, 4, 4, 6), Padding=0,
                                     StrideW=2, StrideH=2),
    "conv_dilated_n1to1": lambda: conv((1, 10, 10, 4), (6, 3, 3, 4), (1, 10, 10, 6),
                                       Padding=0, StrideW=1, StrideH=1, DilationWFactor=2,
                                       DilationHFactor=2, FusedActivationFunction=2),
    "conv_1x1": lambda: conv((1, 5, 5, 8), (3, 1, 1, 8), (1, 5, 5, 3), Padding=1,
                             StrideW=1, StrideH=1),
    "depthwise_mult2_s2_relu6": lambda: _single(
        "DEPTHWISE_CONV_2D", (1, 8, 8, 3), (1, 4, 4, 6), [rand(1, 3, 3, 6), rand(6)],
        "DepthwiseConv2DOptions", Padding=0, StrideW=2, StrideH=2, DepthMultiplier=2,
        FusedActivationFunction=3),
    "depthwise_5x5_valid": lambda: _single(
        "DEPTHWISE_CONV_2D", (1, 9, 9, 4), (1, 5, 5, 4), [rand(1, 5, 5, 4), rand(4)],
        "DepthwiseConv2DOptions", Padding=1, StrideW=1, StrideH=1, DepthMultiplier=1),
    "transpose_conv_same": lambda: transpose_conv((1, 4, 4, 3), (4, 3, 3, 3), (1, 8, 8, 4), 0),
    "transpose_conv_valid": lambda: transpose_conv((1, 4, 4, 3), (2, 3, 3, 3), (1, 9, 9, 2),
                                                   1),
    "mediapipe_transpose_conv_bias_same": lambda: mediapipe_transpose_conv(1, 4),
    "mediapipe_transpose_conv_bias_valid": lambda: mediapipe_transpose_conv(2, 3),
    "fully_connected_relu": lambda: _single(
        "FULLY_CONNECTED", (1, 2, 2, 3), (1, 5), [rand(5, 12), rand(5)],
        "FullyConnectedOptions", FusedActivationFunction=1),
    "fully_connected_keep_dims_no_bias": lambda: _single(
        "FULLY_CONNECTED", (1, 4, 6), (1, 4, 3), [rand(3, 6), -1],
        "FullyConnectedOptions", KeepNumDims=True),
    "add_channel_relu": lambda: binary("ADD", (1, 1, 1, 6), 1),
    "sub_two_inputs": lambda: binary("SUB", (1, 4, 5, 6), 0, two_inputs=True),
    "mul_scalar_n1to1": lambda: binary("MUL", (), 2),
    "div_relu6": lambda: binary("DIV", (1, 1, 5, 1), 3, lo=0.5),
    "relu": lambda: _single("RELU", (1, 4, 4, 3), (1, 4, 4, 3)),
    "relu6": lambda: _single("RELU6", (1, 4, 4, 3), (1, 4, 4, 3)),
    "prelu": lambda: _single("PRELU", (1, 4, 4, 3), (1, 4, 4, 3), [rand(1, 1, 3)]),
    "logistic": lambda: _single("LOGISTIC", (1, 4, 4, 3), (1, 4, 4, 3)),
    "hard_swish": lambda: _single("HARD_SWISH", (1, 4, 4, 3), (1, 4, 4, 3)),
    "tanh": lambda: _single("TANH", (1, 4, 4, 3), (1, 4, 4, 3)),
    "pad": lambda: _single("PAD", (1, 4, 5, 3), (1, 7, 8, 3),
                           [np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)]),
    "padv2": lambda: _single("PADV2", (1, 4, 5, 3), (1, 5, 5, 5),
                             [np.array([[0, 0], [1, 0], [0, 0], [1, 1]], np.int32),
                              np.array([-1.5], np.float32)]),
    "max_pool_same_s2": lambda: _single("MAX_POOL_2D", (1, 7, 7, 4), (1, 4, 4, 4),
                                        options="Pool2DOptions", Padding=0, StrideW=2,
                                        StrideH=2, FilterWidth=3, FilterHeight=3),
    "avg_pool_same_s2": lambda: _single("AVERAGE_POOL_2D", (1, 7, 7, 4), (1, 4, 4, 4),
                                        options="Pool2DOptions", Padding=0, StrideW=2,
                                        StrideH=2, FilterWidth=3, FilterHeight=3),
    "avg_pool_valid_relu": lambda: _single("AVERAGE_POOL_2D", (1, 8, 6, 4), (1, 4, 3, 4),
                                           options="Pool2DOptions", Padding=1, StrideW=2,
                                           StrideH=2, FilterWidth=2, FilterHeight=2,
                                           FusedActivationFunction=1),
    "mean_hw_keep": lambda: _single("MEAN", (1, 5, 6, 4), (1, 1, 1, 4),
                                    [np.array([1, 2], np.int32)], "ReducerOptions",
                                    KeepDims=True),
    "mean_hw_drop": lambda: _single("MEAN", (1, 5, 6, 4), (1, 4),
                                    [np.array([1, 2], np.int32)], "ReducerOptions"),
    "mean_channels": lambda: _single("MEAN", (1, 5, 6, 4), (1, 5, 6, 1),
                                     [np.array([3], np.int32)], "ReducerOptions",
                                     KeepDims=True),
    "reshape": lambda: _single("RESHAPE", (1, 4, 4, 2), (1, 32),
                               [np.array([1, -1], np.int32)]),
    "concat_channels": lambda: concat(3, 0),
    "concat_negative_axis": lambda: concat(-1, 0),
    "resize_bilinear": lambda: resize("RESIZE_BILINEAR", (1, 5, 7, 3), (10, 13)),
    "resize_bilinear_align_corners": lambda: resize("RESIZE_BILINEAR", (1, 5, 7, 3), (10, 13),
                                                    AlignCorners=True),
    "resize_bilinear_half_pixel": lambda: resize("RESIZE_BILINEAR", (1, 5, 7, 3), (10, 13),
                                                 HalfPixelCenters=True),
    "resize_bilinear_down_half_pixel": lambda: resize("RESIZE_BILINEAR", (1, 8, 8, 2), (5, 3),
                                                      HalfPixelCenters=True),
    "resize_nearest": lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 5, 7, 3), (10, 13)),
    "resize_nearest_align_corners": lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 5, 7, 3),
                                                   (10, 13), AlignCorners=True),
    "resize_nearest_half_pixel": lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 5, 7, 3),
                                                (10, 13), HalfPixelCenters=True),
    "resize_nearest_down": lambda: resize("RESIZE_NEAREST_NEIGHBOR", (1, 8, 8, 2), (5, 3)),
    "depth_to_space": lambda: _single("DEPTH_TO_SPACE", (1, 3, 4, 8), (1, 6, 8, 2),
                                      options="DepthToSpaceOptions", BlockSize=2),
    "softmax_beta": lambda: _single("SOFTMAX", (1, 10), (1, 10), options="SoftmaxOptions",
                                    Beta=0.5),
    "softmax_3d": lambda: _single("SOFTMAX", (1, 4, 6), (1, 4, 6), options="SoftmaxOptions",
                                  Beta=1.0),
    "strided_slice_shrink_masks": lambda: strided_slice(
        (1, 8, 6, 4), [0, 1, 3, 1], [1, 7, 0, 3], [1, 2, 1, 1], (3, 6, 2),
        BeginMask=4, EndMask=4, ShrinkAxisMask=1),
    "strided_slice_reverse": lambda: strided_slice(
        (1, 8, 6, 4), [0, 0, -1, 0], [1, 8, 0, 4], [1, 3, -1, 2], (1, 3, 6, 2),
        BeginMask=4, EndMask=4),
    "transpose": lambda: _single("TRANSPOSE", (1, 3, 4, 5), (1, 5, 3, 4),
                                 [np.array([0, 3, 1, 2], np.int32)]),
    "slice": lambda: _single("SLICE", (1, 6, 7, 5), (1, 3, 7, 2),
                             [np.array([0, 2, 0, 1], np.int32), np.array([1, 3, -1, 2], np.int32)]),
    "split": lambda: split_net("SPLIT"),
    "split_v": lambda: split_net("SPLIT_V"),
    "gather": lambda: _single("GATHER", (1, 4, 6), (1, 4, 3), [np.array([5, 0, 2], np.int32)],
                              "GatherOptions", Axis=2),
    "pack": lambda: pack_net(),
    "sum": lambda: _single("SUM", (1, 5, 6, 4), (1, 5, 1, 4), [np.array([2], np.int32)],
                           "ReducerOptions", KeepDims=True),
    "exp": lambda: _single("EXP", (1, 4, 4, 3), (1, 4, 4, 3)),
    "neg": lambda: _single("NEG", (1, 4, 4, 3), (1, 4, 4, 3)),
    **{op.lower(): (lambda op=op: _single(op, (1, 4, 4, 3), (1, 4, 4, 3)))
       for op in ("FLOOR", "CEIL", "ROUND", "SIGN")},
    "sqrt_rsqrt": lambda: sqrt_net(),
    "squared_difference": lambda: binary_plain("SQUARED_DIFFERENCE"),
    "dequantize_fp16_conv": lambda: dequantized_conv(rand(4, 3, 3, 3).astype(np.float16)),
    "dequantize_int8_per_channel_conv": int8_conv,
    "densify_csr_fc": lambda: densified_fc(block=False),
    "densify_block_fc": lambda: densified_fc(block=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_litert(case):
    data, feeds = CASES[case]()
    assert_matches(engine_run(data, feeds), litert_run(data, feeds), OP_RTOL, case)


def test_layouts_need_no_transposes():
    """NHWC in, NHWC spatial ops: a conv net imports without a single TRANSPOSE."""
    data, _ = CASES["depthwise_mult2_s2_relu6"]()
    graph = import_model(data)
    assert [n.op for n in graph.nodes] == [Op.CONV2D]
    assert graph.nodes[0].attrs["group"] == 3
    assert graph.tensors[graph.nodes[0].inputs[1]].shape == (6, 1, 3, 3)


def test_concat_fused_activation_is_applied():
    """TFLite's own kernel refuses a fused activation on CONCATENATION and XNNPACK ignores it:
    no oracle, so the schema's meaning (applied to the result) is checked by hand."""
    data, feeds = concat(3, 1)
    got = engine_run(data, feeds)["y"]
    assert got.shape == (1, 3, 4, 8) and got.min() >= 0
    np.testing.assert_array_equal(got[..., :2], np.maximum(feeds["x"], 0))
    np.testing.assert_array_equal(got[..., 2:7], np.maximum(feeds["z"], 0))


def test_fp16_weights_fold_to_fp32_constants():
    data, _ = CASES["dequantize_fp16_conv"]()
    graph = import_model(data)
    (conv,) = graph.nodes
    assert conv.op is Op.CONV2D and graph.tensors[conv.inputs[1]].data.dtype == np.float32


# --- errors -------------------------------------------------------------------------------------
def test_unsupported_op_names_op_index_and_subgraph():
    b = TFLiteBuilder()
    x = b.input("x", (1, 4))
    y = b.op("RELU", [x], (1, 4))
    z = b.op("COS", [y], (1, 4), name="cosine")
    with pytest.raises(UnsupportedOperatorError,
                       match=r"operator 1 \(COS, output 'cosine'\) of subgraph 0"):
        me.compile(b.build([z]))


def test_fused_tanh_is_refused():
    """TFLite's kernels ignore a fused TANH (LiteRT computes none): no agreed meaning."""
    data, _ = conv((1, 5, 5, 8), (3, 1, 1, 8), (1, 5, 5, 3), Padding=1, StrideW=1, StrideH=1,
                   FusedActivationFunction=4)
    with pytest.raises(UnsupportedOperatorError, match=r"operator 0 \(CONV_2D.*fused "
                                                       r"activation 4 \(TANH\)"):
        import_model(data)


def test_chosen_by_content_not_extension(tmp_path):
    data, feeds = CASES["relu"]()
    path = tmp_path / "model.onnx"                     # a TFLite file under another name
    path.write_bytes(data)
    np.testing.assert_array_equal(engine_run(str(path), feeds)["y"], np.maximum(feeds["x"], 0))


@pytest.mark.parametrize("content", [b"", b"\x18\x00\x00\x00TFL2" + bytes(40), b"not a model"])
def test_not_tflite_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelFormatError, match="broken.tflite: not a TFLite model"):
        me.compile(str(path))


def test_truncated_tflite_is_a_clear_error(tmp_path):
    data, _ = CASES["conv_same_relu"]()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="cut.tflite"):
        me.compile(str(path))


def test_cli_unsupported_op_is_one_line(tmp_path):
    import subprocess
    import sys
    b = TFLiteBuilder()
    y = b.op("COS", [b.input("x", (1, 4))], (1, 4), name="f")
    path = tmp_path / "cos.tflite"
    path.write_bytes(b.build([y]))
    r = subprocess.run([sys.executable, "-m", "mobile_engine", "compile", str(path), "-o",
                        str(tmp_path / "f.mplan")], capture_output=True, text=True)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "operator 0 (COS" in lines[0], r.stderr


# --- MediaPipe's models (zoo fetch) -------------------------------------------------------------
# The four the issue names, then the rest of the wheel (each a few tenths of a second once the
# kernels are compiled: they share them).
NAMED = ("selfie_segmentation", "face_detection_short_range", "palm_detection_lite",
         "hand_landmark_lite")
OTHERS = tuple(n for n in zoo.TFLITE_MODELS if n not in NAMED
               and n != "face_landmark_with_attention")
# input range each model expects (MediaPipe's graphs)
SIGNED = ("face_detection_short_range", "face_detection_full_range_sparse", "face_landmark",
          "iris_landmark")


def _photo_feed(path: str, name: str, photo) -> tuple[bytes, dict]:
    data = open(path, "rb").read()
    it = litert.Interpreter(model_content=data)
    d = it.get_input_details()[0]
    _, h, w, _ = d["shape"]
    x = photo("astronaut.png", int(h), int(w)).transpose(0, 2, 3, 1).copy()
    return data, {d["name"]: x * 2 - 1 if name in SIGNED else x}


def _check_model(name, photo):
    try:
        path = str(zoo.model_path(name))
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    data, feeds = _photo_feed(path, name, photo)
    assert_matches(engine_run(path, feeds), litert_run(data, feeds), MODEL_RTOL, name)


@pytest.mark.parametrize("name", NAMED)
def test_mediapipe_model_matches_litert(name, photo):
    _check_model(name, photo)


@pytest.mark.parametrize("name", OTHERS)
def test_other_mediapipe_models_match_litert(name, photo):
    _check_model(name, photo)


def test_face_landmark_with_attention_names_its_custom_op():
    try:
        path = str(zoo.model_path("face_landmark_with_attention"))
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    with pytest.raises(UnsupportedOperatorError,
                       match=r"CUSTOM:Landmarks2TransformMatrix.*of subgraph 0"):
        import_model(path)


def test_damaged_files_end_in_a_clear_error():
    """Random bytes changed in a real model: it imports, or an EngineError says why (never an
    IndexError or struct.error from the flatbuffer reader)."""
    try:
        data = zoo.model_path("face_detection_short_range").read_bytes()
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    from mobile_engine.errors import EngineError
    rng = np.random.default_rng(5)
    for _ in range(40):
        b = bytearray(data)
        for pos in rng.integers(8, 4096, rng.integers(1, 8)):
            b[int(pos)] = int(rng.integers(0, 256))
        try:
            import_model(bytes(b))
        except EngineError:
            pass


def test_int8_calibration_of_a_float_tflite_model():
    """The ONNX path's int8 compile (calibrate, quantize) works on an imported TFLite graph: int8
    kernels, and the same picture as LiteRT's fp32 run (PSNR over the output's range)."""
    # NOTE: 16 channels: convs of few channels stay float by design (DESIGN.md, quantize_int8)
    data, feeds = conv((1, 8, 8, 16), (16, 3, 3, 16), (1, 8, 8, 16), Padding=0, StrideW=1,
                       StrideH=1, FusedActivationFunction=1)
    calib = [{"x": rand(1, 8, 8, 16)} for _ in range(4)]
    plan = me.compile(data, quantize="int8", calibration=calib)
    assert any(s["kernel"].startswith("qu8_conv") for s in plan.steps)
    got = me.Session(plan).run(None, feeds)[0]
    want = litert_run(data, feeds)["y"]
    peak = float(want.max() - want.min())
    psnr = 10 * np.log10(peak ** 2 / float(np.mean((got - want) ** 2)))
    assert psnr > 30, f"int8 plan PSNR {psnr:.1f} dB against LiteRT fp32"
