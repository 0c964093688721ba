"""absorb_pad: PAD (NHWC, H and W only) -> CONV2D becomes a CONV2D doing the padding.

Math: with ``PAD`` pads ``(0, t, l, 0, 0, b, r, 0)`` in mode M and conv pads ``(t', l', b', r')``::

    conv(pad(x, (t, l, b, r), M), pads=(t', l', b', r'), M)
        == conv(x, pads=(t+t', l+l', b+b', r+r'), M)

which holds for zero padding and for edge padding (padding the border value twice is padding it
once by the sum), but NOT for reflect: reflect(reflect(x, 1), 1) repeats x[0] ([a b a b c ...])
where reflect(x, 2) gives [c b a b c ...]. So reflect pads are absorbed only into a conv
without pads of its own.

Legality: the PAD is 4-D, pads N and C by 0, mode constant with value 0, reflect or edge; its
output has one user, the conv's data input, and is not a graph output; the conv's pads are zero
or (for constant/edge) its ``pad_mode`` equals the PAD's mode; the conv has ``upsample == 1``
(a conv upsamples before padding, the graph padded first); reflect pads are smaller than the
input's H and W.
"""
from __future__ import annotations

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes._match import Index, rewrite_matches


def match(graph: Graph, pad: Node, index: Index) -> Node | None:
    """The conv that ``pad`` can be absorbed into, or None."""
    if pad.op is not Op.PAD:
        return None
    conv = index.sole_user(pad.outputs[0])
    if conv is None or conv.op is not Op.CONV2D or conv.inputs[0] != pad.outputs[0] \
            or pad.outputs[0] in conv.inputs[1:]:
        return None
    a, c = pad.attrs, conv.attrs
    pads, mode = a["pads"], a["mode"]
    if len(pads) != 8 or pads[0] or pads[3] or pads[4] or pads[7] or min(pads) < 0:
        return None
    if mode == "constant" and a["value"] != 0.0 or mode not in ("constant", "reflect", "edge"):
        return None
    if c["upsample"] != 1:
        return None
    if any(c["pads"]) and (mode == "reflect" or c["pad_mode"] != mode):
        return None
    _, h, w, _ = graph.tensors[pad.inputs[0]].shape
    if mode == "reflect" and (max(pads[1], pads[5]) >= h or max(pads[2], pads[6]) >= w):
        return None
    return conv


def rewrite(graph: Graph, pad: Node, conv: Node) -> None:
    p = pad.attrs["pads"]
    t, l, b, r = conv.attrs["pads"]
    conv.attrs["pads"] = (t + p[1], l + p[2], b + p[5], r + p[6])
    conv.attrs["pad_mode"] = pad.attrs["mode"]
    conv.inputs[0] = pad.inputs[0]
    graph.remove_node(pad)
    del graph.tensors[pad.outputs[0]]


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
