"""Run an IR graph with the numpy references: constant folding and the truth for pass tests."""
from __future__ import annotations

import numpy as np

from kernels import reference as ref
from mobile_engine.errors import InputError, UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import BINARY, UNARY, Op
from mobile_engine.ir.shapes import slice_index


def _act(a: dict) -> dict:
    return {"activation_kind": a.get("activation", 0), "act_params": a.get("act_params", ())}


def evaluate(node: Node, ins: list[np.ndarray | None]) -> list[np.ndarray]:
    """The outputs of ``node`` for input arrays ``ins`` (None for omitted optional inputs)."""
    op, a = node.op, node.attrs
    if op is Op.CONV2D:
        out = ref.conv2d(*ins, strides=a["strides"], dilations=a["dilations"], pads=a["pads"],
                         group=a["group"], pad_mode=a["pad_mode"], upsample=a["upsample"], **_act(a))
    elif op is Op.CONV_TRANSPOSE2D:
        out = ref.conv_transpose2d(*ins, strides=a["strides"], dilations=a["dilations"],
                                   pads=a["pads"], group=a["group"],
                                   output_padding=a["output_padding"], **_act(a))
    elif op is Op.BATCH_NORM:
        out = ref.batch_norm(*ins, epsilon=a["epsilon"], **_act(a))
    elif op is Op.INSTANCE_NORM:
        out = ref.instance_norm(*ins, epsilon=a["epsilon"], **_act(a))
    elif op in UNARY:
        out = ref.unary(op.value, ins[0], **a)
    elif op in BINARY:
        out = ref.binary(op.value, ins[0], ins[1], **_act(a))
    elif op is Op.PRELU:
        out = ref.prelu(*ins)
    elif op in (Op.REDUCE_MEAN, Op.REDUCE_SUM):
        out = ref.reduce(op.value, ins[0], a["axes"], a["keepdims"])
    elif op is Op.PAD:
        out = ref.pad(ins[0], a["pads"], a["mode"], a["value"])
    elif op is Op.RESIZE:
        out = ref.resize(ins[0], a["size"], a["mode"], a["coordinate_mode"], a["nearest_mode"],
                         a["scales"])
    elif op is Op.MAX_POOL:
        out = ref.max_pool(ins[0], a["kernel"], a["strides"], a["pads"], a["dilations"])
    elif op is Op.AVG_POOL:
        out = ref.avg_pool(ins[0], a["kernel"], a["strides"], a["pads"], a["count_include_pad"])
    elif op is Op.GLOBAL_AVG_POOL:
        out = ref.global_avg_pool(ins[0])
    elif op is Op.CONCAT:
        out = np.concatenate(ins, axis=a["axis"])
    elif op is Op.RESHAPE:
        out = ins[0].reshape(a["shape"])
    elif op is Op.TRANSPOSE:
        out = ref.transpose(ins[0], a["perm"])
    elif op is Op.SLICE:
        out = np.ascontiguousarray(ins[0][slice_index(node, ins[0].shape)])
    elif op is Op.GATHER:
        out = np.take(ins[0], ins[1], axis=a["axis"])
    elif op is Op.CAST:
        out = ref.cast(ins[0], a["to"])
    elif op is Op.GEMM:
        out = ref.gemm(*ins, alpha=a["alpha"], beta=a["beta"], trans_a=a["trans_a"],
                       trans_b=a["trans_b"], **_act(a))
    elif op is Op.MATMUL:
        out = ref.matmul(*ins, **_act(a))
    elif op is Op.SOFTMAX:
        out = ref.softmax(ins[0], a["axis"])
    else:
        raise UnsupportedOperatorError(f"node {node.name!r}: no reference for {op.name}")
    return [np.asarray(out)]


def run_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every graph output, computed node by node with the numpy references."""
    values: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    for name in graph.inputs:
        if name not in feeds:
            raise InputError(f"input {name!r} is missing from the feeds")
        values[name] = np.asarray(feeds[name])
    for node in graph.nodes:
        outs = evaluate(node, [values[i] if i else None for i in node.inputs])
        for name, value in zip(node.outputs, outs):
            t = graph.tensors[name]
            values[name] = value.astype(t.dtype.np, copy=False).reshape(t.shape)
    return {o: values[o] for o in graph.outputs}
