"""fuse_instance_norm: the written-out instance norm of exporters -> one INSTANCE_NORM.

Pattern (x rank 4; S the spatial axes, (2, 3) for NCHW or (1, 2) for NHWC; C the other axis)::

    m   = REDUCE_MEAN(x, S, keepdims)
    d   = SUB(x, m)
    v   = REDUCE_MEAN(POW(d, 2) | MUL(d, d), S, keepdims)
    s   = SQRT(ADD(v, eps))                      # eps a scalar constant, either operand order
    n   = DIV(d, s) | MUL(d, RECIPROCAL(s)) | MUL(d, DIV(1, s))
    y   = ADD(MUL(n, scale), shift)              # scale and shift optional, constant or run time

Math: ``y = (x - mean) / sqrt(var + eps) * scale + shift`` with mean and (biased) variance over
H and W per image and channel, which is exactly ``INSTANCE_NORM(x, scale, shift, eps)``.

Rewrite (NCHW pattern): ``T(0,2,3,1) -> INSTANCE_NORM -> T(0,3,1,2)``, the last node writing
``y``'s name; scale and shift become ``[C]`` (or ``[N, C]`` when they vary per image) through a
RESHAPE (run time) or directly (constants); a missing scale is ones, a missing shift zeros.
The transposes cancel against the importer's wrappers in ``sink_transposes``.

Legality: every intermediate (m, d, the square, v, v + eps, s, 1/s, n, n * scale) is read only
inside the pattern and is not a graph output; scale/shift broadcast against x only along N and
C (size 1 on H and W; size 1 or C on C; 1 or N on N); a run-time scale/shift must have size C
on the channel axis (there is no broadcast op to expand it); x is float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes import _match
from mobile_engine.passes._match import Index, other_input, scalar_const

LAYOUTS = {(2, 3): 1, (1, 2): 3}          # spatial axes -> channel axis


@dataclass
class Match:
    x: str
    channel_axis: int
    eps: float
    scale: str | None
    shift: str | None
    nodes: list[Node]                      # every pattern node; the last writes ``out``
    out: str


def _spatial_axes(node: Node, rank: int) -> tuple[int, int] | None:
    axes = tuple(sorted(a % rank for a in node.attrs["axes"]))
    return axes if axes in LAYOUTS and node.attrs["keepdims"] else None


def _affine_ok(graph: Graph, tensor: str, x_shape, channel_axis: int) -> bool:
    """``tensor`` broadcasts against x only along N and C (and is runtime only if C-sized)."""
    t = graph.tensors[tensor]
    if len(t.shape) > 4:
        return False
    full = (1,) * (4 - len(t.shape)) + t.shape
    for axis, (d, xd) in enumerate(zip(full, x_shape)):
        if axis == 0 and d not in (1, xd):
            return False
        if axis == channel_axis and d not in (1, xd):
            return False
        if axis not in (0, channel_axis) and d != 1:
            return False
    return t.is_const or full[channel_axis] == x_shape[channel_axis] or x_shape[channel_axis] == 1


def match(graph: Graph, mean: Node, index: Index) -> Match | None:
    """The instance-norm pattern rooted at REDUCE_MEAN node ``mean``, or None."""
    if mean.op is not Op.REDUCE_MEAN:
        return None
    x = mean.inputs[0]
    xt = graph.tensors[x]
    if len(xt.shape) != 4 or xt.dtype is not DType.FLOAT32:
        return None
    axes = _spatial_axes(mean, 4)
    if axes is None:
        return None
    m = mean.outputs[0]
    sub = index.sole_user(m)
    if sub is None or sub.op is not Op.SUB or sub.inputs != [x, m]:
        return None
    d = sub.outputs[0]
    users = index.consumers(d)
    if len(users) != 2 or d in graph.outputs:
        return None
    square = next((u for u in users if (u.op is Op.POW and u.inputs[0] == d
                                        and scalar_const(graph, u.inputs[1]) == 2.0)
                   or (u.op is Op.MUL and u.inputs == [d, d])), None)
    if square is None:
        return None
    normalize = next(u for u in users if u is not square)
    var = index.sole_user(square.outputs[0])
    if var is None or var.op is not Op.REDUCE_MEAN or _spatial_axes(var, 4) != axes:
        return None
    add_eps = index.sole_user(var.outputs[0])
    if add_eps is None or add_eps.op is not Op.ADD:
        return None
    eps_name = other_input(add_eps, var.outputs[0])
    eps = None if eps_name is None else scalar_const(graph, eps_name)
    if eps is None or eps < 0 or \
            graph.tensors[add_eps.outputs[0]].shape != graph.tensors[var.outputs[0]].shape:
        return None
    sqrt = index.sole_user(add_eps.outputs[0])
    if sqrt is None or sqrt.op is not Op.SQRT:
        return None
    s = sqrt.outputs[0]
    nodes = [mean, sub, square, var, add_eps, sqrt]
    # n = d / s, d * reciprocal(s), d * (1 / s)
    if normalize.op is Op.DIV and normalize.inputs == [d, s]:
        if not index.private(s, [normalize]):
            return None
    else:
        inv = index.sole_user(s)
        if inv is None or normalize.op is not Op.MUL:
            return None
        if inv.op is Op.RECIPROCAL or (inv.op is Op.DIV and inv.inputs[1] == s
                                       and scalar_const(graph, inv.inputs[0]) == 1.0):
            if other_input(normalize, d) != inv.outputs[0] or \
                    not index.private(inv.outputs[0], [normalize]):
                return None
            nodes.append(inv)
        else:
            return None
    nodes.append(normalize)
    out = normalize.outputs[0]
    scale = shift = None
    channel_axis = LAYOUTS[axes]
    nxt = index.sole_user(out)
    if nxt is not None and nxt.op is Op.MUL and nxt.attrs.get("activation", 0) == 0:
        cand = other_input(nxt, out)
        if cand is not None and _affine_ok(graph, cand, xt.shape, channel_axis):
            scale, out = cand, nxt.outputs[0]
            nodes.append(nxt)
            nxt = index.sole_user(out)
    if nxt is not None and nxt.op is Op.ADD and nxt.attrs.get("activation", 0) == 0:
        cand = other_input(nxt, out)
        if cand is not None and _affine_ok(graph, cand, xt.shape, channel_axis):
            shift, out = cand, nxt.outputs[0]
            nodes.append(nxt)
    if any(n.attrs.get("activation", 0) for n in nodes):
        return None
    return Match(x, channel_axis, eps, scale, shift, nodes, out)


def _param(graph: Graph, tensor: str | None, x_shape, channel_axis: int, fill: float,
           name: str, new: list[Node]) -> str:
    """``tensor`` as a [C] or [N, C] INSTANCE_NORM parameter (RESHAPE appended to ``new``)."""
    n, c = x_shape[0], x_shape[channel_axis]
    if tensor is None:
        return graph.add_const(graph.fresh_name(name), np.full((c,), fill, np.float32))
    t = graph.tensors[tensor]
    full = (1,) * (4 - len(t.shape)) + t.shape
    per_image = full[0] != 1
    target = (n, c) if per_image else (c,)
    if t.is_const:
        data = np.asarray(t.data, np.float32).reshape(full)
        data = np.moveaxis(data, channel_axis, -1).reshape(full[0], full[channel_axis])
        data = np.broadcast_to(data, (full[0], c)).reshape(target)
        return graph.add_const(graph.fresh_name(name), np.ascontiguousarray(data))
    node = _match.make_node(graph, Op.RESHAPE, [tensor], name, shape=target)
    new.append(node)
    return node.outputs[0]


def rewrite(graph: Graph, m: Match) -> None:
    x_shape = graph.tensors[m.x].shape
    mean = m.nodes[0].name
    base = (mean.rsplit("/", 1)[0] if "/" in mean.strip("/") else mean) + "/instance_norm"
    new: list[Node] = []
    scale = _param(graph, m.scale, x_shape, m.channel_axis, 1.0, f"{base}_scale", new)
    shift = _param(graph, m.shift, x_shape, m.channel_axis, 0.0, f"{base}_shift", new)
    last = m.nodes[-1]
    if m.channel_axis == 3:
        new.append(_match.make_node(graph, Op.INSTANCE_NORM, [m.x, scale, shift], f"{base}_norm",
                                    output=m.out, epsilon=m.eps))
        _match.place(graph, new, last)
        _match.remove(graph, m.nodes, keep=[m.out])
    else:
        to_nhwc = _match.make_node(graph, Op.TRANSPOSE, [m.x], f"{base}_to_nhwc", perm=(0, 2, 3, 1))
        norm = _match.make_node(graph, Op.INSTANCE_NORM, [to_nhwc.outputs[0], scale, shift],
                                f"{base}_norm", epsilon=m.eps)
        # the last node keeps writing the pattern's output name (a graph output keeps its name)
        back = _match.make_node(graph, Op.TRANSPOSE, [norm.outputs[0]], f"{base}_to_nchw",
                                output=m.out, perm=(0, 3, 1, 2))
        new += [to_nhwc, norm, back]
        _match.place(graph, new, last)
        _match.remove(graph, m.nodes, keep=[m.out])


def run(graph: Graph) -> int:
    count = 0
    while True:
        index = Index(graph)
        found = next((m for n in graph.nodes if n.op is Op.REDUCE_MEAN
                      for m in [match(graph, n, index)] if m is not None), None)
        if found is None:
            return count
        rewrite(graph, found)
        count += 1
