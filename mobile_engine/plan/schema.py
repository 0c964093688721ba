"""The manifest schema, checked field by field before any kernel is bound.

A manifest that passes ``validate`` has: known dtypes, non-negative shapes whose byte sizes match,
every arena tensor inside the arena, every blob inside the blobs section and 64-byte aligned, every
step naming a known kernel and known tensors and blobs. Errors name the file and the field.
"""
from __future__ import annotations

import math
from typing import Any

from mobile_engine.errors import PlanFormatError

DTYPES = {"float32": 4, "int64": 8, "int32": 4, "uint8": 1, "int8": 1, "bool": 1}
# NOTE: refuse any single shape past 2**40 elements before multiplying anything into memory sizes.
MAX_ELEMENTS = 1 << 40


class _Checker:
    def __init__(self, path) -> None:
        self.path = path

    def fail(self, where: str, why: str) -> PlanFormatError:
        return PlanFormatError(f"{self.path}: manifest {where}: {why}")

    def get(self, obj: dict, key: str, kind, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(where, f"missing field {key!r}")
        value = obj[key]
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise self.fail(f"{where}.{key}", f"expected an integer, got {type(value).__name__}")
        if kind is not int and not isinstance(value, kind):
            raise self.fail(f"{where}.{key}", f"expected {kind}, got {type(value).__name__}")
        return value

    def shape(self, obj: dict, where: str) -> tuple[int, ...]:
        shape = self.get(obj, "shape", list, where)
        if not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < MAX_ELEMENTS
                   for d in shape) or len(shape) > 8:
            raise self.fail(f"{where}.shape", f"invalid shape {shape!r}")
        if math.prod(shape) > MAX_ELEMENTS:
            raise self.fail(f"{where}.shape", f"shape {shape} is too large")
        return tuple(shape)

    def dtype(self, obj: dict, where: str) -> str:
        dtype = self.get(obj, "dtype", str, where)
        if dtype not in DTYPES:
            raise self.fail(f"{where}.dtype", f"unknown dtype {dtype!r}")
        return dtype


def validate(manifest: dict, blobs_len: int, path) -> None:
    c = _Checker(path)
    arena = c.get(manifest, "arena_bytes", int, "")
    if arena < 0:
        raise c.fail("arena_bytes", "negative")
    blobs = c.get(manifest, "blobs", list, "")
    for i, b in enumerate(blobs):
        where = f"blobs[{i}]"
        off, n = c.get(b, "offset", int, where), c.get(b, "nbytes", int, where)
        shape, dtype = c.shape(b, where), c.dtype(b, where)
        if off < 0 or off % 64 or n < 0 or off + n > blobs_len:
            raise c.fail(where, f"bytes {off}..{off + n} outside the blobs section "
                                f"({blobs_len} bytes) or misaligned")
        if math.prod(shape) * DTYPES[dtype] != n:
            raise c.fail(where, f"shape {list(shape)} {dtype} does not match {n} bytes")
    tensors = c.get(manifest, "tensors", dict, "")
    for name, t in tensors.items():
        where = f"tensors[{name!r}]"
        off, n = c.get(t, "offset", int, where), c.get(t, "nbytes", int, where)
        shape, dtype = c.shape(t, where), c.dtype(t, where)
        if math.prod(shape) * DTYPES[dtype] != n:
            raise c.fail(where, f"shape {list(shape)} {dtype} does not match {n} bytes")
        if off < 0 or off % 64 or off + n > arena:
            raise c.fail(where, f"bytes {off}..{off + n} outside the arena ({arena} bytes)")
    for key in ("inputs", "outputs"):
        for i, io in enumerate(c.get(manifest, key, list, "")):
            where = f"{key}[{i}]"
            name = c.get(io, "name", str, where)
            c.shape(io, where)
            c.dtype(io, where)
            if "blob" in io:
                if not isinstance(io["blob"], int) or not 0 <= io["blob"] < len(blobs):
                    raise c.fail(where, f"blob index {io['blob']!r} out of range")
            elif name not in tensors:
                raise c.fail(where, f"{name!r} is not an arena tensor")
            elif tuple(io["shape"]) != tuple(tensors[name]["shape"]) \
                    or io["dtype"] != tensors[name]["dtype"]:
                raise c.fail(where, f"{name!r} disagrees with its arena tensor")
    for i, s in enumerate(c.get(manifest, "steps", list, "")):
        where = f"steps[{i}]"
        c.get(s, "kernel", str, where)       # known to this engine: checked when a Session binds
        for key in ("inputs", "outputs", "scratch"):
            for name in (c.get(s, key, list, where) if key != "scratch" or key in s else []):
                if not isinstance(name, str) or name not in tensors:
                    raise c.fail(f"{where}.{key}", f"unknown tensor {name!r}")
        for key, index in c.get(s, "weights", dict, where).items():
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(blobs):
                raise c.fail(f"{where}.weights[{key!r}]", f"blob index {index!r} out of range")
        c.get(s, "params", dict, where)
    if "target" in manifest:
        _target(c, manifest["target"], len(manifest["steps"]))


def _target(c: _Checker, record, steps: int) -> None:
    """The ``target`` record (``mobile_engine/targets.py``): what the plan was compiled for and
    the tile each step runs as there (None: no register tile)."""
    for key in ("name", "arch", "cpu", "int8_dot"):
        c.get(record, key, str, "target")
    if not all(isinstance(f, str) for f in c.get(record, "features", list, "target")):
        raise c.fail("target.features", "expected a list of strings")
    vector = c.get(record, "vector", list, "target")
    if len(vector) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                   for v in vector):
        raise c.fail("target.vector", f"expected [lanes, registers], got {vector!r}")
    tiles = c.get(record, "tiles", list, "target")
    if len(tiles) != steps or not all(t is None or isinstance(t, str) for t in tiles):
        raise c.fail("target.tiles", f"expected one tile (a string or null) per step ({steps})")
