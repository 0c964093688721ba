"""Element-wise binders: unary maps, binary ops over a broadcast walk, PReLU, and the numpy
fallbacks for other dtypes. Kernel ids: ``mobile_engine/planning/families/elementwise.py``.
"""
from __future__ import annotations

import numpy as np

from kernels import f32_elementwise as kew
from kernels import table
from kernels.activation import Activation
from mobile_engine.errors import EngineError
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.registry import binds

F32 = np.dtype(np.float32)


readonly = kew.readonly      # re-exported for the other families


def operands(weights: dict, inputs: list, count: int) -> list[np.ndarray]:
    """The node's operands in order: weights ``in<i>`` where constant, else the next input."""
    runtime = iter(inputs)
    return [weights[f"in{i}"] if f"in{i}" in weights else v.operand(runtime, f"operand {i}")
            for i in range(count)]


def noop() -> None:
    """The call of a step whose output is empty."""


MAX_UNARY_CODE = max(kew.UNARY_CODES.values())


@binds(*table.ids("f32_v{name}"))
def bind_f32_unary(params, weights, inputs, outputs, threads=None):
    (x,) = operands(weights, inputs, 1)
    out = outputs[0]
    code = v.integer(params, "code", 0, MAX_UNARY_CODE)
    p0, p1 = v.number(params, "p0"), v.number(params, "p1")
    v.array("the output", out, np.float32)
    v.array("the input", x, np.float32, size=out.size)
    k = kew.variant(out.size, threads)
    return k.vunary, (readonly(x).reshape(-1), out.reshape(-1), code, np.float32(p0),
                      np.float32(p1))


