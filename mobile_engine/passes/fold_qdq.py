"""fold_qdq: a pre-quantized (QDQ) graph -> quantized ops (the int8 form of quantize_int8.py).

The importer turns ONNX QuantizeLinear/DequantizeLinear on run-time tensors into QUANTIZE and
DEQUANTIZE; between them the graph computes in float. Rewrites, repeated until none applies:

1. Layout ops move to the integer side (per-tensor params commute with any op that only
   copies elements: TRANSPOSE, RESHAPE, PAD in reflect/edge mode, nearest RESIZE):
   ``TRANSPOSE(DEQUANTIZE(q)) -> DEQUANTIZE(TRANSPOSE(q))`` and
   ``QUANTIZE(L(y)) -> L(QUANTIZE(y))``; two adjacent transposes compose
   (``T_q(T_p(x)) = T_r(x)``, ``r[k] = p[q[k]]``), an identity one disappears. (Most
   transposes are gone before this pass: sink_transposes moves them through QUANTIZE and
   DEQUANTIZE like through element-wise ops.)
2. ``QUANTIZE(DEQUANTIZE(q))`` with the same params is ``q``; so the exporters'
   ``Q(PAD(DQ(q)))`` around a reflect-padded conv becomes a uint8 PAD of q.
3. ``DEQUANTIZE(q) -> CONV2D(w, b) [act] -> QUANTIZE`` is one quantized CONV2D: input ``q``
   (uint8), weights int8 symmetric per output channel (re-quantized from the folded float
   weights: exact when the model's weights were, with max |q| = 127 per channel; the scales
   are then the model's, ``exact_scales``), output the QUANTIZE's uint8 tensor; without the
   QUANTIZE (a float reader) the output stays float32. With the model's weights recovered the
   conv is marked ``float_ties``: where the exact sum lies within float32 noise of a rounding
   tie, its byte is the one the model's float32 conv gives (kernels/qu8_requant_fp32ties.py).
4. ``DEQUANTIZE(a) + DEQUANTIZE(b) -> QUANTIZE`` is a uint8 ADD.

Then, once: the uint8 PAD and RESIZE left in front of the int8 convs fold into them
(absorb_pad, absorb_upsample: the conv's indirection tables pad and upsample); a TRANSPOSE that
moves only size-1 axes is a RESHAPE (a view), and RESHAPE chains that come back to their
input's shape disappear. The instance norms such models write out in float between Q/DQ pairs
stay ops here: lowering runs each as one step (planning/families/qstats_lut.py).
Measured on arbitrary_transform (384x384): 705 -> 62 steps, outputs unchanged.

Legality: an intermediate is rewritten only when its single reader is the next node of the
pattern and it is not a graph output; NHWC convs only (the int8 kernels' layout); the graph's
inputs and outputs keep their names, shapes and dtypes.
"""
from __future__ import annotations

from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes import sink_transposes
from mobile_engine.passes._match import Index
from mobile_engine.passes.quantize_int8 import CLAMP_ACTIVATIONS, _nhwc
from quantize.weights import bias_floor, exact_scales, quantize_weights


def _sole(g: Graph, tensor: str) -> Node | None:
    return g.single_consumer(tensor)


def _integer(g: Graph, name: str) -> bool:
    t = g.tensors[name]
    return t.quant is not None and t.dtype in (DType.UINT8, DType.INT8) and not t.is_const


def _dq_through_transpose(g: Graph) -> int:
    """Every TRANSPOSE reading a DEQUANTIZE gets its own DEQUANTIZE of a transposed copy of
    the integer tensor (the original DEQUANTIZE goes when nothing else reads it)."""
    n_done = 0
    for dq in list(g.nodes):
        if dq.op is not Op.DEQUANTIZE or not _integer(g, dq.inputs[0]) \
                or g.is_output(dq.outputs[0]):
            continue
        q = g.tensors[dq.inputs[0]]
        for t in [u for u in g.consumers(dq.outputs[0]) if u.op is Op.TRANSPOSE]:
            perm = tuple(t.attrs["perm"])
            moved = g.fresh_name(f"{q.name}_t")
            g.add_tensor(moved, tuple(q.shape[p] for p in perm), q.dtype, quant=q.quant)
            out = t.outputs[0]
            t.inputs, t.outputs = [q.name], [moved]
            g.nodes.remove(t)
            g.nodes.insert(g.nodes.index(dq), t)         # q exists wherever dq does
            copy = Node(g.fresh_name(f"{dq.name}_t"), Op.DEQUANTIZE, [moved], [out], {})
            g.nodes.insert(g.nodes.index(t) + 1, copy)
            n_done += 1
        if not g.consumers(dq.outputs[0]):
            g.remove_node(dq)
            del g.tensors[dq.outputs[0]]
    return n_done


