"""Data movement: PAD, CONCAT, TRANSPOSE, SLICE, GATHER, CAST, RESHAPE (copy fallback).

Lowerings decide everything from static shapes (views, lane width, index tables, strided plans;
see ``kernels/f32_layout.py``); binders check every table, stride and view against the arrays
(``planning/validate.py``), then only reshape arena views and pick the serial or parallel
variant. Kernels move raw lanes, so every IR dtype is served (ids ``x32_*`` / ``x8_*``).

A constant operand becomes weight ``in<i>`` (``planning.step.runtime_inputs``) and binders put
it back in its place with :func:`operands`; steps record ``n_inputs`` for that.
"""
from __future__ import annotations

import math

import numpy as np

from kernels import f32_layout as k
from kernels.config import PARALLEL_MIN_WORK
from mobile_engine.errors import EngineError, ShapeError, UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.ir.shapes import normalize_axes, slice_index
from mobile_engine.planning import validate as v
from mobile_engine.planning.step import Step, binds, lowers, runtime_inputs


# --- shared helpers (pool and resize families use them too) ---------------------------------
def split_inputs(node: Node, graph: Graph) -> tuple[list[str], dict[str, np.ndarray], dict]:
    """Runtime input names, constant weights ``in<i>``, and the params binders need to rebuild
    the node's operand list."""
    names, consts = runtime_inputs(node, graph)
    return names, consts, {"n_inputs": len(node.inputs)}


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


def pick(serial, parallel, work: int, tasks: int = 2):
    """The parallel variant when the work pays for a parallel launch and splits into tasks."""
    return parallel if work >= PARALLEL_MIN_WORK and tasks >= 2 else serial


def _tensor(graph: Graph, name: str):
    return graph.tensors[name]


def _copy_step(node: Node, graph: Graph) -> list[Step]:
    names, consts, params = split_inputs(node, graph)
    return [Step(node.name, "copy_bytes", names, list(node.outputs), params, consts)]


# --- copy_bytes / RESHAPE -------------------------------------------------------------------
@lowers(Op.RESHAPE)
def lower_reshape(node: Node, graph: Graph) -> list[Step]:
    """Planning aliases RESHAPE (a view); this copy only runs when aliasing is impossible
    (a constant input, or an integrator that needs a distinct buffer)."""
    return _copy_step(node, graph)


