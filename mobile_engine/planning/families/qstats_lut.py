"""Channel-statistics chains of pre-quantized (QDQ) graphs -> one ``qu8_stats_lut`` step.

A QDQ model writes its instance norms out as ~25 float ops between QUANTIZE/DEQUANTIZE pairs
(arbitrary_transform's StyleNorm: mean, squared difference, variance, rsqrt, scale and shift,
each quantized). Run op by op that is ~50 steps and 10+ full-size float passes per norm. Every
value of such a chain is a function of (channel, the uint8 input byte) and of per-channel
statistics, so ``kernels/qu8_stats_lut.py`` computes it exactly from a histogram and a
[C, 256] table: two passes over the uint8 tensor.

The IR keeps the ops (their semantics are the model's, checked by ir/interpret.py); this module
finds the chains when the graph is lowered and emits the one step at the chain's last node, the
other nodes lowering to no step (as a norm fused into its add, families/qelementwise.py).

Region (``find_regions``), grown from a uint8 tensor x [1, H, W, C] (per-tensor quant) in node
order: a node joins when its op is one of ``MEMBER_OPS``, at least one run-time input is in the
region and every other run-time input is a float32 per-channel tensor ([1, 1, 1, C] or [C],
computed outside: the style's scale and shift), constants are scalars or per-channel, and its
output is full-size ([1, H, W, C]) or per-channel ([1, 1, 1, C]; a spatial mean of a full-size
value). Legal when the region holds a spatial mean, exactly one of its tensors is read outside
it (or is a graph output), and that one is full-size, uint8 (a QUANTIZE's) or float32.

A per-channel input that is the DEQUANTIZE of a uint8 tensor read only by the region joins
with its DEQUANTIZE (the step reads the bytes; the DEQUANTIZE lowers to no step).

Step ``qu8_stats_lut_nhwc_{u8,f32}``: inputs [x, per-channel inputs (f32 or u8)...]; outputs [y];
weights prog i32[K, 4], fpar f32[K, 4], consts f32[Kc, C]; params x_reg, out_reg, ext_regs,
const_regs, n_regs.
"""
from __future__ import annotations

import weakref

import numpy as np

import mobile_engine.planning.families.qelementwise  # noqa: F401  (wrapped below)
from kernels import qu8_stats_lut as ksl
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning.step import LOWERINGS, Step

F32 = np.float32
UNARY_OPS = {Op.SQRT: "SQRT", Op.RECIPROCAL: "RECIP", Op.SIGMOID: "SIGMOID", Op.RELU: "RELU",
             Op.TANH: "TANH", Op.NEG: "NEG", Op.EXP: "EXP"}
BINARY_OPS = {Op.ADD: "ADD", Op.SUB: "SUB", Op.MUL: "MUL", Op.DIV: "DIV"}
MEAN_OPS = {Op.GLOBAL_AVG_POOL, Op.REDUCE_MEAN}
MEMBER_OPS = frozenset(UNARY_OPS) | frozenset(BINARY_OPS) | MEAN_OPS | {
    Op.QUANTIZE, Op.DEQUANTIZE, Op.RESHAPE}


