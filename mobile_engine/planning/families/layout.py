"""Data movement: PAD, CONCAT, TRANSPOSE, SLICE, GATHER, CAST, RESHAPE (copy fallback).

Lowerings decide everything from static shapes (views, lane width, index tables, strided plans;
see ``kernels/f32_layout.py``); binders check every table, stride and view against the arrays
(``runtime/validate.py``), then only reshape arena views and pick the serial or parallel
variant. Kernels move raw lanes, so every IR dtype is served (ids ``x32_*`` / ``x8_*``).

A constant operand becomes weight ``in<i>`` (``planning.step.runtime_inputs``) and binders put
it back in its place with :func:`operands`; steps record ``n_inputs`` for that.
"""
from __future__ import annotations

import math

import numpy as np

from kernels import f32_layout as k
from mobile_engine.errors import ShapeError, UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.ir.shapes import normalize_axes, slice_index
from mobile_engine.planning.step import Step, lowers, runtime_inputs


# --- shared helpers (pool and resize families use them too) ---------------------------------
def split_inputs(node: Node, graph: Graph) -> tuple[list[str], dict[str, np.ndarray], dict]:
    """Runtime input names, constant weights ``in<i>``, and the params binders need to rebuild
    the node's operand list."""
    names, consts = runtime_inputs(node, graph)
    return names, consts, {"n_inputs": len(node.inputs)}


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


# --- CAST -------------------------------------------------------------------------------------
@lowers(Op.CAST)
def lower_cast(node: Node, graph: Graph) -> list[Step]:
    x, out = _tensor(graph, node.inputs[0]), _tensor(graph, node.outputs[0])
    if x.dtype is out.dtype:
        return _copy_step(node, graph)
    names, consts, params = split_inputs(node, graph)
    return [Step(node.name, "np_cast", names, list(node.outputs), params, consts)]
