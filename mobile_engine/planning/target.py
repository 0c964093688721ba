"""The kernel target the kernel-fusion passes ask (``passes/fusions/target.py``): answers from
the lowerings' kernel choices, so that the passes import no kernels."""
from __future__ import annotations

from kernels import f32_norm_qu8 as knq
from kernels.activation import Activation as KernelActivation
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation
from mobile_engine.planning.families.conv import kernel_family, runs_winograd
from mobile_engine.planning.families.elementwise import activation
from mobile_engine.planning.families.qconv import int8_kernel_family
from mobile_engine.planning.families.qelementwise import lower_qinstance_norm

# the IR keeps its own activation enum (it imports no kernels); planning is where the two meet
assert {a.name: int(a) for a in Activation} == {a.name: int(a) for a in KernelActivation}, \
    "mobile_engine.ir.ops.Activation and kernels.activation.Activation disagree"


class Target:
    """This engine's kernels, as ``passes.fusions.target.KernelTarget``."""

    conv_kernel = staticmethod(kernel_family)
    conv_winograd = staticmethod(runs_winograd)
    int8_conv_kernel = staticmethod(int8_kernel_family)

    @staticmethod
    def int8_norm_fuses(norm: Node) -> bool:
        act, p0, p1 = activation(norm)
        return knq.fusable(act, (p0, p1))

    @staticmethod
    def int8_norm_inputs(norm: Node, graph: Graph) -> list[str] | None:
        try:
            steps = lower_qinstance_norm(norm, graph)
        except UnsupportedOperatorError:
            return None                     # the norm's own lowering raises, naming it
        if len(steps) != 1 or steps[0].kernel not in (knq.NORM_QU8, knq.NORM_ADD_QU8):
            return None
        return steps[0].inputs[1:]


TARGET = Target()
