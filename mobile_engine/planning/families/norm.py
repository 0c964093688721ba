"""Normalisation family: INSTANCE_NORM (run-time statistics) and standalone BATCH_NORM.

Kernel ids:

- ``f32_instance_norm_nhwc[_<epilogue>]``: two passes per image (kernels/f32_norm.py); scale and
  bias are weights (``scale``, ``bias``) when constant, run-time tensors otherwise, or computed
  in the step from a style vector (``passes/fusions/style_chain.py``; weights
  ``style_scale``/``style_bias``);
  param ``inputs`` tags the run-time inputs after x; "residual" (last) when the norm absorbed
  the residual ADD after it (``passes/fusions/norm_add.py``): the step writes the ADD's output,
  ``act_add(norm(x) + residual)``, with the ADD's activation
- ``f32_instance_norm_nchw[_<epilogue>]``: the same over planar tensors (``layout`` "nchw")
- none when the producing conv absorbs the norm (``f32_conv2d_igemm_{MR}x{NR}_instnorm[_<epilogue>]``,
  ``passes/fusions/conv_norm.py``)
- ``f32_batch_norm_nhwc[_<epilogue>]``: constant params folded at compile time into the
  per-channel affine ``a = scale / sqrt(var + eps)``, ``b = bias - mean * a`` (weights ``a``,
  ``b``); one pass
- ``f32_batch_norm_nhwc_rt[_<epilogue>]``: some param is computed at run time; the affine is
  recomputed (C values) before the pass on every run
"""
from __future__ import annotations

import numpy as np

from kernels import f32_norm as knorm
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families.elementwise import EPILOGUES, activation
from mobile_engine.ir import fusion
from mobile_engine.planning.step import Step, lowers, runtime_inputs


def _check_f32(node: Node, graph: Graph) -> None:
    for name in node.inputs:
        if name and graph.tensors[name].dtype.np != np.float32:
            raise UnsupportedOperatorError(
                f"node {node.name!r} ({node.op.name}): input {name!r} is "
                f"{graph.tensors[name].dtype.value}; only float32 has a kernel")


def _f32(consts: dict) -> dict:
    return {k: np.ascontiguousarray(v, np.float32) for k, v in consts.items()}


# --- style-computed scale and bias ---------------------------------------------------------------
# NOTE: multistyle26 computes every norm's scale and bias as REDUCE_SUM(MUL(u[K, 1], G[K, C]),
# axis 0) from the style vector u: 72 tiny steps (~1.5 us each) and two kernels to load at
# start. A norm lowered here takes u and G instead and its kernel computes ``u @ G`` (f32_norm
# ``style_matvec``, K * C MACs) before normalising; the MUL and REDUCE_SUM lower to nothing
# (their lowerings are wrapped below, as the int8 families wrap theirs).
def norm_inputs(node: Node, graph: Graph, prefix: str = ""):
    """(run-time input names after x, their tags, weights) for a norm's scale and bias: tags
    "scale"/"bias" (run-time tensors) or "style_scale"/"style_bias" (the style vector; weight
    ``{prefix}style_<what>`` holds G); constants become weights ``{prefix}<what>``."""
    names, tags, weights = [], [], {}
    for i, what in ((1, "scale"), (2, "bias")):
        src = fusion.fusion(node).get(f"style_{what}")        # [u, G]
        data = graph.const(node.inputs[i])
        if src is not None:
            names.append(src[0])
            tags.append(f"style_{what}")
            weights[f"{prefix}style_{what}"] = np.ascontiguousarray(graph.const(src[1]),
                                                                     np.float32)
        elif data is None:
            names.append(node.inputs[i])
            tags.append(what)
        else:
            weights[f"{prefix}{what}"] = np.ascontiguousarray(data, np.float32)
    return names, tags, weights


@lowers(Op.INSTANCE_NORM)
def lower_instance_norm(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    names, tags, weights = norm_inputs(node, graph)
    record = fusion.fusion(node)
    outputs = list(node.outputs)
    act, p0, p1 = activation(node)
    shape = graph.tensors[node.inputs[0]].shape
    flops = 6 * int(np.prod(shape, dtype=np.int64))
    if "add" in record:
        add = graph.node(record["add"])
        names.append(record["residual"])
        tags.append("residual")
        outputs = list(add.outputs)
        act, p0, p1 = activation(add)
        flops += int(np.prod(shape, dtype=np.int64))
    params = {"epsilon": float(node.attrs["epsilon"]), "act": act, "p0": p0, "p1": p1,
              "inputs": tags}
    kernel = f"f32_instance_norm_{node.attrs['layout']}{EPILOGUES[act]}"
    # two passes: ~3 flops to accumulate, 3 to normalise, per element
    return [Step(node.name, kernel, [node.inputs[0]] + names, outputs, params, weights, flops)]


@lowers(Op.BATCH_NORM)
def lower_batch_norm(node: Node, graph: Graph) -> list[Step]:
    _check_f32(node, graph)
    names, consts = runtime_inputs(node, graph)
    act, p0, p1 = activation(node)
    eps = float(node.attrs["epsilon"])
    params = {"epsilon": eps, "act": act, "p0": p0, "p1": p1}
    flops = 2 * int(np.prod(graph.tensors[node.inputs[0]].shape, dtype=np.int64))
    if all(f"in{i}" in consts for i in range(1, 5)):
        a, b = knorm.batch_norm_fold(*(consts[f"in{i}"] for i in range(1, 5)), eps)
        return [Step(node.name, f"f32_batch_norm_nhwc{EPILOGUES[act]}", names,
                     list(node.outputs), params, {"a": a, "b": b}, flops=flops)]
    return [Step(node.name, f"f32_batch_norm_nhwc_rt{EPILOGUES[act]}", names,
                 list(node.outputs), params, _f32(consts), flops=flops)]
