"""Layout binders: copies, pads, concat, strided copies and transposes, gather, cast (no math;
byte lanes of 4 or 1).
"""
from __future__ import annotations

import numpy as np

from kernels import f32_layout as k
from kernels import table
from kernels.config import use_parallel
from mobile_engine.errors import EngineError
from mobile_engine.runtime import validate as v
from mobile_engine.runtime.binders.registry import binds


def operands(params: dict, weights: dict, inputs: list) -> list:
    """The node's operands in order: runtime arrays and constant weights interleaved."""
    it = iter(inputs)
    n = v.integer(params, "n_inputs", 1, len(inputs) + len(weights))
    return [weights[f"in{i}"] if f"in{i}" in weights else v.operand(it, f"operand {i}")
            for i in range(n)]


def _lane(params: dict) -> int:
    return v.choice(params, "lane", k.LANES)


def _lanes_of(what: str, nbytes: int, lane: int) -> int:
    """``nbytes`` as a whole number of ``lane``-byte lanes."""
    v.require(nbytes % lane == 0, f"{what}: {nbytes} bytes is not a whole number of "
                                  f"{lane}-byte lanes")
    return nbytes // lane


def _same_items(x: np.ndarray, out: np.ndarray, lane: int | None = None) -> None:
    """x and out of one dtype (the kernels move the same lanes on both sides); with ``lane``,
    lanes of exactly one element (kernels that index whole elements)."""
    v.same_dtype("input and output", x, out)
    if lane is not None:
        v.require(out.dtype.itemsize == lane, f"params['lane']={lane} but the tensors are "
                                              f"{out.dtype.name}")


def noop() -> None:
    """The call of a step whose output is empty."""


def pick(serial, parallel, work: int, tasks: int, threads: int | None):
    """``parallel`` when ``use_parallel(work, tasks, threads)`` (the session's threads, the
    step's work and tasks), else ``serial``."""
    return parallel if use_parallel(work, tasks, threads) else serial


@binds("copy_bytes")
def bind_copy(params, weights, inputs, outputs, threads=None):
    (x, *_), out = operands(params, weights, inputs), outputs[0]
    if x.nbytes != out.nbytes:
        raise ValueError(f"copy_bytes: input {x.shape} {x.dtype} and output {out.shape} "
                         f"{out.dtype} differ in size")
    if out.size == 0:
        return noop, ()
    lane = k.lane_bytes(out.nbytes)
    x1 = x.reshape(-1).view(np.uint8).view(k.LANES[lane])
    o1 = out.reshape(-1).view(np.uint8).view(k.LANES[lane])
    return pick(k.copy_serial, k.copy_parallel, out.size, o1.size // k.COPY_CHUNK,
                threads), (x1, o1)


