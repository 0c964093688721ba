"""Small ONNX networks the importer has never seen, built with onnx.helper (opset 17).

Weights are random but seeded; spatial sizes are deliberately not multiples of 8 (37x53,
45x61) and channels stay <= 32 so every net runs in milliseconds with the numpy interpreter.
Each builder returns an ``onnx.ModelProto`` with static input shapes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Net:
    """A tiny graph-building helper: every method adds nodes and returns the output name."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._k = 0

    def _fresh(self, base: str) -> str:
        self._k += 1
        return f"{base}_{self._k}"

    def input(self, name: str, shape, elem=TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def const(self, array, base: str = "c") -> str:
        name = self._fresh(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        name = self._fresh(op_type.lower())
        outs = [f"{name}_out{i}" if outputs > 1 else f"{name}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    # --- layers -----------------------------------------------------------------------------
    def weights(self, *shape, fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    def conv(self, x, ci, co, k, stride=1, pad=None, group=1, dilation=1, bias=True, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        w = self.const(self.weights(co, ci // group, kh, kw, fan_in=ci // group * kh * kw), "w")
        ins = [x, w]
        if bias:
            ins.append(self.const(self.rng.normal(0, 0.1, co).astype(np.float32), "b"))
        if pad is None and "auto_pad" not in attrs:
            pad = dilation * (kh // 2)
        if pad is not None:
            attrs["pads"] = [pad] * 4 if isinstance(pad, int) else list(pad)
        return self.op("Conv", *ins, kernel_shape=[kh, kw], strides=[stride, stride],
                       dilations=[dilation, dilation], group=group, **attrs)

    def bn(self, x, c):
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.1, c),
                  r.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization", x, *(self.const(p.astype(np.float32), "bn")
                                                  for p in params), epsilon=1e-5)

    def instance_norm(self, x, c):
        scale = self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32), "in_scale")
        bias = self.const(self.rng.normal(0, 0.1, c).astype(np.float32), "in_bias")
        return self.op("InstanceNormalization", x, scale, bias, epsilon=1e-5)

    def clip(self, x, lo=0.0, hi=6.0):
        return self.op("Clip", x, self.const(np.float32(lo), "lo"),
                       self.const(np.float32(hi), "hi"))

    def gemm(self, x, ci, co):
        w = self.const(self.weights(co, ci, fan_in=ci), "fc_w")
        b = self.const(self.rng.normal(0, 0.1, co).astype(np.float32), "fc_b")
        return self.op("Gemm", x, w, b, transB=1)

    def model(self, *outputs: str) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="mobile-engine tests")
        model.ir_version = 8
        # shape inference fills in the outputs' shapes, and checks the net on the way
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        onnx.checker.check_model(model)
        return model


def resnet_like(seed: int = 0) -> onnx.ModelProto:
    """Conv+BN+Relu stem, MaxPool, two residual blocks (one strided with a 1x1 projection),
    GlobalAveragePool, Flatten, Gemm, Softmax."""
    n = _Net("resnet_like", seed)
    x = n.input("image", (1, 3, 37, 53))
    y = n.op("Relu", n.bn(n.conv(x, 3, 16, 3, bias=False), 16))
    y = n.op("MaxPool", y, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])   # 19x27
    h = n.op("Relu", n.bn(n.conv(y, 16, 16, 3), 16))
    h = n.bn(n.conv(h, 16, 16, 3), 16)
    y = n.op("Relu", n.op("Add", h, y))
    h = n.op("Relu", n.bn(n.conv(y, 16, 32, 3, stride=2), 32))                        # 10x14
    h = n.bn(n.conv(h, 32, 32, 3), 32)
    skip = n.bn(n.conv(y, 16, 32, 1, stride=2, pad=0), 32)
    y = n.op("Relu", n.op("Add", h, skip))
    y = n.op("Flatten", n.op("GlobalAveragePool", y), axis=1)
    return n.model(n.op("Softmax", n.gemm(y, 32, 10), axis=1))


def mobilenet_like(seed: int = 1) -> onnx.ModelProto:
    """Strided stem with HardSwish, depthwise separable convs with ReLU6 (Clip 0..6), an inverted
    residual with squeeze-excite (GAP -> 1x1 -> Relu -> 1x1 -> HardSigmoid -> Mul), a dilated
    depthwise conv with asymmetric pads, GAP, Gemm."""
    n = _Net("mobilenet_like", seed)
    x = n.input("input", (1, 3, 45, 61))
    y = n.op("HardSwish", n.conv(x, 3, 16, 3, stride=2))                               # 23x31
    y = n.clip(n.conv(y, 16, 16, 3, group=16))                                          # depthwise
    y = n.clip(n.conv(y, 16, 24, 1))
    h = n.clip(n.conv(y, 24, 32, 1))
    h = n.op("HardSwish", n.conv(h, 32, 32, 3, group=32))
    s = n.op("GlobalAveragePool", h)
    s = n.op("Relu", n.conv(s, 32, 8, 1))
    s = n.op("HardSigmoid", n.conv(s, 8, 32, 1), alpha=1.0 / 6, beta=0.5)
    h = n.op("Mul", h, s)
    y = n.op("Add", n.conv(h, 32, 24, 1), y)
    y = n.clip(n.conv(y, 24, 24, 3, stride=2, group=24, pad=[0, 1, 1, 0]))              # 11x15
    y = n.clip(n.conv(y, 24, 24, 3, group=24, dilation=2))
    y = n.op("Flatten", n.op("GlobalAveragePool", n.clip(n.conv(y, 24, 32, 1))))
    return n.model(n.gemm(y, 32, 5))


def unet_like(seed: int = 2) -> onnx.ModelProto:
    """Encoder (Conv, MaxPool with ceil_mode, AveragePool), decoder (ConvTranspose with
    output_padding, Concat skips, Resize linear align_corners to the skip's size), a Sigmoid
    mask, and a second output through Resize linear half_pixel x2."""
    n = _Net("unet_like", seed)
    x = n.input("image", (1, 3, 37, 53))
    e1 = n.op("Relu", n.conv(x, 3, 8, 3))                                              # 37x53
    p1 = n.op("MaxPool", e1, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)          # 19x27
    e2 = n.op("Relu", n.conv(p1, 8, 16, 3))
    p2 = n.op("AveragePool", e2, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
              count_include_pad=0)                                                      # 10x14
    b = n.op("Relu", n.conv(p2, 16, 32, 3))
    wt = n.const(n.weights(32, 16, 2, 2, fan_in=32 * 4), "wt")
    bt = n.const(n.rng.normal(0, 0.1, 16).astype(np.float32), "bt")
    u2 = n.op("ConvTranspose", b, wt, bt, kernel_shape=[2, 2], strides=[2, 2],
              pads=[0, 1, 1, 1], output_padding=[0, 1])                                  # 19x27
    d2 = n.op("Relu", n.conv(n.op("Concat", u2, e2, axis=1), 32, 16, 3))
    sizes = n.const(np.array([1, 16, 37, 53], np.int64), "sizes")
    u1 = n.op("Resize", d2, "", "", sizes, mode="linear",
              coordinate_transformation_mode="align_corners")
    d1 = n.op("Relu", n.conv(n.op("Concat", u1, e1, axis=1), 24, 8, 3))
    mask = n.op("Sigmoid", n.conv(d1, 8, 1, 1, pad=0))
    scales = n.const(np.array([1, 1, 2, 2], np.float32), "scales")
    aux = n.op("Resize", b, "", scales, mode="linear",
               coordinate_transformation_mode="half_pixel")                             # 20x28
    aux = n.op("Sigmoid", n.conv(aux, 32, 4, 3))
    return n.model(mask, aux)


def johnson_like(seed: int = 3) -> onnx.ModelProto:
    """A Johnson-style transfer net: reflect Pad + Conv (9x9, strided 3x3), native
    InstanceNormalization, Relu, two residual blocks, nearest Resize x2 upsampling, Tanh."""
    n = _Net("johnson_like", seed)
    x = n.input("image", (1, 3, 37, 53))

    def block(x, ci, co, k, stride=1, relu=True):
        p = n.const(np.array([0, 0, k // 2, k // 2, 0, 0, k // 2, k // 2], np.int64), "pads")
        y = n.instance_norm(n.conv(n.op("Pad", x, p, mode="reflect"), ci, co, k, stride=stride,
                                   pad=0), co)
        return n.op("Relu", y) if relu else y

    y = block(x, 3, 8, 9)
    y = block(y, 8, 16, 3, stride=2)                                                    # 19x27
    y = block(y, 16, 32, 3, stride=2)                                                   # 10x14
    for _ in range(2):
        y = n.op("Add", y, block(block(y, 32, 32, 3), 32, 32, 3, relu=False))
    scales = n.const(np.array([1, 1, 2, 2], np.float32), "scales")
    y = n.op("Resize", y, "", scales, mode="nearest", coordinate_transformation_mode="asymmetric",
             nearest_mode="floor")                                                      # 20x28
    y = block(y, 32, 16, 3)
    y = n.op("Resize", y, "", scales, mode="nearest")                                   # 40x56
    y = block(y, 16, 3, 9, relu=False)
    return n.model(n.op("Tanh", y))


def classifier_head(seed: int = 4) -> onnx.ModelProto:
    """Token classifier: Reshape (with a shape computed by Shape/Gather/Unsqueeze/Concat, as
    PyTorch exports it), Transpose, MatMul + Add, Relu, ReduceMean, MatMul + Add, Softmax."""
    n = _Net("classifier_head", seed)
    x = n.input("features", (2, 12, 5, 7))
    batch = n.op("Gather", n.op("Shape", x), n.const(np.array(0, np.int64), "i0"), axis=0)
    shape = n.op("Concat", n.op("Unsqueeze", batch, n.const(np.array([0], np.int64), "ax")),
                 n.const(np.array([12, -1], np.int64), "rest"), axis=0)
    t = n.op("Transpose", n.op("Reshape", x, shape), perm=[0, 2, 1])                    # [2,35,12]
    h = n.op("Add", n.op("MatMul", t, n.const(n.weights(12, 20, fan_in=12), "w1")),
             n.const(n.rng.normal(0, 0.1, 20).astype(np.float32), "b1"))
    h = n.op("ReduceMean", n.op("Relu", h), axes=[1], keepdims=0)                     # [2,20]
    logits = n.op("Add", n.op("MatMul", h, n.const(n.weights(20, 10, fan_in=20), "w2")),
                  n.const(n.rng.normal(0, 0.1, 10).astype(np.float32), "b2"))
    return n.model(n.op("Softmax", logits, axis=-1))


def detector_like(seed: int = 5) -> onnx.ModelProto:
    """Three outputs of very different ranges, as a face detector's: a heatmap (Sigmoid of a
    strided conv, ~0.0001..0.007) read from the one small channel of a trunk whose other
    channels span +-50 (one per-tensor uint8 scale for all), box sizes (+-100s) and class
    logits (GlobalAveragePool, Flatten, Gemm: [1, 10])."""
    n = _Net("detector_like", seed)
    x = n.input("image", (1, 3, 37, 53))
    y = n.op("Relu", n.conv(x, 3, 16, 3))
    gain = np.full((16, 1, 1, 1), 30.0, np.float32)
    gain[15] = 0.2                                       # the small channel
    w = (n.weights(16, 16, 3, 3, fan_in=144) * gain).astype(np.float32)
    feat = n.op("Conv", y, n.const(w, "w"), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    hw = np.zeros((8, 16, 3, 3), np.float32)
    hw[:, 15] = n.rng.uniform(0.5, 1.5, (8, 3, 3)).astype(np.float32)
    logit = n.op("Conv", feat, n.const(hw, "w"), n.const(np.full(8, -7, np.float32), "b"),
                 kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    heatmap = n.op("Sigmoid", logit)
    boxes = n.conv(feat, 16, 16, 3, stride=2)
    logits = n.gemm(n.op("Flatten", n.op("GlobalAveragePool", feat)), 16, 10)
    return n.model(heatmap, boxes, logits)


NETS = {f.__name__: f for f in (resnet_like, mobilenet_like, unet_like, johnson_like,
                                classifier_head)}


def random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs in 0..1 for every graph input of ``model`` (static shapes)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.random(shape, dtype=np.float32)
    return feeds
