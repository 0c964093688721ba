"""Channel-statistics chains of pre-quantized (QDQ) graphs -> one ``qu8_stats_lut`` step.

A QDQ model writes its instance norms out as ~25 float ops between QUANTIZE/DEQUANTIZE pairs
(arbitrary_transform's StyleNorm: mean, squared difference, variance, rsqrt, scale and shift,
each quantized). Run op by op that is ~50 steps and 10+ full-size float passes per norm. Every
value of such a chain is a function of (channel, the uint8 input byte) and of per-channel
statistics, so one kernel (``kernels/qu8_stats_lut.py``) computes it exactly from a histogram
and a [C, 256] table: two passes over the uint8 tensor.

The IR keeps the ops (their semantics are the model's, checked by ir/interpret.py); this pass
marks each chain: its last node (the head) records ``stats_x``, ``stats_members`` (node order),
``stats_externals`` and ``stats_out``; the other members are ``fused_into`` the head.

Region, grown from a uint8 tensor x [1, H, W, C] (per-tensor quant) in node order: a node joins
when its op is one of ``MEMBER_OPS``, at least one run-time input is in the region and every
other run-time input is a float32 per-channel tensor ([1, 1, 1, C] or [C], computed outside:
the style's scale and shift), constants are scalars or per-channel, and its output is full-size
([1, H, W, C]) or per-channel ([1, 1, 1, C]; a spatial mean of a full-size value). Legal when
the region holds a spatial mean, exactly one of its tensors is read outside it (or is a graph
output), and that one is full-size, uint8 (a QUANTIZE's) or float32. A per-channel input that is
the DEQUANTIZE of a uint8 tensor read only by the region joins with its DEQUANTIZE (the step
reads the bytes).
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.passes.fusions.target import KernelTarget

UNARY_OPS = {Op.SQRT: "SQRT", Op.RECIPROCAL: "RECIP", Op.SIGMOID: "SIGMOID", Op.RELU: "RELU",
             Op.TANH: "TANH", Op.NEG: "NEG", Op.EXP: "EXP"}
BINARY_OPS = {Op.ADD: "ADD", Op.SUB: "SUB", Op.MUL: "MUL", Op.DIV: "DIV"}
MEAN_OPS = {Op.GLOBAL_AVG_POOL, Op.REDUCE_MEAN}
MEMBER_OPS = frozenset(UNARY_OPS) | frozenset(BINARY_OPS) | MEAN_OPS | {
    Op.QUANTIZE, Op.DEQUANTIZE, Op.RESHAPE}



def _chan(shape, c: int) -> bool:
    """A per-channel vector: C elements, in any layout ([1, 1, 1, C], [1, C, 1, 1], [C])."""
    return int(np.prod(shape)) == c and sum(d != 1 for d in shape) <= 1


def _grow(graph: Graph, x: str, start: int) -> tuple[str, list[Node], list[str], str] | None:
    xt = graph.tensors[x]
    n_, h, w, c = xt.shape
    full, chan = "full", "chan"
    have = {x: full}
    members: list[Node] = []
    externals: list[str] = []
    for node in graph.nodes[start:]:
        if node.op not in MEMBER_OPS or len(node.outputs) != 1:
            continue
        ins = [i for i in node.inputs if i]
        runtime = [i for i in ins if graph.const(i) is None]
        if not any(i in have for i in runtime):
            continue
        if node.op in BINARY_OPS and len(ins) != 2:
            continue
        ok = True
        shapes = []
        new_ext = []
        for i in ins:
            t = graph.tensors[i]
            if i in have:
                shapes.append(have[i])
            elif t.is_const:
                ok = ok and node.op in BINARY_OPS and (t.data.size == 1 or _chan(t.shape, c))
                shapes.append(chan)
            else:
                ok = ok and node.op in BINARY_OPS and _chan(t.shape, c) \
                    and t.dtype is DType.FLOAT32 and t.quant is None
                new_ext.append(i)
                shapes.append(chan)
        if not ok:
            continue
        y = graph.tensors[node.outputs[0]]
        if node.op in MEAN_OPS:
            if shapes[0] != full or y.shape != (1, 1, 1, c) or (node.op is Op.REDUCE_MEAN and (
                    tuple(sorted(a % 4 for a in node.attrs["axes"])) != (1, 2)
                    or not node.attrs["keepdims"])):
                continue
            out_shape = chan
        elif node.op is Op.RESHAPE:
            if shapes[0] != chan or not _chan(y.shape, c):
                continue
            out_shape = chan
        else:
            out_shape = full if full in shapes else chan
            if y.shape != (xt.shape if out_shape == full else y.shape) \
                    or out_shape == chan and not _chan(y.shape, c):
                continue
        if node.op is Op.QUANTIZE:
            q = y.quant
            if y.dtype is not DType.UINT8 or q is None or len(q.scale) != 1:
                continue
        elif node.op is Op.DEQUANTIZE:
            q = graph.tensors[ins[0]].quant
            if graph.tensors[ins[0]].dtype is not DType.UINT8 or q is None or len(q.scale) != 1:
                continue
        elif node.op is Op.RESHAPE:
            src = graph.tensors[ins[0]]
            if y.dtype is not src.dtype or y.quant != src.quant:
                continue
        elif y.quant is not None or y.dtype is not DType.FLOAT32:
            continue
        if node.op in BINARY_OPS and Activation(node.attrs.get("activation", 0)) not in (
                Activation.NONE, Activation.RELU):
            continue
        members.append(node)
        have[node.outputs[0]] = out_shape
        externals += [e for e in new_ext if e not in externals]
    if not any(m.op in MEAN_OPS for m in members):
        return None
    ids = {id(m) for m in members}
    outs = [t for t in have if t != x and (graph.is_output(t) or any(
        id(u) not in ids for u in graph.consumers(t)))]
    if len(outs) != 1 or have[outs[0]] != full \
            or graph.tensors[outs[0]].dtype not in (DType.UINT8, DType.FLOAT32):
        return None
    producer = graph.producer(outs[0])
    # every member feeds the output (dead ones would have been pruned): it is the last
    if members[-1] is not producer:
        return None
    # a per-channel input that is DEQUANTIZE(u8) read only here: the step reads the bytes
    ids = {id(m) for m in members}
    for k, e in enumerate(externals):
        dq = graph.producer(e)
        if dq is None or dq.op is not Op.DEQUANTIZE or graph.is_output(e):
            continue
        src = graph.tensors[dq.inputs[0]]
        if src.is_const or src.dtype is not DType.UINT8 or src.quant is None \
                or len(src.quant.scale) != 1 or not _chan(src.shape, c) \
                or src.name in externals or not all(id(u) in ids for u in graph.consumers(e)):
            continue
        externals[k] = src.name
        members.insert(0, dq)
    return x, members, externals, outs[0]


def run(graph: Graph, target: KernelTarget) -> int:
    """Mark every legal chain; returns the number of chains."""
    taken: set[int] = set()
    chains = 0
    for i, node in enumerate(graph.nodes):
        for x in node.outputs:
            t = graph.tensors[x]
            if t.dtype is not DType.UINT8 or t.quant is None or len(t.quant.scale) != 1 \
                    or len(t.shape) != 4 or t.shape[0] != 1:
                continue
            if not any(u.op is Op.DEQUANTIZE for u in graph.consumers(x)):
                continue
            found = _grow(graph, x, i + 1)
            if found is None or any(id(m) in taken for m in found[1]):
                continue
            x_name, members, externals, out = found
            taken.update(id(m) for m in members)
            head = members[-1]
            for m in members[:-1]:
                fusion.absorb(m, head)
            fusion.record(head, "stats_x", x_name)
            fusion.record(head, "stats_members", [m.name for m in members])
            fusion.record(head, "stats_externals", externals)
            fusion.record(head, "stats_out", out)
            chains += 1
    return chains
