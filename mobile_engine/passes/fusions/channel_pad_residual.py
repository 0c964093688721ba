"""Channel-padded residual: a conv whose residual is ``PAD(r)``, zeros appended on the channel
axis only, adds ``r`` itself to its first ``Cr`` output channels, so the PAD (a copy of the
whole tensor per block) disappears. BlazeFace-style blocks (MediaPipe's face and palm
detectors, face landmark) widen their channels this way: ``relu(conv1x1(dw(x)) + pad_c(x))``.

Math: ``pad_c(r)[.., c] = r[.., c]`` for ``c < Cr`` and ``0`` for ``Cr <= c < Co``, so
``conv(x) + pad_c(r) == conv(x) + r`` on channels ``[0, Cr)`` and ``conv(x)`` on the rest.
Legal when the PAD is constant mode with value 0 and pads only the end of the last (channel)
axis of a 4-d NHWC tensor; its output is read only by the conv (as the residual) and is not a
graph output; ``r`` is a plain float32 run-time tensor; the conv is plain float32 with NHWC
input and output, carries no other fusion, and runs the igemm kernel (whose epilogue reads a
residual of ``Cr <= Co`` channels; not Winograd).
Marks: the PAD ``fused_into`` the conv; the conv's record: "channel_pad_residual" = r.
"""
from __future__ import annotations

from mobile_engine.ir import fusion
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes.fusions.common import absorb_per_conv, plain, plain_float, sole_reader
from mobile_engine.passes.fusions.target import KernelTarget

RESIDUAL = 3        # the CONV2D's inputs: x, w, bias, residual


def channel_pad(pad: Node, graph: Graph) -> bool:
    """``pad`` appends zeros to the last axis of a 4-d tensor and pads nothing else."""
    pads, rank = tuple(pad.attrs["pads"]), len(graph.tensors[pad.inputs[0]].shape)
    return (rank == 4 and pad.attrs["mode"] == "constant" and float(pad.attrs["value"]) == 0.0
            and len(pads) == 2 * rank and not any(pads[:2 * rank - 1]) and pads[-1] > 0
            and all(not n for n in pad.inputs[1:]))


def padded_residual(conv: Node, graph: Graph, target: KernelTarget) -> tuple[Node, str] | None:
    """(the PAD, its unpadded input) that ``conv`` adds instead of its residual, or None."""
    if conv.op is not Op.CONV2D or len(conv.inputs) <= RESIDUAL or not conv.inputs[RESIDUAL] \
            or fusion.fusion(conv) or conv.attrs["in_layout"] != "nhwc" \
            or conv.attrs["out_layout"] != "nhwc" or not plain_float(graph, conv):
        return None
    res = conv.inputs[RESIDUAL]
    pad = graph.producer(res)
    if pad is None or pad.op is not Op.PAD or not sole_reader(graph, res, conv) \
            or conv.inputs.count(res) != 1 or not channel_pad(pad, graph):
        return None
    src = graph.tensors[pad.inputs[0]]
    x, w = graph.tensors[conv.inputs[0]], graph.const(conv.inputs[1])
    if src.is_const or not plain(graph, src.name) or w is None or w.ndim != 4:
        return None
    family = target.conv_kernel(x.shape[3], w.shape[0], conv.attrs["group"], w.shape[2],
                                w.shape[3], conv.attrs["strides"][1])
    if family != "igemm" or target.conv_winograd(conv, graph):
        return None
    return pad, src.name


def run(graph: Graph, target: KernelTarget) -> int:
    return absorb_per_conv(graph, lambda conv: padded_residual(conv, graph, target),
                           "channel_pad_residual")
