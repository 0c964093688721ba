"""quantize_int8: the optimised float IR -> the int8 IR, given calibrated ranges (a QuantTable).

Quantized tensors carry ``Tensor.quant``: weights int8 symmetric per output channel, activations
uint8 asymmetric per tensor (``x = s * (q - z)``). An op in ``QUANTIZABLE`` dequantizes such
inputs, computes in float and quantizes its output when the output tensor has ``quant``
(ir/interpret.py); the lowering maps each form onto an int8 kernel.

Rules (measured on multistyle26, DESIGN.md "Quantization"):

- Only NHWC nodes (layout attributes "nhwc"; the int8 kernels are NHWC): planar ones stay float.
- CONV2D with a constant weight, a float runtime input in the table (or 8-bit image data), no
  residual input and not in ``keep_float``: the weight becomes int8 per channel, the input uint8.
- ... unless the fp32 pixel-lane kernel runs it (group 1, column stride 1) and it has at most
  ``FLOAT_MAX_CO`` output channels (``few_channel_float``): such convs are faster in float
  (measured below) and stay float, so the tensors around them stay float too (and a planar
  tail, passes/nchw_tail.py, is already float: planar nodes are not NHWC).
- A conv output that feeds an INSTANCE_NORM (or a float op, or is a graph output) stays float32:
  the exact accumulators times ``sx * sw[c]``. The norm divides by each channel's per-image
  standard deviation, small on flat content, which would amplify rounding noise of a uint8
  pre-norm tensor. Otherwise (all readers quantized, activation none/relu/clamp) it is uint8.
- INSTANCE_NORM reads float32 and writes uint8 when every reader takes uint8 (the next conv, a
  residual ADD): the quantize runs in the norm's epilogue. Norms whose output is read in float
  (sigmoid outputs, graph outputs) stay float.
- ADD of two same-shape runtime tensors writes uint8 when every reader of its output takes uint8
  (the residual stream) and its activation is none/relu/clamp. An input made by an
  INSTANCE_NORM that only this ADD reads stays float32 (``fused_norm_input``): the lowering runs
  norm, add and quantize as one kernel, so the norm's output is never rounded on its own (the
  other input is uint8). Otherwise both inputs are uint8. An ADD whose output some reader takes
  in float, with such a norm input and a uint8 other input, stays "mixed": it reads the uint8
  input, and norm + add write float32 (the last residual add before a float tail).
- The graph input is quantized with scale 1/255, zero point 0 exactly when calibration saw only
  8-bit image data k/255 in 0..1; an image input wrapped by a TRANSPOSE is quantized before it
  (the transpose then moves bytes instead of floats).
- A float tensor read by both float and uint8 readers stays float; a QUANTIZE node makes the
  uint8 copy. A tensor that has a uint8 producer and only uint8 readers is uint8 in place.
- Large float constants read by MUL nodes (>= ``CONST_MIN_SIZE`` elements, e.g. multistyle26's
  per-style norm parameters ``gamma[26, C]``) are stored int8, symmetric per row (axis 0: one
  style each), behind a DEQUANTIZE node: a quarter of the plan bytes, ~50 dB on their own.

Before the rules, the per-channel equalization factors of the table (quantize/equalize.py) are
applied: norm outputs are rescaled per channel and the convs reading them absorb the scale.

``keep_float``: node names (convs, adds) left in float, e.g. the sensitive first convs.
Legality: every decision only changes the dtype/quant of intermediate tensors; graph inputs and
outputs keep their float contract.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from mobile_engine.errors import GraphError
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.ir.verify import verify
from mobile_engine.passes._reach import pixel_lane_conv
from quantize import equalize
from quantize.table import QuantTable
from quantize.weights import bias_floor, quantize_weights

CONST_MIN_SIZE = 256
# NOTE: a conv with at most this many output channels (and the pixel-lane kernel's group 1,
# column stride 1) stays float. Measured on multistyle26's expand tail at 480x640, 2 threads,
# both plans alternately in one process (issue 4; load 2, per-step medians): the qu8 igemm
# 14x16 tile (16 output-channel lanes, half or more idle) takes 2.0 ms for the up2 3x3 32->8,
# 4.4 ms for the up2 3x3 8->4, 6.3 ms for the 9x9 4->3; f32_conv2d_pixup2_16x8 / pixup2_32x4 /
# pix_64x3 (lanes over 16 output pixels: none idle) 1.4 / 1.0 / 4.2 ms; with the norms and the
# final transpose the tail went from 17.7 ms (int8) to 7.6 ms (planar float, as in the fp32
# plan); whole plan p50 81 -> 38 ms. At most _reach.PIXEL_MAX_CO (the kernel's reach).
FLOAT_MAX_CO = 8
# Activations a uint8 output can absorb into its clamp.
CLAMP_ACTIVATIONS = frozenset({Activation.NONE, Activation.RELU, Activation.CLAMP})


@dataclass
class QuantizeResult:
    graph: Graph
    # int8-graph tensor -> the float-graph tensor holding the same value (for reports)
    source: dict[str, str] = field(default_factory=dict)
    quantized: list[str] = field(default_factory=list)     # node names computed in int8
    kept_float: list[str] = field(default_factory=list)    # eligible nodes left in float
    # eligible convs left in float because the fp32 kernel is faster (``few_channel_float``)
    few_channel_float: list[str] = field(default_factory=list)
    # float tensors rescaled by equalization: the int8 graph holds value / D (per channel)
    equalized: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> str:
        g = self.graph
        u8 = sum(1 for t in g.tensors.values() if t.quant is not None and not t.is_const)
        return (f"{len(self.quantized)} nodes int8, {len(self.kept_float)} kept float, "
                f"{len(self.few_channel_float)} few-channel convs float, "
                f"{u8} uint8 activations, {g.count(Op.QUANTIZE)} quantize / "
                f"{g.count(Op.DEQUANTIZE)} dequantize nodes")


def _runtime_f32(graph: Graph, name: str, rank: int = 4) -> bool:
    t = graph.tensors.get(name) if name else None
    return t is not None and not t.is_const and t.dtype is DType.FLOAT32 and len(t.shape) == rank


def _nhwc(node: Node) -> bool:
    """The int8 kernels are NHWC: planar (nchw layout attribute) nodes stay float."""
    return all(node.attrs.get(k, "nhwc") == "nhwc" for k in ("in_layout", "out_layout", "layout"))


def _conv_ok(graph: Graph, node: Node, table: QuantTable) -> bool:
    if node.op is not Op.CONV2D or not _nhwc(node):
        return False
    w = graph.tensors.get(node.inputs[1])
    return (w is not None and w.is_const and len(w.shape) == 4
            and w.dtype is DType.FLOAT32 and _runtime_f32(graph, node.inputs[0])
            and node.inputs[0] in table
            and not (len(node.inputs) > 3 and node.inputs[3])
            and (len(node.inputs) < 3 or not node.inputs[2] or graph.tensors[node.inputs[2]].is_const))


def few_channel_float(graph: Graph, node: Node, max_co: int = FLOAT_MAX_CO) -> bool:
    """A CONV2D that the fp32 pixel-lane kernel (kernels/f32_conv2d_pix.py) runs faster than
    the int8 kernels: at most ``max_co`` output channels, group 1, column stride 1."""
    w = graph.tensors.get(node.inputs[1])
    if node.op is not Op.CONV2D or w is None or len(w.shape) != 4:
        return False
    co = w.shape[0]
    return co <= max_co and pixel_lane_conv(co, node.attrs["group"], node.attrs["strides"][1])


def _add_ok(graph: Graph, node: Node, table: QuantTable) -> bool:
    """Same-shape runtime float inputs; ranges for the output and every input that may be
    quantized (a fused norm input is not: the float plan need not even materialize it)."""
    if node.op is not Op.ADD or node.attrs["activation"] not in CLAMP_ACTIVATIONS:
        return False
    out = graph.tensors[node.outputs[0]]
    fused = fused_norm_input(graph, node)
    return all(_runtime_f32(graph, i) and graph.tensors[i].shape == out.shape
               and (i in table or i == fused) for i in node.inputs) and out.name in table


def fused_norm_input(graph: Graph, add: Node) -> str | None:
    """The input of ``add`` made by an INSTANCE_NORM that only ``add`` reads (the second one
    when both are) and that comes after the other input's producer, or None."""
    a, b = add.inputs
    for name, other in ((b, a), (a, b)):
        p = graph.producer(name)
        if a != b and p is not None and p.op is Op.INSTANCE_NORM and _nhwc(p) \
                and graph.single_consumer(name) is add:
            # the fused step runs where the norm is: the other input must exist by then
            q = graph.producer(other)
            if q is None or graph.nodes.index(q) < graph.nodes.index(p):
                return name
    return None


