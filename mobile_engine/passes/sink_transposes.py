"""sink_transposes: the layout pass; moves TRANSPOSEs through layout-agnostic ops until they cancel.

The importer wraps every NHWC spatial op as ``T(0,2,3,1) -> op -> T(0,3,1,2)`` and leaves the rest
of the graph in NCHW. This pass makes the NHWC region contiguous, leaving transposes only where
the model's NCHW contract needs them (after graph inputs, before graph outputs).

Math (``T_p(x)`` is ``np.transpose(x, p)``; axis k of ``T_p(x)`` is axis ``p[k]`` of x):

* compose: ``T_q(T_p(x)) = T_r(x)`` with ``r[k] = p[q[k]]``; an identity ``r`` removes the node.
* push down: ``f(T_p(x)) = T_p(f'(x))`` for a layout-agnostic f, with f' = f on remapped axes:
  elementwise unary/binary/PRELU/CAST and per-tensor QUANTIZE/DEQUANTIZE (their quant
  params do not depend on the layout: a moved tensor keeps them) need no remapping;
  REDUCE_* axes ``a -> p[a]``
  (without keepdims the trailing transpose becomes the permutation of the kept axes);
  SOFTMAX/CONCAT axis ``a -> p[a]``; SLICE axes ``a -> p[a]``; PAD ``pads'[p[k]] = pads[k]``.
  Other operands of f must be the same ``T_p`` of something, or constants (given full rank by
  prepending 1s, then stored as ``T_{p^-1}(c)``; single-element constants stay), or small run-time
  tensors: one with at most one non-unit axis gets a RESHAPE (a transpose of it is a relabeling),
  a small one (< the output, <= SMALL elements) gets ``T_{p^-1}``.
* hoist (second phase): ``T_q(f(x)) = f''(T_q(x))`` for a single-input agnostic f, done only
  when the chain of such ops above leads to a graph input or another transpose (so the
  transpose ends next to the input's NCHW boundary, or cancels), never just to move it around.

Legality: a transpose is pushed into its consumers only when it has one consumer or all its
consumers are agnostic ops (so it does not end up duplicated); graph input and output tensors
keep their names, shapes and layouts (a pushed-down transpose writes the original output).
Termination: pushing moves a transpose strictly later, hoisting strictly earlier, and a
transposed small run-time operand is never pushed again (its operand is smaller than the output).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir import shapes
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import BINARY, ELEMENTWISE, QUANT_OPS, REDUCE, Op
from mobile_engine.passes import _match
from mobile_engine.passes._match import Index, invert_perm, is_identity_perm

AGNOSTIC = ELEMENTWISE | REDUCE | QUANT_OPS | {Op.CAST, Op.CONCAT, Op.SOFTMAX, Op.SLICE, Op.PAD}
HOISTABLE = ELEMENTWISE | REDUCE | QUANT_OPS | {Op.CAST, Op.SOFTMAX, Op.SLICE, Op.PAD}
# NOTE: a run-time operand this small gets its own (cheap) TRANSPOSE so a full-size one can pass.
SMALL = 4096


def _perm(node: Node) -> tuple[int, ...]:
    return tuple(node.attrs["perm"])


def _full_rank(data: np.ndarray, rank: int) -> np.ndarray:
    return data.reshape((1,) * (rank - data.ndim) + data.shape)


# --- attribute remapping ---------------------------------------------------------------------
def _remap_attrs(node: Node, axis_map, rank: int) -> dict | None:
    """``node``'s attributes with every axis a replaced by ``axis_map[a]`` (None: cannot)."""
    a = dict(node.attrs)
    if node.op in REDUCE:
        a["axes"] = tuple(axis_map[x % rank] for x in a["axes"])
    elif node.op in (Op.SOFTMAX, Op.CONCAT):
        a["axis"] = axis_map[a["axis"] % rank]
    elif node.op is Op.SLICE:
        a["axes"] = tuple(axis_map[x % rank] for x in a["axes"])
    elif node.op is Op.PAD:
        pads = a["pads"]
        if len(pads) != 2 * rank:
            return None
        new = [0] * (2 * rank)
        for k in range(rank):
            new[axis_map[k]], new[axis_map[k] + rank] = pads[k], pads[k + rank]
        a["pads"] = tuple(new)
    return a


def _reduce_out_perm(node: Node, p: tuple[int, ...]) -> tuple[int, ...]:
    """Trailing permutation after pushing ``T_p`` through a reduce without keepdims."""
    r = len(p)
    axes = {x % r for x in node.attrs["axes"]} or set(range(r))
    kept_x = sorted(set(range(r)) - {p[a] for a in axes})
    return tuple(kept_x.index(p[k]) for k in range(r) if k not in axes)