class Region:
    """One chain: its member nodes (node order), input x, per-channel inputs, output y."""

    def __init__(self, x: str, members: list[Node], externals: list[str], out: str):
        self.x, self.members, self.externals, self.out = x, members, externals, out

    def step(self, graph: Graph) -> Step:
        c = graph.tensors[self.x].shape[3]
        regs = {self.x: 0}
        ext_regs = []
        for e in self.externals:
            regs[e] = len(regs)
            ext_regs.append(regs[e])
        consts, const_regs = [], []

        def reg(name: str) -> int:
            if name in regs:
                return regs[name]
            data = np.asarray(graph.const(name), F32).reshape(-1)
            consts.append(np.broadcast_to(data, (c,)) if data.size in (1, c) else None)
            regs[name] = len(regs)
            const_regs.append(regs[name])
            return regs[name]

        prog, fpar = [], []
        for n in self.members:
            a = reg(n.inputs[0])
            b = reg(n.inputs[1]) if n.op in BINARY_OPS else -1
            d = regs[n.outputs[0]] = len(regs)
            p = [0.0, 0.0, 0.0, 0.0]
            if n.op is Op.DEQUANTIZE:
                q = graph.tensors[n.inputs[0]].quant
                name, p[:2] = "DQ", [q.scale[0], q.zero_point[0]]
            elif n.op is Op.QUANTIZE:
                q = graph.tensors[n.outputs[0]].quant
                name, p = "Q", [q.scale[0], q.zero_point[0], 0.0, 255.0]
            elif n.op in BINARY_OPS:
                name = BINARY_OPS[n.op]
                p[0] = float(Activation(n.attrs.get("activation", 0)) is Activation.RELU)
            elif n.op in MEAN_OPS:
                name = "MEAN"
            elif n.op is Op.RESHAPE:
                name = "COPY"
            else:
                name = UNARY_OPS[n.op]
            prog.append([ksl.OPCODE[name], d, a, b])
            fpar.append(p)
        weights = {"prog": np.asarray(prog, np.int32).reshape(-1, 4),
                   "fpar": np.asarray(fpar, F32).reshape(-1, 4),
                   # NOTE: at least one row: a plan file cannot hold a 0-byte blob
                   "consts": np.asarray(consts or [np.zeros(c, F32)], F32).reshape(-1, c)}
        y = graph.tensors[self.out]
        kernel = ksl.KERNEL_U8 if y.dtype is DType.UINT8 else ksl.KERNEL_F32
        params = {"x_reg": 0, "out_reg": regs[self.out], "ext_regs": ext_regs,
                  "const_regs": const_regs, "n_regs": len(regs)}
        size = int(np.prod(y.shape))
        return Step(self.members[-1].name, kernel, [self.x] + self.externals, [self.out], params,
                    weights, flops=2 * size)


def _chan(shape, c: int) -> bool:
    """A per-channel vector: C elements, in any layout ([1, 1, 1, C], [1, C, 1, 1], [C])."""
    return int(np.prod(shape)) == c and sum(d != 1 for d in shape) <= 1


def _grow(graph: Graph, x: str, start: int) -> Region | None:
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
    return Region(x, members, externals, outs[0])


_CACHE: "weakref.WeakKeyDictionary[Graph, tuple]" = weakref.WeakKeyDictionary()


def find_regions(graph: Graph) -> dict[int, Region]:
    """id(member node) -> its Region, for every legal chain of ``graph`` (memoised per graph
    state: the node list, its length and end nodes; lowering does not change the graph)."""
    nodes = graph.nodes
    sig = (id(nodes), len(nodes), id(nodes[0]) if nodes else 0, id(nodes[-1]) if nodes else 0)
    hit = _CACHE.get(graph)
    if hit is not None and hit[0] == sig:
        return hit[1]
    found: dict[int, Region] = {}
    for i, node in enumerate(graph.nodes):
        for x in node.outputs:
            t = graph.tensors[x]
            if t.dtype is not DType.UINT8 or t.quant is None or len(t.quant.scale) != 1 \
                    or len(t.shape) != 4 or t.shape[0] != 1:
                continue
            if not any(u.op is Op.DEQUANTIZE for u in graph.consumers(x)):
                continue
            region = _grow(graph, x, i + 1)
            if region is None or any(id(m) in found for m in region.members):
                continue
            for m in region.members:
                found[id(m)] = region
    _CACHE[graph] = (sig, found)
    return found


def _wrap(op: Op) -> None:
    inner = LOWERINGS[op]

    def lower(node: Node, graph: Graph) -> list[Step]:
        region = find_regions(graph).get(id(node))
        if region is None:
            return inner(node, graph)
        return [region.step(graph)] if node is region.members[-1] else []
    lower.__doc__ = f"{op.name}: inside a channel-statistics chain -> qu8_stats_lut, else " \
                    f"{getattr(inner, '__name__', 'the previous lowering')}"
    LOWERINGS[op] = lower


for _op in MEMBER_OPS:
    if _op in LOWERINGS:
        _wrap(_op)