def _moves_values(g: Graph, node: Node | None) -> bool:
    """``node`` only copies elements of its one run-time input (no arithmetic), so a per-tensor
    QUANTIZE/DEQUANTIZE commutes with it: TRANSPOSE, RESHAPE, PAD (reflect/edge), nearest
    RESIZE."""
    if node is None or len(node.outputs) != 1 \
            or any(i and not g.tensors[i].is_const for i in node.inputs[1:]):
        return False
    if node.op in (Op.TRANSPOSE, Op.RESHAPE):
        return True
    if node.op is Op.PAD:
        return node.attrs["mode"] in ("reflect", "edge")
    return node.op is Op.RESIZE and node.attrs["mode"] == "nearest" \
        and node.attrs["coordinate_mode"] != "tf_crop_and_resize"       # its fill value


def _q_above_layout(g: Graph) -> int:
    """``QUANTIZE(L(y)) -> L(QUANTIZE(y))`` for a layout op L (``_moves_values``): the graph
    then moves uint8 bytes, and a ``QUANTIZE(DEQUANTIZE(q))`` it exposes disappears."""
    n_done = 0
    for qn in list(g.nodes):
        if qn.op is not Op.QUANTIZE:
            continue
        t = g.producer(qn.inputs[0])
        if not _moves_values(g, t) or _sole(g, t.outputs[0]) is not qn \
                or g.is_output(t.outputs[0]) or g.tensors[t.inputs[0]].is_const:
            continue
        src = g.tensors[t.inputs[0]]
        y = g.tensors[qn.outputs[0]]
        moved = g.fresh_name(f"{y.name}_nt")
        g.add_tensor(moved, src.shape, y.dtype, quant=y.quant)
        del g.tensors[t.outputs[0]]
        qn.inputs, qn.outputs = [src.name], [moved]
        t.inputs, t.outputs = [moved] + t.inputs[1:], [y.name]
        g.nodes.remove(qn)
        g.nodes.insert(g.nodes.index(t), qn)
        n_done += 1
    return n_done


def _compose_transposes(g: Graph) -> int:
    """Transpose pairs the moves above brought together, composed as sink_transposes does."""
    n_done = 0
    for t2 in list(g.nodes):
        if t2.op is Op.TRANSPOSE and t2 in g.nodes \
                and sink_transposes.compose(g, t2, Index(g)):
            n_done += 1
    return n_done


def _q_of_dq(g: Graph) -> int:
    n_done = 0
    for qn in list(g.nodes):
        if qn.op is not Op.QUANTIZE or qn not in g.nodes:
            continue
        dq = g.producer(qn.inputs[0])
        if dq is None or dq.op is not Op.DEQUANTIZE:
            continue
        src = g.tensors[dq.inputs[0]]
        y = g.tensors[qn.outputs[0]]
        if src.quant != y.quant or src.dtype is not y.dtype or g.is_output(y.name):
            continue
        g.remove_node(qn)
        g.replace_uses(y.name, src.name)
        del g.tensors[y.name]
        n_done += 1
    return n_done


