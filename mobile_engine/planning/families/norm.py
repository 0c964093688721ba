"""Normalisation family: INSTANCE_NORM (run-time statistics) and standalone BATCH_NORM.

Kernel ids:

- ``f32_instance_norm_nhwc[_<epilogue>]``: two passes per image (kernels/f32_norm.py); scale and
  bias are weights when constant, run-time tensors otherwise (e.g. computed from style weights)
- ``f32_instance_norm_nchw[_<epilogue>]``: the same over planar tensors (``layout`` "nchw")
- none when the producing conv absorbs the norm (``f32_conv2d_igemm_{MR}x{NR}_instnorm[_<epilogue>]``,
  families/conv.py ``fused_norm``)
- ``f32_batch_norm_nhwc[_<epilogue>]``: constant params folded at compile time into the
  per-channel affine ``a = scale / sqrt(var + eps)``, ``b = bias - mean * a`` (weights ``a``,
  ``b``); one pass
- ``f32_batch_norm_nhwc_rt[_<epilogue>]``: some param is computed at run time; the affine is
  recomputed (C values) before the pass on every run
"""
from __future__ import annotations

import numpy as np

from kernels import f32_norm as knorm
from mobile_engine.planning.families.conv import norm_fused_into_conv
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families.elementwise import (EPILOGUES, activation, operands,
                                                         readonly)
from mobile_engine.planning.step import Step, binds, lowers, runtime_inputs


def _check_f32(node: Node, graph: Graph) -> None:
    for name in node.inputs:
        if name and graph.tensors[name].dtype.np != np.float32:
            raise UnsupportedOperatorError(
                f"node {node.name!r} ({node.op.name}): input {name!r} is "
                f"{graph.tensors[name].dtype.value}; only float32 has a kernel")


def _f32(consts: dict) -> dict:
    return {k: np.ascontiguousarray(v, np.float32) for k, v in consts.items()}


@lowers(Op.INSTANCE_NORM)
def lower_instance_norm(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    if norm_fused_into_conv(node, graph):
        return []                  # the producing conv's step computes it (families/conv.py)
    names, consts = runtime_inputs(node, graph)
    act, p0, p1 = activation(node)
    shape = graph.tensors[node.inputs[0]].shape
    params = {"epsilon": float(node.attrs["epsilon"]), "act": act, "p0": p0, "p1": p1}
    kernel = f"f32_instance_norm_{node.attrs['layout']}{EPILOGUES[act]}"
    # two passes: ~3 flops to accumulate, 3 to normalise, per element
    return [Step(node.name, kernel, names, list(node.outputs), params, _f32(consts),
                 flops=6 * int(np.prod(shape, dtype=np.int64)))]


@binds(*(f"f32_instance_norm_nhwc{e}" for e in EPILOGUES.values()))
def bind_instance_norm(params, weights, inputs, outputs):
    x, scale, bias = operands(weights, inputs, 3)
    out = outputs[0]
    c = x.shape[3]
    for what, t in (("scale", scale), ("bias", bias)):
        if t.size not in (c, x.shape[0] * c):
            raise ValueError(f"instance norm {what} {t.shape} does not fit input {x.shape}")
    return knorm.instance_norm_call(readonly(x), readonly(scale), readonly(bias), out,
                                    params["epsilon"], int(params["act"]),
                                    (params["p0"], params["p1"]))


@binds(*(f"f32_instance_norm_nchw{e}" for e in EPILOGUES.values()))
def bind_instance_norm_planar(params, weights, inputs, outputs):
    x, scale, bias = operands(weights, inputs, 3)
    out = outputs[0]
    c = x.shape[1]
    for what, t in (("scale", scale), ("bias", bias)):
        if t.size not in (c, x.shape[0] * c):
            raise ValueError(f"instance norm {what} {t.shape} does not fit planar input "
                             f"{x.shape}")
    if out.shape != x.shape:
        raise ValueError(f"instance norm output {out.shape} should be {x.shape}")
    return knorm.instance_norm_planar_call(readonly(x), readonly(scale), readonly(bias), out,
                                           params["epsilon"], int(params["act"]),
                                           (params["p0"], params["p1"]))


@lowers(Op.BATCH_NORM)
def lower_batch_norm(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    names, consts = runtime_inputs(node, graph)
    act, p0, p1 = activation(node)
    eps = float(node.attrs["epsilon"])
    params = {"epsilon": eps, "act": act, "p0": p0, "p1": p1}
    flops = 2 * int(np.prod(graph.tensors[node.inputs[0]].shape, dtype=np.int64))
    if all(f"in{i}" in consts for i in range(1, 5)):
        a, b = knorm.batch_norm_fold(*(consts[f"in{i}"] for i in range(1, 5)), eps)
        return [Step(node.name, f"f32_batch_norm_nhwc{EPILOGUES[act]}", names,
                     list(node.outputs), params, {"a": a, "b": b}, flops=flops)]
    return [Step(node.name, f"f32_batch_norm_nhwc_rt{EPILOGUES[act]}", names,
                 list(node.outputs), params, _f32(consts), flops=flops)]


@binds(*(f"f32_batch_norm_nhwc{e}" for e in EPILOGUES.values()))
def bind_batch_norm(params, weights, inputs, outputs):
    (x,), out = inputs, outputs[0]
    a, b = readonly(weights["a"]), readonly(weights["b"])
    if a.shape != (x.shape[-1],):
        raise ValueError(f"batch norm affine {a.shape} does not fit input {x.shape}")
    return knorm.affine_call(readonly(x), a, b, out, int(params["act"]),
                             (params["p0"], params["p1"]))


@binds(*(f"f32_batch_norm_nhwc_rt{e}" for e in EPILOGUES.values()))
def bind_batch_norm_runtime(params, weights, inputs, outputs):
    x, scale, bias, mean, var = (readonly(t) for t in operands(weights, inputs, 5))
    out = outputs[0]
    c = x.shape[-1]
    a, b = np.empty(c, np.float32), np.empty(c, np.float32)
    fn, args = knorm.affine_call(x, readonly(a), readonly(b), out, int(params["act"]),
                                 (params["p0"], params["p1"]))
    coefficients, eps = knorm.batch_norm_coefficients, float(params["epsilon"])

    def run():
        coefficients(scale, bias, mean, var, eps, a, b)
        fn(*args)
    return run, ()