# --- compose ---------------------------------------------------------------------------------
def compose(graph: Graph, t2: Node, index: Index) -> bool:
    """``T_q(T_p(x)) -> T_r(x)``; removes the outer node when r is the identity."""
    t1 = index.producer(t2.inputs[0], Op.TRANSPOSE)
    if t1 is None:
        return False
    p, q = _perm(t1), _perm(t2)
    t2.inputs = [t1.inputs[0]]
    t2.attrs["perm"] = tuple(p[k] for k in q)
    _match.drop_if_unused(graph, t1)
    if is_identity_perm(t2.attrs["perm"]):
        graph.bypass(t2, t2.inputs[0])
    return True


# --- push down -------------------------------------------------------------------------------
def _per_axis(graph: Graph, node: Node) -> bool:
    """A QUANTIZE/DEQUANTIZE with per-axis params (their axis would need remapping)."""
    return node.op in QUANT_OPS and any(
        graph.tensors[t].quant is not None and graph.tensors[t].quant.axis is not None
        for t in node.inputs + node.outputs if t)


def plan_push(graph: Graph, node: Node, index: Index):
    """(perm, operand plans) for pushing a transpose below ``node``, or None when illegal."""
    if node.op not in AGNOSTIC or len(node.outputs) != 1 or _per_axis(graph, node):
        return None
    feeds = [index.producer(i, Op.TRANSPOSE) if i else None for i in node.inputs]
    first = next((t for t in feeds if t is not None), None)
    if first is None:
        return None
    p = _perm(first)
    r = len(p)
    out = graph.tensors[node.outputs[0]]
    users = index.consumers(first.outputs[0])
    if len(users) > 1 and not all(u.op in AGNOSTIC or u.op is Op.TRANSPOSE for u in users):
        return None
    plans = []
    big = False
    for i, (name, t) in enumerate(zip(node.inputs, feeds)):
        if not name:
            plans.append(("keep", name))
        elif t is not None and _perm(t) == p:
            plans.append(("untranspose", t.inputs[0]))
            big = big or graph.tensors[name].shape == out.shape
        elif graph.const(name) is not None:
            data = graph.const(name)
            if data.ndim > r:
                return None
            if data.size == 1 and node.op is not Op.CONCAT:
                plans.append(("keep", name))
            else:
                plans.append(("const", np.transpose(_full_rank(data, r), invert_perm(p))))
        elif node.op in BINARY or node.op is Op.PRELU:
            o = graph.tensors[name]
            if len(o.shape) > r or int(np.prod(o.shape)) >= int(np.prod(out.shape)):
                return None
            full = (1,) * (r - len(o.shape)) + o.shape
            target = tuple(full[k] for k in invert_perm(p))
            if sum(d != 1 for d in full) <= 1:
                plans.append(("reshape", name, target))
            elif int(np.prod(o.shape)) <= SMALL:
                plans.append(("transpose", name, full))
            else:
                return None
        else:
            return None
    if not big and node.op in BINARY | {Op.PRELU}:
        return None                 # only a full-size transposed operand is worth pushing
    if _remap_attrs(node, p, r) is None:
        return None
    return p, plans


def push(graph: Graph, node: Node, p: tuple[int, ...], plans) -> None:
    r = len(p)
    inv = invert_perm(p)
    pre: list[Node] = []
    inputs = []
    for plan in plans:
        kind, name = plan[0], plan[1]
        if kind in ("keep", "untranspose"):
            inputs.append(name)
        elif kind == "const":
            inputs.append(graph.add_const(graph.fresh_name(f"{node.name}_c"),
                                          np.ascontiguousarray(name)))
        elif kind == "reshape":
            n = _match.make_node(graph, Op.RESHAPE, [name], f"{node.name}_operand", shape=plan[2])
            pre.append(n)
            inputs.append(n.outputs[0])
        else:                                              # small run-time operand: T_{p^-1}
            src = name
            if len(graph.tensors[name].shape) != r:
                n = _match.make_node(graph, Op.RESHAPE, [name], f"{node.name}_operand",
                                     shape=plan[2])
                pre.append(n)
                src = n.outputs[0]
            n = _match.make_node(graph, Op.TRANSPOSE, [src], f"{node.name}_operand", perm=inv)
            pre.append(n)
            inputs.append(n.outputs[0])
    out_perm = p
    if node.op in REDUCE and not node.attrs["keepdims"]:
        out_perm = _reduce_out_perm(node, p)
    attrs = _remap_attrs(node, p, r)
    old_feeds = [i for i in node.inputs if i]
    y = node.outputs[0]
    new = Node(node.name, node.op, inputs, [y], attrs)     # y: its dtype and quant params
    if is_identity_perm(out_perm):
        new.outputs = [y]
        post: list[Node] = []
    else:
        (shape, dtype), = shapes.infer(new, graph)
        # per-tensor quant params do not depend on the layout (a pushed QUANTIZE keeps them)
        inner = graph.add_tensor(graph.fresh_name(y), shape, dtype,
                                 quant=graph.tensors[y].quant).name
        new.outputs = [inner]
        post = [_match.make_node(graph, Op.TRANSPOSE, [inner], f"{node.name}_t", output=y,
                                 perm=out_perm)]
    i = _match.position(graph, node)
    graph.nodes[i:i + 1] = pre + [new] + post
    for name in old_feeds:
        t = graph.producer(name)
        if t is not None and t.op is Op.TRANSPOSE:
            _match.drop_if_unused(graph, t)


