"""The IR's operators: an Enum, grouped sets, and each op's typed attribute schema.

Layout contract: every spatial op (convolutions, pooling, resize, normalisations) works on
NHWC activations, channels innermost. Weights keep ONNX's layouts (conv ``[Co, Ci/g, KH, KW]``,
conv-transpose ``[Ci, Co/g, KH, KW]``) until planning packs them for a kernel. The ONNX
importer wraps spatial ops in NCHW<->NHWC transposes that the ``sink_transposes`` pass removes.
Exception: a node whose layout attribute says "nchw" (CONV2D ``in_layout``/``out_layout``,
INSTANCE_NORM ``layout``) reads or writes that tensor planar, [N, C, H, W].
"""
from __future__ import annotations

import enum
from typing import Any


class Op(enum.Enum):
    CONV2D = "conv2d"
    CONV_TRANSPOSE2D = "conv_transpose2d"
    BATCH_NORM = "batch_norm"
    INSTANCE_NORM = "instance_norm"
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"
    PRELU = "prelu"
    CLIP = "clip"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    HARD_SIGMOID = "hard_sigmoid"
    HARD_SWISH = "hard_swish"
    SILU = "silu"                  # x * sigmoid(x): passes/fuse_swish.py writes it
    SQRT = "sqrt"
    RECIPROCAL = "reciprocal"
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    SOFTPLUS = "softplus"          # log(1 + exp(x))
    FLOOR = "floor"
    CEIL = "ceil"
    ROUND = "round"                # half to even, as ONNX
    SIGN = "sign"
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    POW = "pow"
    REDUCE_MEAN = "reduce_mean"
    REDUCE_SUM = "reduce_sum"
    PAD = "pad"
    RESIZE = "resize"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_AVG_POOL = "global_avg_pool"
    CONCAT = "concat"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    SLICE = "slice"
    GATHER = "gather"
    CAST = "cast"
    GEMM = "gemm"
    MATMUL = "matmul"
    SOFTMAX = "softmax"
    QUANTIZE = "quantize"        # float -> int: q = clamp(rint(x / s) + z); params on the output
    DEQUANTIZE = "dequantize"    # int -> float: x = (q - z) * s; params on the input
    INT8_RECODE = "int8_recode"  # int8 <-> uint8, the same real values: q and z both move by 128


class Activation(enum.IntEnum):
    """Activations a producer can apply in its epilogue; the int is the kernels' code."""
    NONE = 0
    RELU = 1
    CLAMP = 2          # params (lo, hi): ReLU6 and Clip
    LEAKY_RELU = 3     # params (alpha,)
    SIGMOID = 4
    TANH = 5
    HARD_SIGMOID = 6   # params (alpha, beta)
    HARD_SWISH = 7
    # 8..11, 13..18: the element-wise kernels' math codes (sqrt, reciprocal, neg, exp; log,
    # softplus, floor, ceil, round, sign)
    SILU = 12
    HARD_SWISH_AFFINE = 19  # params (scale, shift): hard_swish(x) * scale + shift
                            # (passes/fuse_activation_affine.py)


UNARY_ACTIVATIONS = {
    Op.RELU: Activation.RELU,
    Op.CLIP: Activation.CLAMP,
    Op.LEAKY_RELU: Activation.LEAKY_RELU,
    Op.SIGMOID: Activation.SIGMOID,
    Op.TANH: Activation.TANH,
    Op.HARD_SIGMOID: Activation.HARD_SIGMOID,
    Op.HARD_SWISH: Activation.HARD_SWISH,
    Op.SILU: Activation.SILU,
}
MATH = frozenset({Op.SQRT, Op.RECIPROCAL, Op.NEG, Op.EXP, Op.LOG, Op.SOFTPLUS, Op.FLOOR,
                  Op.CEIL, Op.ROUND, Op.SIGN})
UNARY = frozenset(UNARY_ACTIVATIONS) | MATH
BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.POW})
ELEMENTWISE = UNARY | BINARY | {Op.PRELU}
CONV_LIKE = frozenset({Op.CONV2D, Op.CONV_TRANSPOSE2D})
REDUCE = frozenset({Op.REDUCE_MEAN, Op.REDUCE_SUM})
POOL = frozenset({Op.MAX_POOL, Op.AVG_POOL, Op.GLOBAL_AVG_POOL})
SPATIAL = CONV_LIKE | POOL | {Op.BATCH_NORM, Op.INSTANCE_NORM, Op.RESIZE}
# Ops whose epilogue can apply an Activation (the fuse_activation pass targets these).
ACTIVATION_PRODUCERS = CONV_LIKE | BINARY | {Op.INSTANCE_NORM, Op.BATCH_NORM, Op.GEMM, Op.MATMUL}
# Ops with quantized semantics: a tensor with ``Tensor.quant`` set holds integers; these ops
# dequantize such inputs, compute in float, and quantize the output when its tensor has ``quant``
# (ir/interpret.py). Their output dtype follows the output tensor (ir/shapes.py).
QUANTIZABLE = frozenset({Op.CONV2D, Op.ADD, Op.INSTANCE_NORM})
# NOTE: int8 activations run as uint8 with the zero point moved by 128 (the qu8 kernels take
# uint8); INT8_RECODE converts at the graph's edges: int8 inputs and outputs (importers/).
QUANT_OPS = frozenset({Op.QUANTIZE, Op.DEQUANTIZE, Op.INT8_RECODE})
# Ops that only relabel memory: planning gives their output the input's storage.
VIEW_OPS = frozenset({Op.RESHAPE})


LAYOUTS = ("nhwc", "nchw")      # values of the layout attributes


def _ints(n: int | None = None):
    return ("ints", n)