@binds(*table.ids("{lane_tag}_pad_nd"))
def bind_pad(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    lane = _lane(params)
    (ri, wi, b), (ro, wo, bo) = v.integers(params, "in_view", 3), v.integers(params, "out_view", 3)
    lo, hi, src = v.integers(params, "run", 3)
    value = v.number(params, "value")
    _same_items(x, out)
    v.require(b == bo, f"params: in_view block {b} and out_view block {bo} differ")
    v.require(ri * wi * b == x.size and ro * wo * b == out.size,
              f"views {[ri, wi, b]} -> {[ro, wo, b]} do not fit input {list(x.shape)} and "
              f"output {list(out.shape)}")
    bl = _lanes_of("a pad block", b * out.dtype.itemsize, lane)
    row_src = v.table("weight 'row_src'", weights["row_src"], -1, ri, shape=(ro,))
    col_src = v.table("weight 'col_src'", weights["col_src"], -1, wi, shape=(wo,))
    v.require(lo <= hi <= wo and src + (hi - lo) <= wi,
              f"params['run']={[lo, hi, src]}: columns {lo}..{hi} from {src} do not fit "
              f"{wi} -> {wo} blocks")
    if out.size == 0:
        return noop, ()
    x2 = k.as_lanes(x, (ri, wi * b), lane)
    o2 = k.as_lanes(out, (ro, wo * b), lane)
    fill = k.fill_block(value, out.dtype, b, lane)
    fn = pick(k.pad_serial, k.pad_parallel, out.size, ro, threads)
    return fn, (x2, o2, bl, row_src, col_src, fill, lo, hi, src)


def concat_all(kernel, parts, out2) -> None:
    """Run ``kernel`` once per (part, lane offset) into ``out2``."""
    for x2, offset in parts:
        kernel(x2, out2, offset)


@binds(*table.ids("{lane_tag}_concat"))
def bind_concat(params, weights, inputs, outputs, threads=None):
    out, lane, outer = outputs[0], _lane(params), v.integer(params, "outer")
    xs = operands(params, weights, inputs)
    inners = v.integers(params, "inners", len(xs), max_length=len(xs))
    v.array("the output", out)
    for i, x in enumerate(xs):
        v.same_dtype(f"operand {i} and the output", x, out)
        v.require(x.size == outer * inners[i], f"operand {i} {list(x.shape)} is not "
                                               f"[{outer}, {inners[i]}]")
    v.require(out.size == outer * sum(inners), f"the output {list(out.shape)} is not "
                                               f"[{outer}, {sum(inners)}]")
    if out.size == 0:
        return noop, ()
    isz = out.dtype.itemsize
    o2 = k.as_lanes(out, (outer, sum(inners)), lane)
    parts, offset = [], 0
    for x, inner in zip(xs, inners):
        width = _lanes_of(f"a concat part of {inner} items", inner * isz, lane)
        if inner:
            parts.append((k.as_lanes(x, (outer, inner), lane), offset))
        offset += width
    fn = pick(k.concat_serial, k.concat_parallel, out.size, outer, threads)
    return concat_all, (fn, tuple(parts), o2)


@binds(*table.ids("{lane_tag}_copy_strided_nd"))
def bind_strided(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    lane = _lane(params)
    counts = v.integers(params, "counts", max_length=k.MAX_RANK)
    strides = v.integers(params, "strides", len(counts), lo=-v.MAX_INT, max_length=k.MAX_RANK)
    base, block = v.integer(params, "base"), v.integer(params, "block")
    _same_items(x, out)
    v.require(v.prod(counts) * block == out.size,
              f"params: counts {counts} x block {block} do not cover the output "
              f"{list(out.shape)}")
    if out.size == 0:
        return noop, ()
    isz = out.dtype.itemsize
    strides = [_lanes_of(f"params['strides'] {strides}", s * isz, lane) for s in strides]
    base = _lanes_of(f"params['base']={base}", base * isz, lane)
    bl = _lanes_of(f"params['block']={block}", block * isz, lane)
    x1 = x.reshape(-1).view(np.uint8).view(k.LANES[lane])
    o1 = out.reshape(-1).view(np.uint8).view(k.LANES[lane])
    v.walk_inside(f"the input (base {base}, counts {counts}, strides {strides} lanes)", base,
                  counts, strides, x1.size, last=bl)
    pad = k.MAX_RANK - len(counts)
    counts = np.array([1] * pad + counts, np.int64)
    strides = np.array([0] * pad + strides, np.int64)
    rows = int(np.prod(counts[:-1]))
    fn = pick(k.strided_serial, k.strided_parallel, out.size, rows, threads)
    return fn, (x1, o1, counts, strides, base, bl)


def _transpose_views(params, x, out):
    """(nb, r, s) of a batched 2-D transpose after checking it fits x and out element by
    element (lanes of one element each)."""
    nb, r, s = v.integers(params, "view", 3)
    _same_items(x, out, _lane(params))
    v.require(nb * r * s == x.size == out.size, f"params['view']={[nb, r, s]} does not fit "
                                                f"input {list(x.shape)} and output "
                                                f"{list(out.shape)}")
    return nb, r, s


@binds(*table.ids("{lane_tag}_transpose_b2d_tiled"))
def bind_tiled(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    nb, r, s = _transpose_views(params, x, out)
    if out.size == 0:
        return noop, ()
    lane = k.LANES[params["lane"]]
    x3, o3 = x.reshape(nb, r, s).view(lane), out.reshape(nb, s, r).view(lane)
    fn = pick(k.tiled_serial, k.tiled_parallel, out.size, nb * ((s + k.TILE - 1) // k.TILE),
              threads)
    return fn, (x3, o3)


@binds(*table.ids("{lane_tag}_transpose_nchw_to_nhwc"),
       *table.ids("{lane_tag}_transpose_nhwc_to_nchw"))
def bind_small_transpose(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    nb, r, s = _transpose_views(params, x, out)
    if out.size == 0:
        return noop, ()
    lane = k.LANES[params["lane"]]
    x3, o3 = x.reshape(nb, r, s).view(lane), out.reshape(nb, s, r).view(lane)
    interleave = r <= k.SMALL_MAX
    pixels = s if interleave else r
    parallel = use_parallel(out.size, nb * ((pixels + k.SMALL_CHUNK - 1) // k.SMALL_CHUNK),
                            threads)
    return k.small_transpose(r if interleave else s, interleave, parallel), (x3, o3)


# --- GATHER -----------------------------------------------------------------------------------
class GatherIndexError(EngineError, IndexError):
    """A run-time gather index outside its axis (an EngineError that is still an IndexError)."""


@binds(*table.ids("{lane_tag}_gather"))
def bind_gather(params, weights, inputs, outputs, threads=None):
    xs = operands(params, weights, inputs)
    v.require(len(xs) == 2, f"params['n_inputs']={len(xs)}: gather takes data and indices")
    x, idx = xs
    out = outputs[0]
    outer, d, inner = (v.integer(params, key) for key in ("outer", "axis_size", "inner"))
    lane = _lane(params)
    _same_items(x, out)
    v.array("the indices", idx, (np.int8, np.uint8, np.int32, np.int64))
    v.require(x.size == outer * d * inner and out.size == outer * idx.size * inner,
              f"params [{outer}, {d}, {inner}] do not fit input {list(x.shape)}, "
              f"{idx.size} indices and output {list(out.shape)}")
    _lanes_of(f"a gathered row of {inner} items", inner * out.dtype.itemsize, lane)
    constant = "in1" in weights
    if constant:
        v.table("the constant indices", idx, -d, d, dtype=idx.dtype)
    if out.size == 0:
        return noop, ()
    idx1 = idx.reshape(-1)
    x3 = k.as_lanes(x, (outer, d, inner), lane)
    o3 = k.as_lanes(out, (outer, idx1.size, inner), lane)
    fn = pick(k.gather_serial, k.gather_parallel, out.size, outer * idx1.size, threads)
    if constant:
        return fn, (x3, o3, idx1)

    def run():
        try:
            fn(x3, o3, idx1)
        except IndexError:
            raise GatherIndexError(f"gather: an index in {idx1.tolist()[:16]} is out of range for "
                              f"an axis of {d}") from None
    return run, ()


def np_cast(out: np.ndarray, x: np.ndarray) -> None:
    """out[...] = x converted as numpy's ``astype`` does (C casts, float -> int truncates)."""
    np.copyto(out, x, casting="unsafe")


@binds("np_cast")
def bind_cast(params, weights, inputs, outputs, threads=None):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    if x.shape != out.shape:
        raise ValueError(f"np_cast: input {x.shape} and output {out.shape} differ")
    return np_cast, (out, x)