def _int_bounds(dtype: np.dtype, lo: float, hi: float):
    """Clip bounds for ``dtype``: integers inside its range (numpy refuses a Python int bound
    the dtype cannot hold), infinities become its limits."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo = info.min if not np.isfinite(lo) else min(max(int(np.ceil(lo)), info.min), info.max)
        hi = info.max if not np.isfinite(hi) else min(max(int(np.floor(hi)), info.min), info.max)
    return lo, hi


def _np_unary(code: int, x, out, p0: float, p1: float):
    if code == kew.UNARY_CODES["relu"]:
        zero = out.dtype.type(0)
        return lambda: np.maximum(x, zero, out=out, casting="unsafe")
    if code == kew.UNARY_CODES["clip"]:
        lo, hi = _int_bounds(out.dtype, p0, p1)
        return lambda: np.clip(x, lo, hi, out=out, casting="unsafe")
    fn = {kew.NEG: np.negative, kew.SQRT: np.sqrt, kew.EXP: np.exp,
          kew.RECIPROCAL: np.reciprocal}[code]

    def run():
        with np.errstate(all="ignore"):
            fn(x, out=out, casting="unsafe")
    return run


@binds(*table.ids("np_unary_{name}"))
def bind_np_unary(params, weights, inputs, outputs, threads=None):
    (x,) = operands(weights, inputs, 1)
    out = outputs[0]
    code = v.choice(params, "code", (kew.UNARY_CODES["relu"], kew.UNARY_CODES["clip"], kew.NEG,
                                     kew.SQRT, kew.EXP, kew.RECIPROCAL))
    p0, p1 = v.number(params, "p0"), v.number(params, "p1")
    v.array("the output", out)
    v.array("the input", x, shape=out.shape)
    v.probe(lambda x, out: _np_unary(code, x, out, p0, p1), x, out)
    return _np_unary(code, x, out, p0, p1), ()


@binds(*table.ids("f32_vbinary_{name}{pattern}{epilogue}"))
def bind_f32_binary(params, weights, inputs, outputs, threads=None):
    a, b = operands(weights, inputs, 2)
    out = outputs[0]
    kind = v.choice(params, "kind", ("flat", "rows", "nd"))
    rank = {"flat": 1, "rows": 2, "nd": kew.MAX_RANK}[kind]
    shape = v.integers(params, "shape", rank)
    plan = {"kind": kind, "shape": shape, "a_strides": v.integers(params, "a_strides", rank),
            "b_strides": v.integers(params, "b_strides", rank)}
    op = v.integer(params, "op", 0, max(kew.BINARY_CODES.values()))
    act = v.activation(params)
    p0, p1 = v.number(params, "p0"), v.number(params, "p1")
    v.array("the output", out, np.float32)
    if v.prod(shape) != out.size:
        raise v.fail(f"broadcast plan {shape} does not cover the output {list(out.shape)}")
    for name, x in (("a", a), ("b", b)):
        v.array(f"operand {name}", x, np.float32)
        strides = plan[f"{name}_strides"]
        # the kernels treat an innermost step other than 1 as 0 (a broadcast)
        v.require(strides[-1] in (0, 1), f"params[{name + '_strides'!r}]={strides}: the "
                                         f"innermost step must be 0 or 1")
        v.walk_inside(f"operand {name} ({name}_strides {strides} over {shape})", 0, shape,
                      strides, x.size)
    if out.size == 0:
        return noop, ()
    return kew.run_binary(plan, readonly(a), readonly(b), out, op, act, p0, p1, threads=threads)


_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "pow": np.power}


@binds(*table.ids("np_binary_{name}"))
def bind_np_binary(params, weights, inputs, outputs, threads=None):
    a, b = operands(weights, inputs, 2)
    out = outputs[0]
    codes = {kew.BINARY_CODES[n]: n for n in _UFUNCS}
    op = codes[v.choice(params, "op", codes)]
    act = v.choice(params, "act", (Activation.NONE, Activation.RELU, Activation.CLAMP)
                   if out.dtype != F32 else tuple(Activation))
    p0, p1 = v.number(params, "p0"), v.number(params, "p1")
    for what, x in (("operand a", a), ("operand b", b), ("the output", out)):
        v.array(what, x)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise v.fail(f"operands {list(a.shape)} and {list(b.shape)} do not broadcast") from None
    v.require(shape == out.shape, f"operands {list(a.shape)} and {list(b.shape)} broadcast to "
                                  f"{list(shape)}, the output is {list(out.shape)}")
    v.probe(lambda a, b, out: _np_binary(op, a, b, out, act, p0, p1), a, b, out)
    return _np_binary(op, a, b, out, act, p0, p1), ()


def _np_binary(op: str, a, b, out, act: int, p0: float, p1: float):
    integer = out.dtype.kind in "iub" and a.dtype.kind in "iub" and b.dtype.kind in "iub"
    ufunc = _UFUNCS[op]

    def compute():
        with np.errstate(all="ignore"):
            if op == "div" and integer:
                # ONNX integer division truncates toward zero: (a - fmod(a, b)) / b is exact
                np.fmod(a, b, out=out, casting="unsafe")
                np.subtract(a, out, out=out, casting="unsafe")
                np.floor_divide(out, b, out=out, casting="unsafe")
            elif op == "pow" and integer:
                try:
                    ufunc(a, b, out=out, casting="unsafe")
                except ValueError as exc:       # a negative integer exponent
                    raise EngineError(f"np_binary_pow: {exc}") from None
            else:
                ufunc(a, b, out=out, casting="unsafe")

    if act == Activation.NONE:
        return compute
    if out.dtype == F32:
        flat, size = out.reshape(-1), out.size
        code, p0, p1 = act, np.float32(p0), np.float32(p1)

        def run_f32():
            compute()
            kew.act_inplace(flat, 0, size, code, p0, p1)
        return run_f32
    lo, hi = (0, np.inf) if act == Activation.RELU else (p0, p1)
    lo, hi = _int_bounds(out.dtype, lo, hi)

    def run_clamped():
        compute()
        np.clip(out, lo, hi, out=out)
    return run_clamped