def _fold_conv(g: Graph) -> int:
    n_done = 0
    for conv in list(g.nodes):
        if conv.op is not Op.CONV2D or not _nhwc(conv) or len(conv.inputs) > 3 and conv.inputs[3]:
            continue
        dq = g.producer(conv.inputs[0])
        w = g.tensors[conv.inputs[1]]
        if dq is None or dq.op is not Op.DEQUANTIZE or not _integer(g, dq.inputs[0]) \
                or not w.is_const or w.dtype is not DType.FLOAT32 \
                or g.tensors[dq.inputs[0]].dtype is not DType.UINT8:
            continue
        if len(conv.inputs) > 2 and conv.inputs[2] and not g.tensors[conv.inputs[2]].is_const:
            continue
        bias = g.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        sx = g.tensors[dq.inputs[0]].quant.scale[0]
        q, params = quantize_weights(w.data, axis=0, min_scale=bias_floor(bias, sx))
        model_scales = exact_scales(w.data, q)
        if model_scales is not None:        # the model's own: q * s gives back its float weights
            params = QuantParams(tuple(float(s) for s in model_scales), params.zero_point, 0)
        wname = g.fresh_name(f"{w.name}_q8")
        g.add_tensor(wname, q.shape, DType.INT8, q, params)
        conv.inputs = [dq.inputs[0], wname] + conv.inputs[2:]
        out = conv.outputs[0]
        qn = _sole(g, out)
        if qn is not None and qn.op is Op.QUANTIZE and qn.attrs["to"] == "uint8" \
                and not g.is_output(out) and conv.attrs["activation"] in CLAMP_ACTIVATIONS:
            y = qn.outputs[0]
            g.remove_node(qn)
            del g.tensors[out]
            conv.outputs = [y]
            conv.attrs["float_ties"] = model_scales is not None
        if not g.consumers(dq.outputs[0]) and not g.is_output(dq.outputs[0]):
            g.remove_node(dq)
            del g.tensors[dq.outputs[0]]
        n_done += 1
    return n_done


def _fold_add(g: Graph) -> int:
    n_done = 0
    for add in list(g.nodes):
        if add.op is not Op.ADD or len(set(add.inputs)) != 2:
            continue
        dqs = [g.producer(i) for i in add.inputs]
        qn = _sole(g, add.outputs[0])
        if any(d is None or d.op is not Op.DEQUANTIZE or g.tensors[d.inputs[0]].dtype
               is not DType.UINT8 for d in dqs) or qn is None or qn.op is not Op.QUANTIZE \
                or g.is_output(add.outputs[0]) or qn.attrs["to"] != "uint8":
            continue
        if len({g.tensors[d.inputs[0]].shape for d in dqs} | {g.tensors[add.outputs[0]].shape}) != 1:
            continue
        y = qn.outputs[0]
        g.remove_node(qn)
        del g.tensors[add.outputs[0]]
        add.inputs = [d.inputs[0] for d in dqs]
        add.outputs = [y]
        for d in dqs:
            if not g.consumers(d.outputs[0]) and not g.is_output(d.outputs[0]) and d in g.nodes:
                g.remove_node(d)
                del g.tensors[d.outputs[0]]
        n_done += 1
    return n_done


def unit_transposes(g: Graph) -> int:
    """A TRANSPOSE that moves only size-1 axes keeps the bytes in order: a RESHAPE (a view);
    ``RESHAPE(RESHAPE(x))`` reads x, and a RESHAPE to x's own shape disappears (the style
    vector's [1, 1, 1, 100] -> [1, 100, 1, 1] -> [1, 1, 1, 100] round trips)."""
    n_done = 0
    for t in list(g.nodes):
        if t.op is not Op.TRANSPOSE:
            continue
        shape = g.tensors[t.inputs[0]].shape
        kept = [a for a in t.attrs["perm"] if shape[a] != 1]
        if kept != sorted(kept):
            continue
        t.op, t.attrs = Op.RESHAPE, {"shape": g.tensors[t.outputs[0]].shape}
        n_done += 1
    for r in list(g.nodes):
        if r.op is not Op.RESHAPE or r not in g.nodes:
            continue
        inner = g.producer(r.inputs[0])
        if inner is not None and inner.op is Op.RESHAPE:
            r.inputs = [inner.inputs[0]]
            if not g.consumers(inner.outputs[0]) and not g.is_output(inner.outputs[0]):
                g.remove_node(inner)
                del g.tensors[inner.outputs[0]]
            n_done += 1
        if g.tensors[r.inputs[0]].shape == g.tensors[r.outputs[0]].shape \
                and g.bypass(r, r.inputs[0]):
            n_done += 1
    return n_done


def run(graph: Graph) -> int:
    """Fold ``graph`` in place, to a fixed point; returns the number of rewrites. The passes
    that follow it on a QDQ model are ``pipeline.QDQ_PIPELINE``'s next entries."""
    total = 0
    while True:
        n = (_dq_through_transpose(graph) + _q_above_layout(graph)
             + _compose_transposes(graph) + _q_of_dq(graph))
        n += _fold_conv(graph) + _fold_add(graph)
        total += n
        if not n:
            return total