# --- hoist -----------------------------------------------------------------------------------
def _runtime_inputs(graph: Graph, node: Node) -> list[str]:
    return [i for i in node.inputs if i and graph.const(i) is None]


def _hoistable(graph: Graph, node: Node | None, index: Index) -> bool:
    """``node`` has one run-time input, of its output's rank and shape for elementwise ops."""
    if node is None or node.op not in HOISTABLE or len(node.outputs) != 1 \
            or _per_axis(graph, node):
        return False
    if node.op in REDUCE and not node.attrs["keepdims"]:
        return False
    ins = _runtime_inputs(graph, node)
    if len(ins) != 1 or node.inputs.count(ins[0]) != 1:
        return False
    x, y = graph.tensors[ins[0]], graph.tensors[node.outputs[0]]
    if node.op in ELEMENTWISE and x.shape != y.shape:
        return False
    return all(graph.const(i) is None or graph.const(i).ndim <= len(y.shape)
               for i in node.inputs if i)


def _leads_to_boundary(graph: Graph, tensor: str, index: Index) -> bool:
    while True:
        if tensor in graph.inputs:
            return True
        prod = index.producer(tensor)
        if prod is None:
            return False
        if prod.op is Op.TRANSPOSE:
            return True
        if not _hoistable(graph, prod, index) or index.sole_user(tensor) is None:
            return False
        tensor = _runtime_inputs(graph, prod)[0]


def match_hoist(graph: Graph, t: Node, index: Index) -> Node | None:
    """The op above transpose ``t`` that ``t`` can move above, or None."""
    op = index.producer(t.inputs[0])
    if not _hoistable(graph, op, index) or index.sole_user(t.inputs[0]) is not t:
        return None
    if not _leads_to_boundary(graph, _runtime_inputs(graph, op)[0], index):
        return None
    return op


def hoist(graph: Graph, t: Node, op: Node) -> None:
    q = _perm(t)
    r = len(q)
    x = _runtime_inputs(graph, op)[0]
    t_new = _match.make_node(graph, Op.TRANSPOSE, [x], t.name, perm=q)
    graph.tensors[t_new.outputs[0]].quant = graph.tensors[x].quant      # a relabeling
    inputs = []
    for name in op.inputs:
        data = graph.const(name) if name else None
        if data is None or data.size == 1:
            inputs.append(t_new.outputs[0] if name == x else name)
        else:
            inputs.append(graph.add_const(graph.fresh_name(f"{op.name}_c"), np.ascontiguousarray(
                np.transpose(_full_rank(data, r), q))))
    attrs = _remap_attrs(op, invert_perm(q), r)
    new = Node(op.name, op.op, inputs, [t.outputs[0]], attrs)
    i = _match.position(graph, op)
    graph.nodes[i:i + 1] = [t_new, new]
    del graph.nodes[_match.position(graph, t)]
    del graph.tensors[op.outputs[0]]


# --- driver ----------------------------------------------------------------------------------
def _sweep(graph: Graph, phase: int) -> bool:
    index = Index(graph)
    for node in graph.nodes:
        if node.op is Op.TRANSPOSE:
            if compose(graph, node, index):
                return True
            if phase == 2:
                op = match_hoist(graph, node, index)
                if op is not None:
                    hoist(graph, node, op)
                    return True
        elif phase == 1:
            plan = plan_push(graph, node, index)
            if plan is not None:
                push(graph, node, *plan)
                return True
    return False


def run(graph: Graph) -> int:
    count = 0
    for phase in (1, 2):
        while _sweep(graph, phase):
            count += 1
    return count
