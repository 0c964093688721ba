"""Bind-time checks: a step's params, weights and arena views against its kernel's contract.

The schema (``plan/schema.py``) proves a manifest well-formed: every tensor inside the arena,
every blob inside the file. It cannot know what a kernel will do with them, and Numba kernels
do no bounds checks: a plan whose manifest was edited (and re-checksummed) could hand a kernel
an index table, a stride or a shape that makes it read or write outside its arrays. So every
binder checks, once at Session creation and before any kernel runs, that its params are ints
(or numbers) in range, that arrays have the dtypes, ranks and sizes the kernel assumes, and that
every index a kernel will form (index tables, strided walks, broadcast plans) lands inside the
array it indexes. The checks are plain Python arithmetic and numpy min/max over small tables.

A failed check raises :class:`BindError`, a ``ValueError``: ``Session._bind`` turns it into a
``PlanFormatError`` naming the file, the step and the kernel; the message names the field.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

# NOTE: the schema's bound on one shape's element count; no valid param (a size, a stride, an
# offset) exceeds it, and keeping ints below it keeps every product of two of them in int64.
MAX_INT = 1 << 40


class BindError(ValueError):
    """A step whose params, weights or tensors do not fit its kernel."""


def fail(why: str) -> BindError:
    return BindError(why)


def require(ok: bool, why: str) -> None:
    if not ok:
        raise BindError(why)


# --- params ------------------------------------------------------------------------------------
def _get(params: dict, key: str):
    if not isinstance(params, dict) or key not in params:
        raise fail(f"params[{key!r}] is missing")
    return params[key]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(params: dict, key: str, lo: int = 0, hi: int = MAX_INT) -> int:
    """``params[key]`` as an int in ``[lo, hi]``."""
    v = _get(params, key)
    if not _is_int(v) or not lo <= v <= hi:
        raise fail(f"params[{key!r}]={v!r}: expected an integer in [{lo}, {hi}]")
    return v


def integers(params: dict, key: str, length: int | None = None, lo: int = 0,
             hi: int = MAX_INT, max_length: int = 8) -> list[int]:
    """``params[key]`` as a list of ints in ``[lo, hi]`` (of ``length`` items if given)."""
    v = _get(params, key)
    if not isinstance(v, list) or not all(_is_int(e) and lo <= e <= hi for e in v):
        raise fail(f"params[{key!r}]={v!r}: expected a list of integers in [{lo}, {hi}]")
    if (length is not None and len(v) != length) or len(v) > max_length:
        want = length if length is not None else f"at most {max_length}"
        raise fail(f"params[{key!r}]={v!r}: expected {want} values")
    return v


def number(params: dict, key: str) -> float:
    """``params[key]`` as a float (an int or a float in the JSON; inf and NaN allowed)."""
    v = _get(params, key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise fail(f"params[{key!r}]={v!r}: expected a number")
    return float(v)


def numbers(params: dict, key: str, length: int) -> list[float]:
    """``params[key]`` as a list of ``length`` numbers (ints or floats; inf and NaN allowed)."""
    v = _get(params, key)
    if not isinstance(v, list) or len(v) != length or \
            not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
        raise fail(f"params[{key!r}]={v!r}: expected a list of {length} numbers")
    return [float(e) for e in v]


def strings(params: dict, key: str, options: Iterable, max_length: int = 8) -> list[str]:
    """``params[key]`` as a list of distinct strings, each one of ``options``."""
    v = _get(params, key)
    options = tuple(options)
    if not isinstance(v, list) or len(v) > max_length or len(set(map(repr, v))) != len(v) or \
            not all(isinstance(e, str) and e in options for e in v):
        raise fail(f"params[{key!r}]={v!r}: expected distinct values of {list(options)}")
    return v


def flag(params: dict, key: str) -> bool:
    """``params[key]`` as a bool (JSON true/false, or 0/1)."""
    v = _get(params, key)
    if not isinstance(v, bool) and v not in (0, 1):
        raise fail(f"params[{key!r}]={v!r}: expected true or false")
    return bool(v)


def choice(params: dict, key: str, options: Iterable):
    """``params[key]``, which must be one of ``options``."""
    v = _get(params, key)
    options = tuple(options)
    if isinstance(v, (bool, list, dict)) or v not in options:
        raise fail(f"params[{key!r}]={v!r}: expected one of {list(options)}")
    return v


def activation(params: dict, key: str = "act") -> int:
    """``params[key]``, an activation code the kernels know (kernels/activation.py)."""
    from kernels.activation import CODES
    return choice(params, key, CODES)


# --- arrays ------------------------------------------------------------------------------------
def array(what: str, a, dtype=None, ndim: int | None = None, shape=None,
          size: int | None = None, contiguous: bool = False) -> np.ndarray:
    """``a`` after checking it is an ndarray of ``dtype`` (a dtype or a tuple of them), rank,
    shape and size (and C-contiguous when ``contiguous``); ``what`` names it in the message
    ("input 0", "weight 'y_index'")."""
    if not isinstance(a, np.ndarray):
        raise fail(f"{what} is a {type(a).__name__}, not an array")
    if contiguous and not a.flags.c_contiguous:
        raise fail(f"{what} {list(a.shape)} is not C-contiguous")
    if dtype is not None:
        dtypes = tuple(np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,)))
        if a.dtype not in dtypes:
            raise fail(f"{what} is {a.dtype.name} {list(a.shape)}; the kernel needs "
                       f"{' or '.join(d.name for d in dtypes)}")
    if ndim is not None and a.ndim != ndim:
        raise fail(f"{what} has shape {list(a.shape)}; the kernel needs rank {ndim}")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise fail(f"{what} has shape {list(a.shape)}; the kernel needs {list(shape)}")
    if size is not None and a.size != size:
        raise fail(f"{what} has {a.size} elements ({list(a.shape)}); the kernel needs {size}")
    return a


def table(what: str, t, lo: int, hi: int, shape=None, dtype=np.int64) -> np.ndarray:
    """An index table: ``dtype`` (int64 by default), ``shape`` if given, every value in
    ``[lo, hi)``."""
    array(what, t, dtype=dtype, shape=shape)
    if t.size:
        tmin, tmax = int(t.min()), int(t.max())
        if tmin < lo or tmax >= hi:
            raise fail(f"{what} holds indices {tmin}..{tmax}; they must lie in [{lo}, {hi})")
    return t


def same_dtype(what: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != b.dtype:
        raise fail(f"{what}: {a.dtype.name} {list(a.shape)} and {b.dtype.name} "
                   f"{list(b.shape)} differ in dtype")


def span(base: int, counts: Iterable[int], strides: Iterable[int]) -> tuple[int, int]:
    """(lowest, highest) of ``base + sum(i_k * strides_k)`` over ``0 <= i_k < counts_k``;
    every count must be >= 1."""
    lo = hi = base
    for c, s in zip(counts, strides):
        step = (c - 1) * s
        lo, hi = lo + min(step, 0), hi + max(step, 0)
    return lo, hi


def walk_inside(what: str, base: int, counts, strides, size: int, last: int = 1) -> None:
    """Check a strided walk (plus ``last`` contiguous elements at each position) stays in
    ``[0, size)``; nothing to check when a count is 0."""
    counts, strides = list(counts), list(strides)
    if len(counts) != len(strides):
        raise fail(f"{what}: {len(counts)} counts but {len(strides)} strides")
    if last <= 0 or any(c <= 0 for c in counts):
        return
    lo, hi = span(base, counts, strides)
    if lo < 0 or hi + last - 1 >= size:
        raise fail(f"{what} reads elements {lo}..{hi + last - 1} of an array of {size}")


def prod(values: Iterable[int]) -> int:
    """Exact product (Python ints: no int64 overflow)."""
    return math.prod(int(v) for v in values)


def operand(values: Iterator, what: str):
    """The next runtime operand, or a BindError when the step lists too few."""
    try:
        return next(values)
    except StopIteration:
        raise fail(f"{what} is missing: the step lists too few inputs") from None


def probe(make, *arrays: np.ndarray) -> None:
    """Run ``make(*stand_ins)()`` once on one-element arrays of the same dtypes and ranks, so a
    numpy op with no loop for these dtypes (or a bad axis) fails now, not in ``Session.run``.
    Shapes must have been checked already (size-1 stand-ins broadcast with anything)."""
    stand_ins = [np.ones((1,) * a.ndim, a.dtype) for a in arrays]
    try:
        with np.errstate(all="ignore"):
            make(*stand_ins)()
    except (TypeError, ValueError, IndexError, np.exceptions.AxisError) as exc:
        raise fail(f"numpy cannot run it on {', '.join(a.dtype.name for a in arrays)}: "
                   f"{exc}") from None
