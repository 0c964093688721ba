"""int8 element-wise binders: quantize, dequantize, uint8 add with requantization, and the
norms of int8 plans (requantizing, + residual add, float output).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_norm_qu8 as knq
from kernels import qu8_elementwise as qew
from kernels.config import use_parallel
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.elementwise import readonly
from mobile_engine.runtime.binders.registry import binds

F32 = np.float32
QUANTIZE_ID = qew.QUANTIZE_ID
NORM_QU8, NORM_ADD_QU8, NORM_ADD_F32 = knq.NORM_QU8, knq.NORM_ADD_QU8, knq.NORM_ADD_F32


def style_matrix(weights: dict, key: str, k: int, c: int) -> np.ndarray:
    """Bind time: G f32[k, c] from weight ``key`` (float32) or ``key_q``/``key_scale``
    [/``key_zero``] (int8 values, ``(q - zero) * scale`` in float32 as ``qs8_dequantize_const``)."""
    if key in weights:
        return v.array(f"weight {key!r}", weights[key], F32, shape=(k, c))
    v.require(f"{key}_q" in weights and f"{key}_scale" in weights,
              f"weight {key!r} (or {key}_q and {key}_scale) is missing")
    q = v.array(f"weight '{key}_q'", weights[f"{key}_q"], np.int8, shape=(k, c))
    shapes = ((k, 1), (1, c), (1, 1))
    scale = v.array(f"weight '{key}_scale'", weights[f"{key}_scale"], F32, ndim=2)
    v.require(scale.shape in shapes, f"weight '{key}_scale' {list(scale.shape)} does not "
                                     f"broadcast per axis over {[k, c]}")
    zero = weights.get(f"{key}_zero", np.zeros((1, 1), np.int32))
    v.array(f"weight '{key}_zero'", zero, np.int32, ndim=2)
    v.require(zero.shape in shapes, f"weight '{key}_zero' {list(zero.shape)} does not "
                                    f"broadcast per axis over {[k, c]}")
    return np.ascontiguousarray((q.astype(np.int32) - zero).astype(F32) * scale)


NORM_INPUT_TAGS = ("scale", "bias", "style_scale", "style_bias")


def int8_recode(out: np.ndarray, x: np.ndarray) -> None:
    """int8 <-> uint8 of the same real values: the top bit flipped (q + 128, or q - 128)."""
    np.bitwise_xor(x.view(np.uint8), np.uint8(0x80), out=out.view(np.uint8))


@binds("int8_recode")
def bind_int8_recode(params, weights, inputs, outputs, threads=None):
    x = v.array("the input", v.operand(iter(inputs), "the input"), (np.int8, np.uint8),
                contiguous=True)
    other = np.uint8 if x.dtype == np.int8 else np.int8
    out = _flat("the output", v.operand(iter(outputs), "the output"), other, x.size)
    return int8_recode, (out, readonly(x).reshape(-1))


# --- binders -------------------------------------------------------------------------------
def _scale(params: dict, key: str = "s") -> float:
    s = v.number(params, key)
    v.require(np.isfinite(s) and s > 0, f"params[{key!r}]={s}: expected a positive scale")
    return s


def _flat(what: str, a: np.ndarray, dtype, size: int) -> np.ndarray:
    """``a`` (an arena view) of ``dtype`` and ``size`` elements, as a flat view (never a copy)."""
    v.array(what, a, dtype, size=size, contiguous=True)
    return a.reshape(-1)


@binds("qs8_dequantize_const")
def bind_dequantize_const(params, weights, inputs, outputs, threads=None):
    """The float values are computed once here; each run copies them into the arena."""
    y = v.array("the output", v.operand(iter(outputs), "the output"), F32, contiguous=True)
    v.require("q" in weights and "scale" in weights, "weights 'q' and 'scale' are needed")
    q = v.array("weight 'q'", weights["q"], np.int8, shape=y.shape)
    scale = v.array("weight 'scale'", weights["scale"], F32)
    zero = weights.get("zero", np.zeros((1,) * q.ndim, np.int32))
    for what, t in (("scale", scale), ("zero", zero)):
        v.require(t.ndim == q.ndim and all(d in (1, e) for d, e in zip(t.shape, q.shape)),
                  f"weight {what!r} {list(t.shape)} does not broadcast to {list(q.shape)}")
    values = (q.astype(np.int32) - zero).astype(F32) * scale
    return np.copyto, (y, values)


@binds(QUANTIZE_ID)
def bind_quantize(params, weights, inputs, outputs, threads=None):
    x = v.array("the input", v.operand(iter(inputs), "the input"), F32, contiguous=True)
    y = _flat("the output", v.operand(iter(outputs), "the output"), np.uint8, x.size)
    s, z = _scale(params), v.integer(params, "z", 0, 255)
    return qew.kernel(QUANTIZE_ID, use_parallel(x.size, threads=threads)), (
        readonly(x).reshape(-1), y, F32(1.0 / s), z)


@binds(qew.DEQUANTIZE_ID)
def bind_dequantize(params, weights, inputs, outputs, threads=None):
    q = v.array("the input", v.operand(iter(inputs), "the input"), np.uint8, contiguous=True)
    y = _flat("the output", v.operand(iter(outputs), "the output"), F32, q.size)
    return qew.kernel(qew.DEQUANTIZE_ID, use_parallel(y.size, threads=threads)), (
        readonly(q).reshape(-1), y, F32(_scale(params)), v.integer(params, "z", 0, 255))


@binds(qew.ADD_ID)
def bind_add(params, weights, inputs, outputs, threads=None):
    ins = iter(inputs)
    a = v.array("input a", v.operand(ins, "input a"), np.uint8, contiguous=True)
    b = _flat("input b", v.operand(ins, "input b"), np.uint8, a.size)
    y = _flat("the output", v.operand(iter(outputs), "the output"), np.uint8, a.size)
    qmin, qmax = v.integer(params, "qmin", 0, 255), v.integer(params, "qmax", 0, 255)
    v.require(qmin <= qmax, f"params qmin={qmin} > qmax={qmax}")
    return qew.kernel(qew.ADD_ID, use_parallel(y.size, threads=threads)), (
        readonly(a).reshape(-1), readonly(b), y, v.integer(params, "za", 0, 255),
        v.integer(params, "zb", 0, 255), F32(v.number(params, "ma")),
        F32(v.number(params, "mb")), v.integer(params, "zy", 0, 255), qmin, qmax)




def _tags(params: dict) -> list[str]:
    """params['inputs'] checked: distinct tags of NORM_INPUT_TAGS (at most one per operand)."""
    tags = params.get("inputs")
    v.require(isinstance(tags, list) and len(tags) <= 2 and
              all(isinstance(t, str) and t in NORM_INPUT_TAGS for t in tags) and
              len({t.rsplit("_", 1)[-1] for t in tags}) == len(tags),
              f"params['inputs']={tags!r}: expected distinct tags of {list(NORM_INPUT_TAGS)}")
    return tags


def norm_operands(params: dict, weights: dict, inputs: list, x_shape: tuple,
                  prefix: str = "") -> tuple:
    """Checked (scale, bias) of a norm step for ``f32_norm_qu8``: f32[C] or [N, C] arrays, or
    ``(u, G)`` pairs (u f32[K], G f32[K, C]); ``inputs`` are the run-time inputs after x (in
    the order of params ``inputs``); weights ``{prefix}scale``/``{prefix}style_scale`` etc."""
    n, c = x_shape[0], x_shape[3]
    tags = _tags(params)
    v.require(len(inputs) >= len(tags), f"{len(inputs)} run-time norm inputs for tags {tags}")
    rt = dict(zip(tags, inputs))
    out = []
    for what in ("scale", "bias"):
        if f"style_{what}" in rt:
            u = v.array(f"the style vector of the {what}", rt[f"style_{what}"], F32)
            v.require(u.flags.c_contiguous, f"the style vector {list(u.shape)} is not contiguous")
            g = style_matrix(weights, f"{prefix}style_{what}", u.size, c)
            out.append((u, g))
            continue
        if what in rt:
            t = v.array(f"the {what} input", rt[what], F32)
        else:
            key = f"{prefix}{what}"
            v.require(key in weights, f"weight {key!r} is missing (params['inputs']={tags})")
            t = v.array(f"weight {key!r}", weights[key], F32)
        v.require(t.size in (c, n * c), f"instance norm {what} {list(t.shape)} does not fit "
                                        f"input {list(x_shape)}")
        out.append(t)
    return tuple(out)


def _norm_common(params: dict, weights: dict, inputs: list, prefix: str = ""):
    """Checked (x f32[N, H, W, C] C-contiguous, scale, bias, eps, act, (p0, p1), the inputs
    after the norm's own)."""
    x = v.array("the norm input", v.operand(iter(inputs), "the norm input"), F32, ndim=4)
    v.require(x.flags.c_contiguous, f"the norm input {list(x.shape)} is not C-contiguous")
    ntags = len(_tags(params))
    scale, bias = norm_operands(params, weights, inputs[1:1 + ntags], x.shape, prefix)
    act = v.activation(params)
    return (x, scale, bias, v.number(params, "epsilon"), act,
            (v.number(params, "p0"), v.number(params, "p1")), inputs[1 + ntags:])


def _u8_like(what: str, a, shape) -> np.ndarray:
    v.array(what, a, np.uint8, shape=shape)
    v.require(a.flags.c_contiguous, f"{what} {list(a.shape)} is not C-contiguous")
    return a


def bind_norm_qu8(params: dict, weights: dict, inputs: list, outputs: list, fused: bool,
                  row_sums: np.ndarray | None = None, prefix: str = "",
                  threads: int | None = None):
    """(fn, args) of ``f32_instance_norm_nhwc[_add]_qu8`` (``fused``: the residual add); with
    ``row_sums`` (the producing conv's statistics, families/qconv_norm.py) the kernel skips its
    statistics pass. Params and weights are read under ``prefix``; ``threads``: the session's."""
    p = {k[len(prefix):]: val for k, val in params.items() if k.startswith(prefix)}
    x, scale, bias, eps, act, act_params, rest = _norm_common(p, weights, inputs, prefix)
    out = _u8_like("the output", v.operand(iter(outputs), "the output"), x.shape)
    v.require(len(rest) == int(fused), f"{len(inputs)} inputs: expected x, the params['inputs'] "
                                       f"tensors{' and the residual' if fused else ''}")
    r = _u8_like("the residual", rest[0], x.shape) if fused else None
    s = v.number(p, "s")
    v.require(np.isfinite(s) and s > 0, f"params['s']={s}: expected a positive scale")
    qargs = (v.integer(p, "z", 0, 255), v.integer(p, "qmin", 0, 255),
             v.integer(p, "qmax", 0, 255))
    rs, rz = (v.number(p, "rs"), v.integer(p, "rz", 0, 255)) if fused else (1.0, 0)
    keep_x = v.flag(p, "inplace") or knq.fusable(act, act_params)
    v.require(row_sums is None or knq.fusable(act, act_params),
              f"params['act']={act}: a norm fused into its conv takes none/relu/clamp")
    # the two-pass kernel reads x only; the fallback (other activations) overwrites it
    return _on_copy(x, keep_x, lambda work: knq.instance_norm_qu8_call(
        work, scale, bias, out, eps, act, act_params, s, *qargs, r, rs, rz, row_sums=row_sums,
        threads=threads))


def _on_copy(x: np.ndarray, in_place: bool, make):
    """``make(work)`` -> (fn, args) of a kernel that may overwrite ``work``: ``x`` itself when
    ``in_place``, else a copy made before each run into a buffer allocated once, here."""
    work = x if in_place else np.empty(x.shape, F32)
    try:
        fn, args = make(work)
    except ValueError as exc:
        raise v.fail(str(exc)) from None
    if in_place:
        return fn, args

    def run():
        np.copyto(work, x)
        fn(*args)
    return run, ()


def _legacy_norm_params(params: dict, weights: dict, inputs: list) -> tuple[dict, dict]:
    """Plans written before params ``inputs`` kept constant scale/bias as weights in1/in2."""
    if "inputs" in params:
        return params, weights
    tags = [w for i, w in ((1, "scale"), (2, "bias")) if f"in{i}" not in weights]
    weights = {**weights, **{w: weights[f"in{i}"] for i, w in ((1, "scale"), (2, "bias"))
                             if f"in{i}" in weights}}
    return {**params, "inputs": tags}, weights


def _bind_norm(fused: bool):
    def bind(params, weights, inputs, outputs, threads=None):
        params, weights = _legacy_norm_params(params, weights, inputs)
        return bind_norm_qu8(params, weights, inputs, outputs, fused, threads=threads)
    return bind


binds(NORM_QU8)(_bind_norm(False))
binds(NORM_ADD_QU8)(_bind_norm(True))


@binds(NORM_ADD_F32)
def bind_norm_add_f32(params, weights, inputs, outputs, threads=None):
    params, weights = _legacy_norm_params(params, weights, inputs)
    x, scale, bias, eps, act, act_params, rest = _norm_common(params, weights, inputs)
    v.require(len(rest) == 1, f"{len(inputs)} inputs: expected x, the params['inputs'] tensors "
                              f"and the residual")
    r = _u8_like("the residual", rest[0], x.shape)
    out = v.array("the output", v.operand(iter(outputs), "the output"), F32, shape=x.shape)
    v.require(out.flags.c_contiguous, "the output is not C-contiguous")
    rs, rz = v.number(params, "rs"), v.integer(params, "rz", 0, 255)
    lo, hi = v.number(params, "lo"), v.number(params, "hi")
    v.flag(params, "inplace")           # NOTE: x is only read (the norm writes out)
    try:
        return knq.instance_norm_add_f32_call(x, scale, bias, out, eps, act, act_params, r, rs,
                                              rz, lo, hi, threads=threads)
    except ValueError as exc:
        raise v.fail(str(exc)) from None
