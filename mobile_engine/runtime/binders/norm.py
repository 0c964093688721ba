"""Instance and batch norm binders (fp32, NHWC or planar), and the norm parameter checks the
fused conv + norm steps share.
"""
from __future__ import annotations

import numpy as np

from kernels import f32_norm as knorm
from kernels import f32_norm_planar as knorm_planar
from kernels import table
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.elementwise import operands, readonly
from mobile_engine.runtime.binders.registry import binds


def checked_norm_params(rt: dict, weights: dict, n: int, c: int, prefix: str = ""):
    """Bind time: (scale, bias) for ``knorm.instance_norm_call``: arrays, or ``(u, G)`` pairs
    the kernel multiplies (``knorm.style_operands``), from the run-time inputs ``rt`` (tag ->
    array) and the weights, after proving what the kernels index: an array scale or bias
    is f32 of C (shared) or N * C (per image) values; a style pair is u (f32, K values) and
    ``G`` (weight ``{prefix}style_<what>``, f32[K, C]); each comes from one source."""
    out = []
    for what in ("scale", "bias"):
        v.require(not (what in rt and f"style_{what}" in rt),
                  f"the {what} is both a run-time input and a style vector")
        if f"style_{what}" in rt:
            key = f"{prefix}style_{what}"
            v.require(key in weights, f"weight {key!r} is missing")
            g = v.array(f"weight {key!r}", weights[key], np.float32, ndim=2, contiguous=True)
            u = v.array(f"the style vector of the {what}", rt[f"style_{what}"], np.float32,
                        size=g.shape[0], contiguous=True)
            v.require(g.shape[1] == c, f"weight {key!r} {list(g.shape)} does not give {c} "
                                       f"channels")
            out.append((u, g))
            continue
        if what in rt:
            t, name = rt[what], f"the {what} input"
        else:
            v.require(f"{prefix}{what}" in weights, f"weight {prefix + what!r} is missing")
            t, name = weights[f"{prefix}{what}"], f"weight {prefix + what!r}"
        v.array(name, t, np.float32, contiguous=True)
        v.require(t.size in (c, n * c), f"{name} has {t.size} values {list(t.shape)}; the "
                                        f"kernel needs {c}" + (f" (shared) or {n * c} (per "
                                                               f"image)" if n > 1 else ""))
        out.append(t)
    return tuple(out)


def _epilogue(params: dict) -> tuple[float, int, tuple[float, float]]:
    """(epsilon, act, (p0, p1)) of a norm step."""
    return (v.number(params, "epsilon"), v.activation(params),
            (v.number(params, "p0"), v.number(params, "p1")))


def _instance_operands(params, weights, inputs, outputs, nchw: bool):
    """Checked (x, out, scale, bias): x, out f32[N, H, W, C] (``nchw``: [N, C, H, W]) of one
    shape with every dim >= 1 (the kernels shift by each channel's first pixel)."""
    x = v.array("the input", v.operand(iter(inputs), "the input"), np.float32, ndim=4,
                contiguous=True)
    v.require(min(x.shape) >= 1, f"the input {list(x.shape)} is empty")
    out = v.array("the output", outputs[0], np.float32, shape=x.shape, contiguous=True)
    tags = v.strings(params, "inputs", ("scale", "bias", "style_scale", "style_bias") +
                     (() if nchw else ("residual",)))
    v.require(len(inputs) == 1 + len(tags),
              f"{len(inputs)} inputs for x and params['inputs']={tags}")
    v.require("residual" not in tags[:-1], f"params['inputs']={tags} lists the residual "
                                           f"before the norm's params")
    c = x.shape[1] if nchw else x.shape[3]
    given = dict(zip(tags, inputs[1:]))
    residual = given.pop("residual", None)
    if residual is not None:
        v.array("the residual", residual, np.float32, shape=x.shape, contiguous=True)
    scale, bias = checked_norm_params(given, weights, x.shape[0], c)
    return x, out, scale, bias, residual


@binds(*table.ids("f32_instance_norm_nhwc{epilogue}"))
def bind_instance_norm(params, weights, inputs, outputs, threads=None):
    x, out, scale, bias, residual = _instance_operands(params, weights, inputs, outputs, False)
    eps, act, p = _epilogue(params)
    return knorm.instance_norm_call(readonly(x), scale, bias, out, eps, act, p, threads=threads,
                                    residual=None if residual is None else readonly(residual))


@binds(*table.ids("f32_instance_norm_nchw{epilogue}"))
def bind_instance_norm_planar(params, weights, inputs, outputs, threads=None):
    x, out, scale, bias, _ = _instance_operands(params, weights, inputs, outputs, True)
    eps, act, p = _epilogue(params)
    return knorm_planar.instance_norm_planar_call(readonly(x), scale, bias, out, eps, act, p,
                                           threads=threads)


def _affine_operands(params, inputs, outputs):
    """Checked (x, out, C) of a batch norm: x, out f32 of one shape, channels last, C >= 1."""
    v.require(len(inputs) == 1, f"{len(inputs)} run-time inputs; the step needs x only")
    x = v.array("the input", inputs[0], np.float32, contiguous=True)
    v.require(x.ndim >= 1 and x.shape[-1] >= 1, f"the input {list(x.shape)} has no channels")
    v.array("the output", outputs[0], np.float32, shape=x.shape, contiguous=True)
    return x, outputs[0], x.shape[-1]


@binds(*table.ids("f32_batch_norm_nhwc{epilogue}"))
def bind_batch_norm(params, weights, inputs, outputs, threads=None):
    x, out, c = _affine_operands(params, inputs, outputs)
    a, b = (v.array(f"weight {k!r}", weights.get(k), np.float32, shape=(c,), contiguous=True)
            for k in ("a", "b"))
    _, act, p = _epilogue(params)
    return knorm.affine_call(readonly(x), readonly(a), readonly(b), out, act, p, threads=threads)


@binds(*table.ids("f32_batch_norm_nhwc_rt{epilogue}"))
def bind_batch_norm_runtime(params, weights, inputs, outputs, threads=None):
    x, scale, bias, mean, var = operands(weights, inputs, 5)
    x, out, c = _affine_operands(params, [x], outputs)
    v.require(sum(f"in{i}" not in weights for i in range(5)) == len(inputs),
              f"{len(inputs)} run-time inputs; the step lists "
              f"{sum(f'in{i}' not in weights for i in range(5))}")
    scale, bias, mean, var = (
        readonly(v.array(f"operand {i} ({what})", t, np.float32, shape=(c,), contiguous=True))
        for i, (what, t) in enumerate((("scale", scale), ("bias", bias), ("mean", mean),
                                       ("var", var)), 1))
    eps, act, p = _epilogue(params)
    a, b = np.empty(c, np.float32), np.empty(c, np.float32)
    fn, args = knorm.affine_call(readonly(x), readonly(a), readonly(b), out, act, p,
                                 threads=threads)
    coefficients = knorm.batch_norm_coefficients

    def run():
        coefficients(scale, bias, mean, var, eps, a, b)
        fn(*args)
    return run, ()
