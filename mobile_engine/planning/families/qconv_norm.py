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

``passes/fusions/int8_conv_norm.py`` decides (and states the legality); the conv's record
names the norm ("norm"); the norm lowers to ``f32_instance_norm_nhwc_qu8`` or ``..._add_qu8``.

Step contract: inputs [x, the norm step's inputs after its x]; outputs [the norm's (or ADD's)
uint8 output, the conv's float32 output (arena scratch: nothing else reads it; it holds the
conv's values after the step)]; params and
weights: the conv step's, and the norm step's prefixed ``norm_``.
"""
from __future__ import annotations


from kernels import table
from mobile_engine.errors import EngineError
from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.families import qconv, qelementwise as qew
from mobile_engine.planning.step import Step, lowers_int8

# the norm step kernel absorbed -> the suffix of the fused step's kernel id
KERNELS = {qew.NORM_QU8: "", qew.NORM_ADD_QU8: "_add"}
IGEMM = "qu8_conv2d_igemm_{mr}x{nr}c4_{epilogue}"         # the kernel rows that absorb a norm


@lowers_int8(Op.CONV2D)
def lower_int8_conv2d(node: Node, graph: Graph) -> list[Step]:
    """A quantized conv's step, extended by the norm it absorbed (record "norm")."""
    if "norm" not in fusion.fusion(node):
        return qconv.lower_qconv2d(node, graph)
    (norm_step,) = qew.lower_qinstance_norm(graph.node(fusion.fusion(node)["norm"]), graph)
    (step,) = qconv.lower_qconv2d(node, graph)
    row, f = table.TABLE.get(step.kernel, (None, {}))
    if row is None or row.grammar != IGEMM or f["epilogue"] != "fp32out":
        raise EngineError(f"node {node.name!r}: its int8 kernel {step.kernel!r} cannot absorb "
                          f"the norm that passes/fusions/int8_conv_norm.py fused into it")
    step.kernel = qconv.qconv.instnorm_kernel_id(f["mr"], f["nr"], KERNELS[norm_step.kernel])
    step.inputs = step.inputs + norm_step.inputs[1:]
    step.outputs = norm_step.outputs + step.outputs
    step.params.update({f"norm_{k}": val for k, val in norm_step.params.items()})
    step.weights.update({f"norm_{k}": val for k, val in norm_step.weights.items()})
    step.flops += norm_step.flops
    return [step]

