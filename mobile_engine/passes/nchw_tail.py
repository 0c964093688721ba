"""nchw_tail: a few-channel tail ending in an NHWC -> NCHW transpose computes planar instead.

Pattern: ``TRANSPOSE(t, perm=(0, 3, 1, 2))`` where ``t`` is written by a planar-capable producer:

- CONV2D that the pixel-lane kernel runs (kernels/f32_conv2d_pix.py: group 1, Co <= 8, column
  stride 1), float32, with no residual input: it can write NCHW (``out_layout``) whatever its
  input's layout, and reads NCHW (``in_layout``) when its input can be made planar in turn;
- INSTANCE_NORM: planar in, planar out (``layout``), so its input must be made planar too.

The rewrite walks up from ``t`` through such producers; the producer of ``t`` then writes the
transpose's output itself, the transpose disappears, and every converted intermediate tensor
takes its NCHW shape. On multistyle26 the three expand convs and their norms run planar: the
final transpose (a pass over the output image) is gone, and the few-channel convs read and
write whole planar rows instead of scattering 3 or 4 channels per pixel.

Math: layout is a storage order only: ``transpose(f(x)) == f_nchw(transpose(x))`` for these
ops, so values are unchanged.

Legality: every converted tensor is read by exactly one node (the one converted after it) and is
not a graph output; tensors with quantization parameters are left alone.

int8 compiles run it on the float graph, before calibration and quantize_int8, which leaves the
planar nodes float (the int8 kernels are NHWC): the float tail kernels are faster there than
the int8 tiles (quantize_int8.FLOAT_MAX_CO). In a pre-quantized (QDQ) model it runs after
fold_qdq, on what stays float (compiler.optimized_graph).
"""
from __future__ import annotations

from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.passes._match import Index
from mobile_engine.passes._reach import pixel_lane_conv

TO_NCHW = (0, 3, 1, 2)


def _float(graph: Graph, name: str) -> bool:
    t = graph.tensors[name]
    return t.dtype is DType.FLOAT32 and t.quant is None


def pixel_conv(graph: Graph, node: Node) -> bool:
    """A CONV2D the pixel-lane kernel runs, writing NHWC now, without a residual."""
    if node.op is not Op.CONV2D or node.attrs["out_layout"] != "nhwc":
        return False
    w = graph.const(node.inputs[1])
    if w is None or w.ndim != 4 or (len(node.inputs) > 3 and node.inputs[3]):
        return False
    return pixel_lane_conv(w.shape[0], node.attrs["group"], node.attrs["strides"][1]) and \
        _float(graph, node.inputs[0]) and _float(graph, node.outputs[0])


def conversions(graph: Graph, index: Index, tensor: str, reader: Node) -> list[Node] | None:
    """The producers to switch so that ``tensor`` (read only by ``reader``) is planar, upstream
    first; None when impossible."""
    if tensor in graph.outputs or tensor in graph.inputs or index.consumers(tensor) != [reader]:
        return None
    p = index.producer(tensor)
    if p is None or len(p.outputs) != 1:
        return None
    if p.op is Op.INSTANCE_NORM and p.attrs["layout"] == "nhwc" and _float(graph, tensor):
        up = conversions(graph, index, p.inputs[0], p)
        return None if up is None else up + [p]
    if pixel_conv(graph, p):
        return (conversions(graph, index, p.inputs[0], p) or []) + [p]
    return None


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[i] for i in TO_NCHW)


def rewrite(graph: Graph, transpose: Node, nodes: list[Node]) -> None:
    planar = set()                        # tensors now stored NCHW
    for node in nodes:
        if node.op is Op.INSTANCE_NORM:
            node.attrs["layout"] = "nchw"
        else:
            node.attrs["in_layout"] = "nchw" if node.inputs[0] in planar else "nhwc"
            node.attrs["out_layout"] = "nchw"
        out = node.outputs[0]
        if node is nodes[-1]:             # writes the transpose's output directly
            node.outputs = [transpose.outputs[0]]
            del graph.tensors[out]
        else:
            graph.tensors[out].shape = _nchw(graph.tensors[out].shape)
            planar.add(out)
    graph.nodes = [n for n in graph.nodes if n is not transpose]


def match(graph: Graph, node: Node, index: Index) -> list[Node] | None:
    if node.op is not Op.TRANSPOSE or tuple(node.attrs["perm"]) != TO_NCHW:
        return None
    if len(graph.tensors[node.inputs[0]].shape) != 4:
        return None
    return conversions(graph, index, node.inputs[0], node)


def run(graph: Graph) -> int:
    count = 0
    index = Index(graph)
    for node in list(graph.nodes):
        nodes = match(graph, node, index)
        if nodes:
            rewrite(graph, node, nodes)
            index = Index(graph)
            count += 1
    return count