@binds("copy_bytes")
def bind_copy(params, weights, inputs, outputs):
    (x, *_), out = operands(params, weights, inputs), outputs[0]
    if x.nbytes != out.nbytes:
        raise ValueError(f"copy_bytes: input {x.shape} {x.dtype} and output {out.shape} "
                         f"{out.dtype} differ in size")
    if out.size == 0:
        return noop, ()
    lane = k.lane_bytes(out.nbytes)
    x1 = x.reshape(-1).view(np.uint8).view(k.LANES[lane])
    o1 = out.reshape(-1).view(np.uint8).view(k.LANES[lane])
    return pick(k.copy_serial, k.copy_parallel, out.size, o1.size // k.COPY_CHUNK), (x1, o1)


# --- PAD --------------------------------------------------------------------------------------
@lowers(Op.PAD)
def lower_pad(node: Node, graph: Graph) -> list[Step]:
    x = _tensor(graph, node.inputs[0])
    a = node.attrs
    try:
        plan = k.pad_plan(x.shape, a["pads"], a["mode"])
    except ValueError as exc:
        raise UnsupportedOperatorError(f"node {node.name!r} (PAD, input {x.shape}): {exc}") \
            from None
    if plan is None:
        return _copy_step(node, graph)
    names, consts, params = split_inputs(node, graph)
    lane = k.lane_bytes(plan.in_view[2] * x.dtype.itemsize)
    params.update(in_view=list(plan.in_view), out_view=list(plan.out_view), run=list(plan.run),
                  value=float(a["value"]), lane=lane)
    weights = {**consts, "row_src": plan.row_src, "col_src": plan.col_src}
    return [Step(node.name, f"{k.LANE_PREFIX[lane]}_pad_nd", names, list(node.outputs), params,
                 weights)]


@binds("x32_pad_nd", "x8_pad_nd")
def bind_pad(params, weights, inputs, outputs):
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
    fn = pick(k.pad_serial, k.pad_parallel, out.size, ro)
    return fn, (x2, o2, bl, row_src, col_src, fill, lo, hi, src)


# --- CONCAT -----------------------------------------------------------------------------------
@lowers(Op.CONCAT)
def lower_concat(node: Node, graph: Graph) -> list[Step]:
    out = _tensor(graph, node.outputs[0])
    (axis,) = normalize_axes(node, [node.attrs["axis"]], len(out.shape))
    parts = [_tensor(graph, n) for n in node.inputs]
    isz = out.dtype.itemsize
    outer = math.prod(out.shape[:axis])
    inners = [math.prod(t.shape[axis:]) for t in parts]
    lane = k.lane_bytes(*(i * isz for i in inners))
    names, consts, params = split_inputs(node, graph)
    params.update(outer=outer, inners=inners, lane=lane)
    return [Step(node.name, f"{k.LANE_PREFIX[lane]}_concat", names, list(node.outputs), params,
                 consts)]


def concat_all(kernel, parts, out2) -> None:
    """Run ``kernel`` once per (part, lane offset) into ``out2``."""
    for x2, offset in parts:
        kernel(x2, out2, offset)


@binds("x32_concat", "x8_concat")
def bind_concat(params, weights, inputs, outputs):
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
    fn = pick(k.concat_serial, k.concat_parallel, out.size, outer)
    return concat_all, (fn, tuple(parts), o2)


# --- TRANSPOSE and SLICE (strided copies) -----------------------------------------------------
def _strided_step(node: Node, graph: Graph, plan: k.StridedPlan, isz: int,
                  tiled_ok: bool) -> list[Step]:
    names, consts, params = split_inputs(node, graph)
    bt = k.batched_transpose(plan) if tiled_ok else None
    if bt is not None and isz in k.LANES:
        params.update(view=list(bt), lane=isz)
        nb, r, s = bt
        if r <= k.SMALL_MAX:                         # [nb, C, HW] -> [nb, HW, C]
            kernel = f"{k.LANE_PREFIX[isz]}_transpose_nchw_to_nhwc"
        elif s <= k.SMALL_MAX:                       # [nb, HW, C] -> [nb, C, HW]
            kernel = f"{k.LANE_PREFIX[isz]}_transpose_nhwc_to_nchw"
        else:
            kernel = f"{k.LANE_PREFIX[isz]}_transpose_b2d_tiled"
    else:
        lane = k.lane_bytes(plan.block * isz, plan.base * isz, *(s * isz for s in plan.strides))
        params.update(counts=plan.counts, strides=plan.strides, base=plan.base, block=plan.block,
                      lane=lane)
        kernel = f"{k.LANE_PREFIX[lane]}_copy_strided_nd"
    return [Step(node.name, kernel, names, list(node.outputs), params, consts)]


@lowers(Op.TRANSPOSE)
def lower_transpose(node: Node, graph: Graph) -> list[Step]:
    x = _tensor(graph, node.inputs[0])
    perm = list(node.attrs["perm"])
    if len(perm) > k.MAX_RANK:
        raise UnsupportedOperatorError(f"node {node.name!r} (TRANSPOSE): rank {len(perm)} > "
                                       f"{k.MAX_RANK}")
    plan = k.transpose_plan(x.shape, perm)
    if not plan.counts:
        return _copy_step(node, graph)                 # identity once size-1 axes are dropped
    return _strided_step(node, graph, plan, x.dtype.itemsize, tiled_ok=True)


@lowers(Op.SLICE)
def lower_slice(node: Node, graph: Graph) -> list[Step]:
    x = _tensor(graph, node.inputs[0])
    plan = k.slice_plan(x.shape, slice_index(node, x.shape))
    if not plan.counts and plan.base == 0 and plan.block == math.prod(x.shape):
        return _copy_step(node, graph)
    try:
        return _strided_step(node, graph, plan, x.dtype.itemsize, tiled_ok=False)
    except ValueError as exc:
        raise UnsupportedOperatorError(f"node {node.name!r} (SLICE, input {x.shape}): {exc}") \
            from None


@binds("x32_copy_strided_nd", "x8_copy_strided_nd")
def bind_strided(params, weights, inputs, outputs):
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
    fn = pick(k.strided_serial, k.strided_parallel, out.size, rows)
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


@binds("x32_transpose_b2d_tiled", "x8_transpose_b2d_tiled")
def bind_tiled(params, weights, inputs, outputs):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    nb, r, s = _transpose_views(params, x, out)
    if out.size == 0:
        return noop, ()
    lane = k.LANES[params["lane"]]
    x3, o3 = x.reshape(nb, r, s).view(lane), out.reshape(nb, s, r).view(lane)
    fn = pick(k.tiled_serial, k.tiled_parallel, out.size, nb * ((s + k.TILE - 1) // k.TILE))
    return fn, (x3, o3)


@binds("x32_transpose_nchw_to_nhwc", "x8_transpose_nchw_to_nhwc", "x32_transpose_nhwc_to_nchw",
       "x8_transpose_nhwc_to_nchw")
def bind_small_transpose(params, weights, inputs, outputs):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    nb, r, s = _transpose_views(params, x, out)
    if out.size == 0:
        return noop, ()
    lane = k.LANES[params["lane"]]
    x3, o3 = x.reshape(nb, r, s).view(lane), out.reshape(nb, s, r).view(lane)
    interleave = r <= k.SMALL_MAX
    pixels = s if interleave else r
    parallel = pick(False, True, out.size, nb * ((pixels + k.SMALL_CHUNK - 1) // k.SMALL_CHUNK))
    return k.small_transpose(r if interleave else s, interleave, parallel), (x3, o3)


# --- GATHER -----------------------------------------------------------------------------------
class GatherIndexError(EngineError, IndexError):
    """A run-time gather index outside its axis (an EngineError that is still an IndexError)."""


@lowers(Op.GATHER)
def lower_gather(node: Node, graph: Graph) -> list[Step]:
    x, idx = _tensor(graph, node.inputs[0]), _tensor(graph, node.inputs[1])
    (axis,) = normalize_axes(node, [node.attrs["axis"]], len(x.shape))
    d = x.shape[axis]
    names, consts, params = split_inputs(node, graph)
    if "in1" in consts:                              # constant indices: checked and normalised
        ind = consts["in1"].astype(np.int64).reshape(-1)
        bad = ind[(ind < -d) | (ind >= d)]
        if bad.size:
            raise ShapeError(f"node {node.name!r} (GATHER): index {int(bad[0])} out of range "
                             f"for axis {axis} of size {d} (input {x.shape})")
        consts["in1"] = np.ascontiguousarray(np.where(ind < 0, ind + d, ind))
    elif idx.dtype.np.kind not in "iu":
        raise UnsupportedOperatorError(f"node {node.name!r} (GATHER): indices of dtype "
                                       f"{idx.dtype.value}; expected an integer type")
    inner = math.prod(x.shape[axis + 1:])
    lane = k.lane_bytes(inner * x.dtype.itemsize)
    params.update(outer=math.prod(x.shape[:axis]), axis_size=d, inner=inner, lane=lane)
    return [Step(node.name, f"{k.LANE_PREFIX[lane]}_gather", names, list(node.outputs), params,
                 consts)]


@binds("x32_gather", "x8_gather")
def bind_gather(params, weights, inputs, outputs):
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
    fn = pick(k.gather_serial, k.gather_parallel, out.size, outer * idx1.size)
    if constant:
        return fn, (x3, o3, idx1)

    def run():
        try:
            fn(x3, o3, idx1)
        except IndexError:
            raise GatherIndexError(f"gather: an index in {idx1.tolist()[:16]} is out of range for "
                              f"an axis of {d}") from None
    return run, ()


# --- CAST -------------------------------------------------------------------------------------
@lowers(Op.CAST)
def lower_cast(node: Node, graph: Graph) -> list[Step]:
    x, out = _tensor(graph, node.inputs[0]), _tensor(graph, node.outputs[0])
    if x.dtype is out.dtype:
        return _copy_step(node, graph)
    names, consts, params = split_inputs(node, graph)
    return [Step(node.name, "np_cast", names, list(node.outputs), params, consts)]


def np_cast(out: np.ndarray, x: np.ndarray) -> None:
    """out[...] = x converted as numpy's ``astype`` does (C casts, float -> int truncates)."""
    np.copyto(out, x, casting="unsafe")


@binds("np_cast")
def bind_cast(params, weights, inputs, outputs):
    x, out = operands(params, weights, inputs)[0], outputs[0]
    if x.shape != out.shape:
        raise ValueError(f"np_cast: input {x.shape} and output {out.shape} differ")
    return np_cast, (out, x)
