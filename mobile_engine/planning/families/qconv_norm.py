"""A quantized conv whose float32 output only an instance norm with a uint8 output reads: one step.

``qu8_conv2d_igemm_{MR}x{NR}c4_instance_norm[_add]``: the igemm conv with the ``fp32out``
epilogue (families/qconv.py) also writes each output row's per-channel sums of y and y^2
(kernels/qu8_conv2d.py ``sums``), then the norm (families/qelementwise.py
``f32_instance_norm_nhwc[_add]_qu8``, kernels/f32_norm_qu8.py) normalises and quantizes from
those sums, skipping its statistics pass: the float tensor is written once and read once, and
the norm's step (and the residual ADD fused into it, ``_add``) disappears.

NOTE: a norm + add with a float32 output (``f32_instance_norm_nhwc_add_qu8_fp32out``,
multistyle26's res.5.1 before the float tail) is not fused: from the row sums it still takes
two float passes (the float norm into the output, then the residual), and measured fused it
cost as much as apart (1.52 vs 1.45 ms CPU at 480x640).

Legal when the conv lowers to the igemm kernel with a float32 output and no activation, its
output is read only by the INSTANCE_NORM (as x) and is not a graph output, the norm lowers to
``f32_instance_norm_nhwc_qu8`` or ``..._add_qu8`` with a none/relu/clamp activation, and
every run-time input of the norm's step (scale, bias or their style vector, the residual)
exists before the conv runs (the step runs at the conv).

Step contract: inputs [x, the norm step's inputs after its x]; outputs [the norm's (or ADD's)
uint8 output, the conv's float32 output (arena scratch: nothing else reads it; it holds the
conv's values after the step)]; params and
weights: the conv step's, and the norm step's prefixed ``norm_``.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning.families import qconv, qelementwise as qew
from mobile_engine.planning.families.conv import available_before
from mobile_engine.planning.step import LOWERINGS, Step

# the norm step kernel absorbed -> the suffix of the fused step's kernel id
KERNELS = {qew.NORM_QU8: "", qew.NORM_ADD_QU8: "_add"}


def fused_qnorm(conv: Node, graph: Graph) -> Node | None:
    """The INSTANCE_NORM that runs inside quantized ``conv``'s step, or None (see above)."""
    if conv.op is not Op.CONV2D or not qconv.is_quantized(conv, graph) or \
            conv.attrs["activation"] is not Activation.NONE:
        return None
    out = conv.outputs[0]
    t = graph.tensors[out]
    users = graph.consumers(out)
    if t.quant is not None or t.dtype.np != np.float32 or graph.is_output(out) or \
            len(users) != 1 or users[0].op is not Op.INSTANCE_NORM:
        return None
    norm = users[0]
    if norm.inputs[0] != out or out in norm.inputs[1:] or \
            norm.attrs.get("layout", "nhwc") != "nhwc" or not qew._lowered_here(norm, graph):
        return None
    x, w = graph.tensors[conv.inputs[0]], graph.tensors[conv.inputs[1]]
    if len(x.shape) != 4 or w.data is None or w.data.ndim != 4:
        return None
    co, _, kh, kw = w.data.shape
    if qconv.uses_dwconv(conv.attrs["group"], x.shape[3], co, kh, kw):
        return None
    act, p0, p1 = qew.activation(norm)
    if not qew.knq.fusable(act, (p0, p1)):
        return None
    return norm


def _norm_step(norm: Node, graph: Graph) -> Step | None:
    try:
        steps = qew.lower_qinstance_norm(norm, graph)
    except UnsupportedOperatorError:
        return None                     # the norm's own lowering raises, naming it
    if len(steps) != 1 or steps[0].kernel not in KERNELS:
        return None
    return steps[0]


def _fusion(conv: Node, graph: Graph) -> Step | None:
    """The norm step ``conv`` absorbs, when legal and its inputs exist before ``conv``."""
    norm = fused_qnorm(conv, graph)
    step = _norm_step(norm, graph) if norm is not None else None
    if step is None or not all(available_before(graph, name, conv) for name in step.inputs[1:]):
        return None
    return step


def norm_fused_into_qconv(norm: Node, graph: Graph) -> bool:
    p = graph.producer(norm.inputs[0]) if norm.inputs else None
    return p is not None and fused_qnorm(p, graph) is norm and _fusion(p, graph) is not None


_lower_conv = LOWERINGS[Op.CONV2D]
_lower_norm = LOWERINGS[Op.INSTANCE_NORM]


def lower_conv_with_norm(node: Node, graph: Graph) -> list[Step]:
    norm_step = _fusion(node, graph) if node.op is Op.CONV2D else None
    if norm_step is None:
        return _lower_conv(node, graph)
    (step,) = qconv.lower_qconv2d(node, graph)
    prefix, epilogue = step.kernel.rsplit("_", 1)
    if not prefix.startswith("qu8_conv2d_igemm_") or epilogue != "fp32out":
        return [step]                       # NOTE: unreachable while fused_qnorm mirrors it
    mr, nr = (int(v_) for v_ in prefix.split("_igemm_")[1].split("c4")[0].split("x"))
    step.kernel = qconv.qconv.instnorm_kernel_id(mr, nr, KERNELS[norm_step.kernel])
    step.inputs = step.inputs + norm_step.inputs[1:]
    step.outputs = norm_step.outputs + step.outputs
    step.params.update({f"norm_{k}": val for k, val in norm_step.params.items()})
    step.weights.update({f"norm_{k}": val for k, val in norm_step.weights.items()})
    step.flops += norm_step.flops
    return [step]


def _lower_norm_unless_absorbed(node: Node, graph: Graph) -> list[Step]:
    if norm_fused_into_qconv(node, graph):
        return []                           # computed by the conv's step
    return _lower_norm(node, graph)


LOWERINGS[Op.CONV2D] = lower_conv_with_norm
LOWERINGS[Op.INSTANCE_NORM] = _lower_norm_unless_absorbed