# Attribute schema: op -> {name: (kind, default)}. kind is "int", "float", "str", "bool",
# ("ints", n) (a tuple of ints, length n or any), "floats", "activation".
_ACT = {"activation": ("activation", Activation.NONE), "act_params": ("floats", ())}
_CONV = {
    "strides": (_ints(2), (1, 1)),
    "dilations": (_ints(2), (1, 1)),
    "pads": (_ints(4), (0, 0, 0, 0)),           # top, left, bottom, right
    "group": ("int", 1),
}
ATTRIBUTES: dict[Op, dict[str, tuple[Any, Any]]] = {
    Op.CONV2D: {**_CONV, **_ACT,
                "pad_mode": ("str", "constant"),  # constant (zeros) | reflect | edge
                "upsample": ("int", 1),            # nearest upsampling of the input before padding
                # "nhwc" | "nchw" (planar): x's layout, and the output's (and residual's); the
                # nchw_tail pass sets them for few-channel convs before an NCHW graph output
                "in_layout": ("str", "nhwc"), "out_layout": ("str", "nhwc"),
                # a QDQ model's conv (fold_qdq): uint8 outputs at rounding ties follow the
                # float32 conv of the dequantized operands, as onnxruntime runs it
                "float_ties": ("bool", False),
                # output pixels computed per position (pack_output_pixels): channel j * Co + co
                # of column w' is channel co of column f * w' + j
                "pixel_phases": ("int", 1)},
    Op.CONV_TRANSPOSE2D: {**_CONV, **_ACT, "output_padding": (_ints(2), (0, 0))},
    Op.BATCH_NORM: {"epsilon": ("float", 1e-5), **_ACT},
    Op.INSTANCE_NORM: {"epsilon": ("float", 1e-5), **_ACT,
                       "layout": ("str", "nhwc")},  # of x and the output: "nhwc" | "nchw"
    Op.LEAKY_RELU: {"alpha": ("float", 0.01)},
    Op.CLIP: {"min": ("float", float("-inf")), "max": ("float", float("inf"))},
    Op.HARD_SIGMOID: {"alpha": ("float", 0.2), "beta": ("float", 0.5)},
    **{op: dict(_ACT) for op in BINARY},
    Op.REDUCE_MEAN: {"axes": (_ints(), ()), "keepdims": ("bool", True)},
    Op.REDUCE_SUM: {"axes": (_ints(), ()), "keepdims": ("bool", True)},
    Op.PAD: {"pads": (_ints(), ()), "mode": ("str", "constant"), "value": ("float", 0.0)},
    Op.RESIZE: {"size": (_ints(2), None),       # output H, W
                "mode": ("str", "nearest"),       # nearest | linear | cubic
                "coordinate_mode": ("str", "half_pixel"),
                "nearest_mode": ("str", "round_prefer_floor"),
                "scales": ("floats", ()),         # H, W scales when the model gave them
                "cubic_coeff_a": ("float", -0.75),
                "exclude_outside": ("bool", False),
                "antialias": ("bool", False),     # linear/cubic downsampling widened
                "roi": ("floats", ()),            # tf_crop_and_resize: H0, W0, H1, W1
                "extrapolation_value": ("float", 0.0)},
    Op.MAX_POOL: {"kernel": (_ints(2), None), "strides": (_ints(2), (1, 1)),
                  "pads": (_ints(4), (0, 0, 0, 0)), "dilations": (_ints(2), (1, 1))},
    Op.AVG_POOL: {"kernel": (_ints(2), None), "strides": (_ints(2), (1, 1)),
                  "pads": (_ints(4), (0, 0, 0, 0)), "count_include_pad": ("bool", False)},
    Op.CONCAT: {"axis": ("int", None)},
    Op.RESHAPE: {"shape": (_ints(), None)},
    Op.TRANSPOSE: {"perm": (_ints(), None)},
    Op.SLICE: {"starts": (_ints(), None), "ends": (_ints(), None), "axes": (_ints(), None),
               "steps": (_ints(), None)},
    Op.GATHER: {"axis": ("int", 0)},
    Op.CAST: {"to": ("str", None)},
    Op.GEMM: {"alpha": ("float", 1.0), "beta": ("float", 1.0), "trans_a": ("bool", False),
              "trans_b": ("bool", False), **_ACT},
    Op.MATMUL: dict(_ACT),
    Op.SOFTMAX: {"axis": ("int", -1)},
    Op.QUANTIZE: {"to": ("str", "uint8")},       # uint8 | int8; scale/zero point: output.quant
    Op.DEQUANTIZE: {},                           # scale/zero point: input.quant
    Op.INT8_RECODE: {},                          # scale/zero point: input.quant, output.quant
}

# Number of inputs: (required, maximum).
ARITY: dict[Op, tuple[int, int]] = {
    Op.CONV2D: (2, 4),              # x, w, [bias], [residual added before the activation]
    Op.CONV_TRANSPOSE2D: (2, 3),    # x, w, [bias]
    Op.BATCH_NORM: (5, 5),          # x, scale, bias, mean, var
    Op.INSTANCE_NORM: (3, 3),       # x, scale [C] or [N, C], bias likewise
    Op.PRELU: (2, 2),
    Op.GATHER: (2, 2),
    Op.GEMM: (2, 3),
    Op.MATMUL: (2, 2),
    Op.CONCAT: (1, 1 << 16),
    **{op: (2, 2) for op in BINARY},
}


def arity(op: Op) -> tuple[int, int]:
    return ARITY.get(op, (1, 1))


def default_attrs(op: Op) -> dict[str, Any]:
    return {k: d for k, (_, d) in ATTRIBUTES.get(op, {}).items() if d is not None}