def _readers(graph: Graph) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in dict.fromkeys(n.inputs):
            if i:
                users.setdefault(i, []).append(n)
    return users


def quantize_int8(graph: Graph, table: QuantTable, keep_float: Iterable[str] = (),
                  quantize_constants: bool = True, plain_adds: bool = True,
                  float_max_co: int = FLOAT_MAX_CO) -> QuantizeResult:
    """The int8 IR of ``graph`` (not modified) under the rules of this module's docstring.

    ``plain_adds``: also make ADDs of two uint8 inputs (no fused norm input) uint8
    (kernels/qu8_elementwise.py's requantizing add); off: such adds stay float.
    ``float_max_co``: convs the pixel-lane kernel runs with at most this many output channels
    stay float (``few_channel_float``); 0 switches the rule off.
    """
    g = graph.copy()
    factors = {k: np.asarray(v, np.float64) for k, v in table.equalize.items()}
    if factors:
        try:
            equalize.apply(g, factors)
        except ValueError as exc:
            raise GraphError(f"the quant table does not fit this graph: {exc}") from None
    keep = set(keep_float)
    unknown = keep - {n.name for n in g.nodes}
    if unknown:
        raise GraphError(f"keep_float names unknown node(s) {', '.join(sorted(unknown))}; "
                         f"quantizable convs: " + ", ".join(
                             n.name for n in g.nodes if n.op is Op.CONV2D))
    users = _readers(g)
    result = QuantizeResult(g, equalized=factors)

    convs = set()
    for n in g.nodes:
        if _conv_ok(g, n, table):
            if n.name in keep:
                result.kept_float.append(n.name)
            elif few_channel_float(g, n, float_max_co):
                result.few_channel_float.append(n.name)
            else:
                result.quantized.append(n.name)
                convs.add(n.name)

    fused = {n.name: fused_norm_input(g, n) for n in g.nodes if n.op is Op.ADD}
    # ADD status: "u8" (uint8 out), "mixed" (float out, reads its non-fused input as uint8)
    status = {n.name: "u8" for n in g.nodes if _add_ok(g, n, table) and n.name not in keep
              and (plain_adds or fused[n.name])}
    result.kept_float += [n.name for n in g.nodes if _add_ok(g, n, table) and n.name in keep]

    def reads_u8(reader: Node, tensor: str) -> bool:
        if reader.name in convs:
            return reader.inputs[0] == tensor and tensor not in reader.inputs[1:]
        return status.get(reader.name) is not None and fused[reader.name] != tensor

    def all_u8(tensor: str) -> bool:
        rs = users.get(tensor, [])
        return bool(rs) and not g.is_output(tensor) and all(reads_u8(r, tensor) for r in rs)

    def emits_u8(node: Node | None, tensor: str) -> bool:
        """``node`` can write ``tensor`` as uint8 (given its readers all want uint8)."""
        if node is None or tensor not in table:
            return False
        if node.op is Op.ADD:
            return status.get(node.name) == "u8"
        if node.op is Op.INSTANCE_NORM:
            return _nhwc(node) and (_runtime_f32(g, node.inputs[0])
                                    or g.tensors[node.inputs[0]].quant is not None)
        if node.name in convs:
            return node.attrs["activation"] in CLAMP_ACTIVATIONS
        return False

    producers = {o: n for n in g.nodes for o in n.outputs}
    changed = True
    while changed:                                   # only downgrades: terminates
        changed = False
        for n in g.nodes:
            st = status.get(n.name)
            if st == "u8" and not all_u8(n.outputs[0]):
                status[n.name] = "mixed" if fused[n.name] else None
                changed = True
            elif st == "mixed":
                # worth it only when the other input is uint8 anyway (no QUANTIZE just for it)
                other = [i for i in n.inputs if i != fused[n.name]][0]
                if not (emits_u8(producers.get(other), other) and all_u8(other)):
                    status[n.name] = None
                    changed = True
    status = {k: v for k, v in status.items() if v is not None}
    result.quantized += [n.name for n in g.nodes if n.name in status]

    # weights
    qweights: dict[tuple, str] = {}
    for n in g.nodes:
        if n.name in convs:
            w = n.inputs[1]
            bias = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
            sx = table.params(n.inputs[0]).scale[0]
            key = (w, n.inputs[2] if bias is not None else "", sx)
            if key not in qweights:
                q, params = quantize_weights(g.tensors[w].data, axis=0,
                                             min_scale=bias_floor(bias, sx))
                name = g.fresh_name(f"{w}_q8")
                g.add_tensor(name, q.shape, DType.INT8, q, params)
                qweights[key] = name
            n.inputs[1] = qweights[key]

    # activations: each tensor some quantized node reads as uint8
    for name in list(g.tensors):
        readers = [r for r in users.get(name, []) if reads_u8(r, name)]
        if not readers:
            continue
        t = g.tensors[name]
        params = table.params(name)
        if emits_u8(producers.get(name), name) and all_u8(name):
            t.dtype, t.quant = DType.UINT8, params
            result.source[name] = name
            continue
        qname = _insert_quantize(g, name, params, producers.get(name), readers)
        result.source[qname] = name
    if quantize_constants:
        _quantize_mul_constants(g, result)
    verify(g)          # NOTE: every insertion keeps the node order; fusion relies on it
    return result


