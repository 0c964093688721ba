"""equalize: per-channel range equalization of instance-norm outputs before int8 quantization.

A uint8 tensor has one scale for all its channels, so a channel whose values span a tenth of
the tensor's range keeps only ~25 of the 256 levels. Where the float graph allows it, the
channels are rescaled so that they span similar ranges, and the rescaling is undone in the
weights of the convs that read them (an exact float identity)::

    y'[c] = y[c] / D[c]                    the producer: INSTANCE_NORM scale and bias / D
    conv(y, w) = conv(y', w * D[ci])       every consumer conv: weights scaled per input channel
    add(a, b) / D = add(a / D, b / D)      residual ADDs: every tensor joined by adds shares D

``D[c] = (r[c] / max(r)) ** ALPHA`` with ``r[c]`` the ``PERCENTILE`` of |y[c]| over the
calibration data (the largest over the tensors of a group that the float plan materializes;
dead channels keep D = 1) and a
floor ``MIN_FACTOR``. ALPHA < 1 leaves part of the spread in the activations: the int8 weights
of the small channels shrink by D, so full equalization trades activation for weight error.

Groups: tensors joined through ADD nodes (inputs and output). A group is legal when every
tensor is a float32 NHWC activation (layout attributes "nhwc") that is neither a graph input nor output, produced by an
INSTANCE_NORM or by an ADD of group members (activation NONE or RELU: both commute with a
positive scale), and read only by CONV2D nodes (as their input, constant weights) and by ADDs of
the group.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.builder import normalize_attrs
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.ir import shapes
from mobile_engine.ir.verify import verify
from quantize.observers import ChannelStats

ALPHA = 0.7
PERCENTILE = 99.99
MIN_FACTOR = 1.0 / 64
_COMMUTES = (Activation.NONE, Activation.RELU)


def _legal_tensor(graph: Graph, name: str, group: set[str]) -> bool:
    t = graph.tensors[name]
    if t.is_const or t.dtype is not DType.FLOAT32 or len(t.shape) != 4 \
            or name in graph.inputs or name in graph.outputs:
        return False
    p = graph.producer(name)
    if p is None or p.attrs.get("activation", Activation.NONE) not in _COMMUTES \
            or p.attrs.get("layout", "nhwc") != "nhwc":
        return False
    if p.op is Op.INSTANCE_NORM:
        pass
    elif p.op is Op.ADD:
        if not all(i in group for i in p.inputs):
            return False
    else:
        return False
    for user in graph.consumers(name):
        if user.op is Op.CONV2D:
            if user.inputs[0] != name or name in user.inputs[1:] \
                    or user.attrs.get("in_layout", "nhwc") != "nhwc" \
                    or graph.const(user.inputs[1]) is None:
                return False
        elif user.op is Op.ADD:
            if user.outputs[0] not in group:
                return False
        else:
            return False
    return True


def find_groups(graph: Graph) -> list[list[str]]:
    """Legal equalization groups, each a list of tensor names (graph order)."""
    parent: dict[str, str] = {}

    def root(a: str) -> str:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    candidates = []
    for n in graph.nodes:
        if n.op in (Op.INSTANCE_NORM, Op.ADD) and len(n.outputs) == 1:
            candidates.append(n.outputs[0])
            root(n.outputs[0])
        if n.op is Op.ADD:
            for i in n.inputs:
                parent[root(i)] = root(n.outputs[0])
    groups: dict[str, list[str]] = {}
    for name in candidates:
        groups.setdefault(root(name), []).append(name)
    # every member of a group must be a candidate (e.g. not an ADD input made elsewhere)
    members = {name for g in groups.values() for name in g}
    legal = []
    for g in groups.values():
        joined = {name for name in parent if root(name) == root(g[0])}
        if joined <= members and all(_legal_tensor(graph, name, set(g)) for name in g):
            legal.append(g)
    return legal


def choose_factors(groups: list[list[str]], stats: dict[str, ChannelStats],
                   alpha: float = ALPHA) -> dict[str, np.ndarray]:
    """{tensor: f64[C] D} for every tensor of every group with statistics."""
    out = {}
    for g in groups:
        seen = [name for name in g if name in stats and stats[name].hist is not None]
        if not seen:             # NOTE: a fused float step need not materialize every member
            continue
        r = np.max([stats[name].percentile(PERCENTILE) for name in seen], axis=0)
        if not np.any(r > 0):
            continue
        d = np.where(r > 0, np.maximum((r / r.max()) ** alpha, MIN_FACTOR), 1.0)
        for name in g:
            out[name] = d
    return out


def _scaled_const(graph: Graph, name: str, factor: np.ndarray) -> str:
    data = graph.const(name)
    return graph.add_const(graph.fresh_name(f"{name}_eq"),
                           (data.astype(np.float64) * factor).astype(np.float32))


def _fold_upstream(graph: Graph, name: str, factor: np.ndarray) -> bool:
    """Scale ``name`` per channel (last axis) by rescaling the constant it is linear in:
    ``REDUCE_SUM|REDUCE_MEAN(MUL(a, k))`` over axes other than the last, k's last axis the
    channels (multistyle26's style mixing ``sum_s w[s] * gamma[s, c]``). False when the
    producers do not have that form or are read elsewhere."""
    red = graph.producer(name)
    if red is None or red.op not in (Op.REDUCE_SUM, Op.REDUCE_MEAN):
        return False
    src = graph.tensors[red.inputs[0]]
    rank = len(src.shape)
    axes = {a % rank for a in (red.attrs["axes"] or range(rank))}
    c = factor.size
    if rank - 1 in axes or src.shape[-1] != c or graph.single_consumer(src.name) is not red:
        return False
    mul = graph.producer(src.name)
    if mul is None or mul.op is not Op.MUL or mul.attrs["activation"] is not Activation.NONE:
        return False
    for k, i in enumerate(mul.inputs):
        data = graph.const(i)
        if data is not None and data.ndim >= 1 and data.shape[-1] == c \
                and graph.const(mul.inputs[1 - k]) is None:
            mul.inputs[k] = _scaled_const(graph, i, factor)
            return True
    return False


def _scaled_input(graph: Graph, node: Node, index: int, factor: np.ndarray) -> str:
    """A tensor equal to ``node.inputs[index] * factor`` (a constant, the constant upstream it
    is linear in, or a new MUL node)."""
    name = node.inputs[index]
    if graph.const(name) is not None:
        return _scaled_const(graph, name, factor)
    if graph.single_consumer(name) is node and _fold_upstream(graph, name, factor):
        return name
    k = graph.add_const(graph.fresh_name(f"{name}_eqf"), factor.astype(np.float32))
    mul = Node(graph.fresh_name(f"{node.name}/equalize"), Op.MUL, [name, k], [],
               normalize_attrs(Op.MUL, {}))
    (shape, dtype), = shapes.infer(mul, graph)
    out = graph.fresh_name(f"{name}_eq")
    graph.add_tensor(out, shape, dtype)
    mul.outputs = [out]
    graph.insert_node(mul, before=node)
    return out


def apply(graph: Graph, factors: dict[str, np.ndarray]) -> int:
    """Rescale ``graph`` in place by ``factors`` ({tensor: D}); returns the tensors rescaled.

    Raises ``ValueError`` naming the tensor when a factor does not fit the graph (another model,
    or tensors of one group with different factors).
    """
    for name, d in factors.items():
        t = graph.tensors.get(name)
        if t is None or len(t.shape) != 4 or len(d) != t.shape[3]:
            raise ValueError(f"equalization factor for {name!r} ({len(d)} channels) does not "
                             f"fit the graph ({None if t is None else t.shape})")
        if not _legal_tensor(graph, name, set(factors)):
            raise ValueError(f"tensor {name!r} cannot be equalized in this graph")
    for name, d in factors.items():
        d = np.asarray(d, np.float64)
        producer = graph.producer(name)
        if producer.op is Op.INSTANCE_NORM:
            for index in (1, 2):
                producer.inputs[index] = _scaled_input(graph, producer, index, 1.0 / d)
        elif not all(np.array_equal(factors[i], factors[name]) for i in producer.inputs):
            raise ValueError(f"ADD {producer.name!r}: its inputs and output {name!r} have "
                             f"different equalization factors")
        for user in graph.consumers(name):
            if user.op is Op.CONV2D:
                w = graph.const(user.inputs[1])
                group = user.attrs["group"]
                cig = w.shape[1]
                dw = d.reshape(group, cig)            # input channel g*cig + i of group g
                cog = w.shape[0] // group
                scale = np.repeat(dw, cog, axis=0)[:, :, None, None]
                user.inputs[1] = graph.add_const(
                    graph.fresh_name(f"{user.inputs[1]}_eq"),
                    (w.astype(np.float64) * scale).astype(np.float32))
    graph.prune()
    verify(graph)
    return len(factors)
