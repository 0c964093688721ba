"""absorb_upsample: a nearest RESIZE by an integer factor k feeding a CONV2D -> CONV2D(upsample=k).

Math: the conv's ``upsample`` is ``x.repeat(k, H).repeat(k, W)`` applied before its own padding,
so ``conv(resize(x), pads) == conv(x, pads, upsample=k)`` whenever the RESIZE is exactly that
repeat. Whether it is depends on the coordinate and nearest modes; rather than trusting a table,
the legality check evaluates the reference's index rule (``resize_axis_weights``) for this H, W
and k and compares it with ``arange(k * n) // k``. Measured (sizes 1..64, tested in
tests/test_passes.py): exact for every k with asymmetric + floor, half_pixel and
pytorch_half_pixel + round_prefer_floor/round_prefer_ceil, tf_half_pixel_for_nn + floor; for
k = 2 only, also asymmetric + round_prefer_floor and align_corners + round_prefer_*; never with
ceil, or floor on half-pixel centres.

Order: runs after absorb_pad, so RESIZE -> PAD -> CONV has become RESIZE -> CONV(pads), and the
conv's pads apply after its upsampling, as in the graph.

Legality: RESIZE mode nearest, output size (k*H, k*W) with the same integer k >= 2 on both axes,
its indices equal the repeat pattern; its output has one user, the conv's data input, and is
not a graph output; the conv has ``upsample == 1``.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.interpret import resize_axis_weights, resize_is_general
from mobile_engine.ir.ops import Op
from mobile_engine.passes._match import Index, rewrite_matches


def is_repeat(size: int, k: int, scale: float, coordinate_mode: str, nearest_mode: str) -> bool:
    """True when nearest resizing of ``size`` to ``k * size`` picks index ``i // k``."""
    idx, _, _ = resize_axis_weights(size, k * size, scale, "nearest", coordinate_mode,
                                        nearest_mode)
    return bool(np.array_equal(idx, np.arange(k * size) // k))


def factor(graph: Graph, resize: Node) -> int | None:
    """The integer upsampling factor of ``resize`` when it is an exact nearest repeat."""
    a = resize.attrs
    if a["mode"] != "nearest" or resize_is_general(a):
        return None
    _, h, w, _ = graph.tensors[resize.inputs[0]].shape
    oh, ow = a["size"]
    if oh % h or ow % w or oh // h != ow // w or oh // h < 2:
        return None
    k = oh // h
    sh, sw = a["scales"] if a["scales"] else (oh / h, ow / w)
    if not (is_repeat(h, k, sh, a["coordinate_mode"], a["nearest_mode"])
            and is_repeat(w, k, sw, a["coordinate_mode"], a["nearest_mode"])):
        return None
    return k


def match(graph: Graph, resize: Node, index: Index) -> tuple[Node, int] | None:
    if resize.op is not Op.RESIZE:
        return None
    conv = index.sole_user(resize.outputs[0])
    if conv is None or conv.op is not Op.CONV2D or conv.inputs[0] != resize.outputs[0] \
            or resize.outputs[0] in conv.inputs[1:] or conv.attrs["upsample"] != 1:
        return None
    k = factor(graph, resize)
    return None if k is None else (conv, k)


def rewrite(graph: Graph, resize: Node, conv: Node, k: int) -> None:
    conv.attrs["upsample"] = k
    conv.inputs[0] = resize.inputs[0]
    graph.remove_node(resize)
    del graph.tensors[resize.outputs[0]]


def run(graph: Graph) -> int:
    return rewrite_matches(graph, match, rewrite)