def _quantize_mul_constants(g: Graph, result: QuantizeResult) -> None:
    done: dict[str, str] = {}
    for n in list(g.nodes):
        if n.op is not Op.MUL:
            continue
        for k, name in enumerate(n.inputs):
            t = g.tensors[name]
            if not t.is_const or t.dtype is not DType.FLOAT32 or t.data.size < CONST_MIN_SIZE \
                    or t.data.ndim < 2:
                continue
            if name not in done:
                q, params = quantize_weights(t.data, axis=0)
                qname = g.fresh_name(f"{name}_q8")
                g.add_tensor(qname, q.shape, DType.INT8, q, params)
                out = g.fresh_name(f"{name}_dq")
                g.add_tensor(out, t.shape, DType.FLOAT32)
                node = Node(g.fresh_name(f"{name}/dequantize"), Op.DEQUANTIZE, [qname], [out], {})
                g.nodes.insert(g.nodes.index(n), node)
                result.quantized.append(node.name)
                done[name] = out
            n.inputs[k] = done[name]
    g.prune()


def _insert_quantize(g: Graph, name: str, params: QuantParams, producer: Node | None,
                     readers: list[Node]) -> str:
    """A QUANTIZE of ``name`` for ``readers``; before an input-wrapping TRANSPOSE when that is
    its only job (the transpose then moves bytes)."""
    if producer is not None and producer.op is Op.TRANSPOSE and producer.inputs[0] in g.inputs \
            and len(g.consumers(name)) == 1 and len(g.consumers(producer.inputs[0])) == 1 \
            and not g.is_output(name):
        src = producer.inputs[0]
        qsrc = g.fresh_name(f"{src}_q8")
        g.add_tensor(qsrc, g.tensors[src].shape, DType.UINT8, quant=params)
        g.nodes.insert(g.nodes.index(producer),
                       Node(g.fresh_name(f"{src}/quantize"), Op.QUANTIZE, [src], [qsrc],
                            {"to": "uint8"}))
        producer.inputs[0] = qsrc
        t = g.tensors[name]
        t.dtype, t.quant = DType.UINT8, params
        return name
    qname = g.fresh_name(f"{name}_q8")
    g.add_tensor(qname, g.tensors[name].shape, DType.UINT8, quant=params)
    for r in readers:
        r.inputs = [qname if i == name else i for i in r.inputs]
    node = Node(g.fresh_name(f"{name}/quantize"), Op.QUANTIZE, [name], [qname], {"to": "uint8"})
    # NOTE: right after the producer, not before the first reader: a fused norm + add step runs
    # where the norm is and needs its uint8 residual by then
    g.nodes.insert(g.nodes.index(producer) + 1 if producer is not None else 0, node)
    return qname
