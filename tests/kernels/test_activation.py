"""kernels/activation.py: one definition of every activation. The IR's enum matches the kernels'
codes; the conv epilogue (``activate_span``), the element-wise kernels (``act_inplace``,
``map_row``) and the numpy reference give the same bits for every code; hard swish matches
onnxruntime's HardSwish bit for bit (the independent truth); parameter packing."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from kernels import activation as kact
from kernels import f32_conv2d, f32_elementwise
from mobile_engine.ir.ops import Activation as IRActivation

F32 = np.float32
PARAMS = {2: (-0.5, 0.75), 3: (0.1,), 6: (0.3, 0.4), 19: (0.75, -0.25)}


def values() -> np.ndarray:
    rng = np.random.default_rng(7)
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 3.0, -3.0, 6.0, -6.0, 1e30, -1e30, 1e-40]
    return np.concatenate([rng.uniform(-8, 8, 20000), rng.standard_normal(2000) * 1e-3,
                           special]).astype(F32)


def same_bits(a, b) -> np.ndarray:
    return (a.view(np.int32) == b.view(np.int32)) | (np.isnan(a) & np.isnan(b))


def same_values(a, b) -> np.ndarray:
    """Equal as numbers (-0.0 == 0.0: the kernels' ReLU keeps -0.0, np.maximum gives 0.0)."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def test_ir_enum_is_the_kernels_enum():
    assert [(a.name, a.value) for a in IRActivation] == [(a.name, a.value) for a in kact.Activation]


@pytest.mark.parametrize("code", list(kact.Activation)[1:], ids=lambda a: a.name)
def test_every_evaluator_agrees(code):
    x = values()
    p0, p1 = (F32(v) for v in kact.params(code, PARAMS.get(int(code), ())))
    conv = x.copy()
    f32_conv2d.activate_span(conv, 0, conv.size, int(code), p0, p1)
    inplace = x.copy()
    f32_elementwise.act_inplace(inplace, 0, inplace.size, int(code), p0, p1)
    mapped = np.empty_like(x)
    f32_elementwise.map_row(x, 0, mapped, 0, x.size, int(code), p0, p1)
    with np.errstate(all="ignore"):
        ref = kact.reference(x, code, PARAMS.get(int(code), ()))
    for name, got in (("conv epilogue", conv), ("act_inplace", inplace), ("map_row", mapped)):
        if code in (kact.Activation.SIGMOID, kact.Activation.TANH, kact.Activation.SILU):
            # polynomial exp / tanh against numpy's: within 2 ulp (kernels/activation.py), one
            # more rounding for SILU's product
            ok = np.isclose(got, ref, rtol=4 * np.finfo(F32).eps, atol=1e-37, equal_nan=True)
        elif code is kact.Activation.HARD_SIGMOID:
            # the kernels fuse ``v * alpha + beta`` into one multiply-add (config.FASTMATH
            # "contract"), numpy rounds twice: one rounding apart
            ok = np.isclose(got, ref, rtol=0, atol=np.finfo(F32).eps, equal_nan=True)
        elif code is kact.Activation.HARD_SWISH_AFFINE:
            # hard swish as ONNX's, then ``h * scale + shift``: one multiply-add where the
            # compiler contracts it, two roundings where not; the reference rounds once
            ok = np.isclose(got, ref, rtol=np.finfo(F32).eps, atol=np.finfo(F32).eps,
                            equal_nan=True)
        else:
            ok = same_values(got, ref)
        assert ok.all(), f"{name} {code.name}: {int((~ok).sum())} values differ, e.g. x={x[~ok][:3]}"
    assert same_bits(conv, inplace).all() and same_bits(conv, mapped).all()


def test_hard_swish_is_onnxruntimes_bit_for_bit(ort):
    x = values()
    node = helper.make_node("HardSwish", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    got = x.copy()
    f32_conv2d.activate_span(got, 0, got.size, int(kact.Activation.HARD_SWISH), F32(0), F32(0))
    ok = same_bits(got, want)
    assert ok.all(), f"{int((~ok).sum())} values differ from onnxruntime, e.g. x={x[~ok][:3]}"
    with np.errstate(all="ignore"):
        ref = kact.reference(x, kact.Activation.HARD_SWISH)
        # the other spelling (v / 6) is not what onnxruntime computes: this test tells them apart
        div = x * np.clip(x / F32(6) + F32(0.5), 0, 1)
    assert same_bits(ref, want).all()
    assert not same_bits(div, want).all()


def test_params():
    assert kact.params(kact.Activation.HARD_SIGMOID) == (0.2, 0.5)
    assert kact.params(kact.Activation.LEAKY_RELU) == (0.01, 0.0)
    assert kact.params(kact.Activation.LEAKY_RELU, [0.3]) == (0.3, 0.0)
    assert kact.params(kact.Activation.CLAMP, (0, 6)) == (0.0, 6.0)
    assert kact.params(kact.Activation.RELU) == (0.0, 0.0)
    with pytest.raises(ValueError, match="CLAMP needs"):
        kact.params(kact.Activation.CLAMP, (1.0,))
