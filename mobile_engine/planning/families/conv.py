"""Convolutions: CONV2D and CONV_TRANSPOSE2D (fp32, NHWC; kernels/f32_conv2d.py and friends).

Kernel selection per node:
- depthwise (group == C > 1, KH * KW <= MAX_TAPS): ``f32_dwconv2d_minmax``;
- few output channels (group 1, Co <= 8) and column stride 1: ``f32_conv2d_pix[up2]_{PX}x{Co}_minmax``
  (lanes over output pixels, kernels/f32_conv2d_pix.py; weight ``w`` = the folded weight bank;
  params ``in_nchw``, ``out_nchw`` and the geometry (``geometry_params``), from which the binder
  rebuilds the row and column plans: tens of KB at 480x640, derived in milliseconds); the
  only kernel for the planar layouts (``in_layout``/``out_layout`` "nchw");
- few output channels otherwise: ``f32_conv2d_kdot4_{MR}x{4*CG}_minmax`` (weights ``w``
  = the kernel-row runs, ``wtap`` = per-tap quads, from ``pack_weights_kdot``);
- everything else, grouped or not: ``f32_conv2d_igemm_{MR}x{NR}_minmax`` with (MR, NR) from
  ``choose_tile(Co / group)``;
- transposed: ``f32_conv_transpose2d_igemm_{MR}x{NR}_minmax`` (the igemm kernel over
  zero-stuffed indirection tables, ``step`` = stride W);
- an igemm conv read only by an instance norm (``fused_norm``):
  ``f32_conv2d_igemm_{MR}x{NR}_instnorm[_add][_<epilogue>]``, one step: the conv with the norm's
  statistics in its epilogue, then the norm in place (and a residual ADD after it,
  ``fused_add``); the norm (and ADD) lower to nothing. Params ``norm_epsilon``, ``norm_act``,
  ``norm_p0``, ``norm_p1``, ``norm_inputs`` (what the inputs after x and the conv's residual
  are: "scale", "bias" (run-time tensors), "style_scale", "style_bias" (the style vector whose
  product with weight ``norm_style_scale``/``norm_style_bias`` gives it, families/norm.py
  ``style_source``), "residual" (the ADD's other operand)); weights ``norm_scale``/``norm_bias``
  when constant;
- a conv (igemm or pix) whose input is an NCHW -> NHWC TRANSPOSE read only by it reads the
  NCHW tensor itself (``absorbed_transpose``, param ``in_nchw``; igemm weights packed
  ``[.., KH, C/g, KW, NR]``); the TRANSPOSE lowers to nothing.

NOTE: the fusions above happen at lowering, not as IR passes: they only apply to plain float32
tensors, so int8 plans (whose rewrite reads the optimised float IR and matches CONV2D ->
INSTANCE_NORM -> ADD and the style Mul/ReduceSum) see the graph unchanged.

Step contract (JSON-able params, weight blobs):
    inputs  [x] or [x, residual]   (runtime tensors, NHWC)
    weights w (packed), bias f32[Co] (zeros when absent), rowmap i32[OH, KH], colmap i32[OW, KW],
            and ``residual`` when the residual is a constant
    params  group, step, act (Activation int), act_params [p0, p1] (floats; CLAMP's may be
            +-inf), has_residual (bool), mult (depthwise multiplier), work (MACs: the binder runs
            the serial variant below ``config.PARALLEL_MIN_WORK``)
    flops   2 * MACs
"""
from __future__ import annotations

import numpy as np

from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv_transpose2d as convt
from kernels import f32_dwconv2d as dw
import mobile_engine.planning.families.layout  # noqa: F401  (TRANSPOSE's lowering, wrapped)
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning.families.elementwise import EPILOGUES, activation
from mobile_engine.planning.step import LOWERINGS, Step, lowers

F32 = np.float32


def _fail(node: Node, why: str) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"node {node.name!r} ({node.op.name}): {why}")


def _const(node: Node, graph: Graph, index: int, what: str) -> np.ndarray | None:
    """Constant input ``index`` as float32, None when omitted; raises when it is computed."""
    name = node.inputs[index] if index < len(node.inputs) else ""
    if not name:
        return None
    data = graph.const(name)
    if data is None:
        raise _fail(node, f"{what} {name!r} {graph.tensors[name].shape} is computed at run "
                          f"time; the fp32 conv kernels need it constant")
    return np.ascontiguousarray(data, F32)


def _common(node: Node, graph: Graph):
    """(x name, x shape, out name, out shape, weights, bias) after the fp32 checks."""
    x = graph.tensors[node.inputs[0]]
    if x.dtype is not DType.FLOAT32:
        raise _fail(node, f"input {x.name!r} is {x.dtype.value} {x.shape}; these kernels are fp32")
    if x.is_const:
        raise _fail(node, f"input {x.name!r} is a constant; fold the node first")
    w = _const(node, graph, 1, "weight")
    bias = _const(node, graph, 2, "bias")
    out = graph.tensors[node.outputs[0]]
    return x.name, x.shape, out.name, out.shape, w, bias


def _act_params(node: Node) -> tuple[int, list[float]]:
    act = int(node.attrs["activation"])
    try:
        return act, list(igemm.activation_params(act, node.attrs["act_params"]))
    except ValueError as exc:
        raise _fail(node, str(exc)) from None


def kernel_family(c: int, co: int, group: int, kh: int, kw: int, stride_w: int) -> str:
    """Which kernel a conv runs: "dw", "pix", "kdot" or "igemm" (the selection rules above)."""
    if group == c and c > 1 and kh * kw <= dw.MAX_TAPS:
        return "dw"
    if pix.applicable(co, group, stride_w):
        return "pix"
    return "kdot" if igemm.use_kdot(co, group) else "igemm"


def _plain_float(graph: Graph, node: Node) -> bool:
    return all(graph.tensors[n].dtype is DType.FLOAT32 and graph.tensors[n].quant is None
               for n in node.inputs + node.outputs if n)


def fused_norm(conv: Node, graph: Graph) -> Node | None:
    """The INSTANCE_NORM that runs inside ``conv``'s step, or None.

    An igemm conv whose only reader is an NHWC instance norm computes the norm's statistics in
    its epilogue (kernels/f32_conv2d.py ``sums``) and the step then normalises the conv's
    output in place: the norm's statistics pass and the pre-norm tensor disappear. Legal when
    the conv has no activation, its output is read only by the norm (as ``x``) and is not a
    graph output, every tensor involved is plain float32 (int8 plans keep their own norm
    lowerings), and run-time scale/bias are computed before the conv."""
    if conv.op is not Op.CONV2D or conv.attrs["activation"] is not Activation.NONE or \
            conv.attrs["in_layout"] != "nhwc" or conv.attrs["out_layout"] != "nhwc":
        return None
    out = conv.outputs[0]
    users = graph.consumers(out)
    if len(users) != 1 or graph.is_output(out):
        return None
    norm = users[0]
    if norm.op is not Op.INSTANCE_NORM or norm.attrs["layout"] != "nhwc" or \
            norm.inputs[0] != out or out in norm.inputs[1:]:
        return None
    w = graph.const(conv.inputs[1])
    x = graph.tensors[conv.inputs[0]]
    if w is None or w.ndim != 4 or len(x.shape) != 4 or x.is_const:
        return None
    if kernel_family(x.shape[3], w.shape[0], conv.attrs["group"], w.shape[2], w.shape[3],
                     conv.attrs["strides"][1]) != "igemm":
        return None
    if not (_plain_float(graph, conv) and _plain_float(graph, norm)):
        return None
    if any(not _plain_float(graph, u) for u in graph.consumers(norm.outputs[0])):
        return None
    # the step runs at the conv's place: run-time scale/bias (or the style vector they are
    # computed from) must be available before it
    from mobile_engine.planning.families.norm import style_source
    for i in (1, 2):
        src = style_source(norm, graph, i)
        name = src[0] if src is not None else norm.inputs[i]
        if name and not available_before(graph, name, conv):
            return None
    return norm


def available_before(graph: Graph, name: str, node: Node) -> bool:
    """``name`` is available when ``node`` runs: a graph input, a constant, or written earlier."""
    p = graph.producer(name)
    if p is None:
        return True
    at = next(i for i, n in enumerate(graph.nodes) if n is node)
    return next(i for i, n in enumerate(graph.nodes) if n is p) < at


def fused_add(conv: Node, norm: Node, graph: Graph) -> tuple[Node, str] | None:
    """(add, residual): the residual ADD after a norm that ``conv``'s step absorbs, computed in
    the same step (``out = act_add(norm(y) + residual)``), or None. Legal when the norm has no
    activation, its output is read only by the ADD (once) and is not a graph output, the other
    operand is a run-time float32 tensor of the same shape available before the conv runs, and
    the ADD and its readers are plain float32."""
    out = norm.outputs[0]
    users = graph.consumers(out)
    if norm.attrs["activation"] is not Activation.NONE or len(users) != 1 or \
            graph.is_output(out):
        return None
    add = users[0]
    if add.op is not Op.ADD or len(add.outputs) != 1 or add.inputs.count(out) != 1:
        return None
    other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
    r, o, y = (graph.tensors[n] for n in (other, out, add.outputs[0]))
    if r.is_const or r.shape != o.shape or y.shape != o.shape or not _plain_float(graph, add):
        return None
    if any(not _plain_float(graph, u) for u in graph.consumers(add.outputs[0])):
        return None
    return (add, other) if available_before(graph, other, conv) else None


def add_fused_into_conv(add: Node, graph: Graph) -> bool:
    """True when ``add`` runs inside a conv step that absorbed the norm before it."""
    for name in add.inputs:
        norm = graph.producer(name) if name else None
        if norm is not None and norm.op is Op.INSTANCE_NORM and norm_fused_into_conv(norm, graph):
            found = fused_add(graph.producer(norm.inputs[0]), norm, graph)
            if found is not None and found[0] is add:
                return True
    return False


def norm_fused_into_conv(norm: Node, graph: Graph) -> bool:
    """True when ``norm`` runs inside its producing conv's step (``fused_norm``)."""
    p = graph.producer(norm.inputs[0]) if norm.inputs else None
    return p is not None and fused_norm(p, graph) is norm


def _with_norm(step: Step, norm: Node, graph: Graph, mr: int, nr: int) -> Step:
    """``step`` (an igemm conv) extended by the instance norm it absorbs."""
    add = fused_add(graph.producer(norm.inputs[0]), norm, graph)
    act, p0, p1 = activation(norm if add is None else add[0])
    step.kernel = f"f32_conv2d_igemm_{mr}x{nr}_instnorm{'' if add is None else '_add'}" \
        f"{EPILOGUES[act]}"
    step.outputs = [norm.outputs[0] if add is None else add[0].outputs[0]]
    from mobile_engine.planning.families.norm import style_source
    tags = []
    step.params.update(norm_epsilon=float(norm.attrs["epsilon"]), norm_act=act, norm_p0=p0,
                       norm_p1=p1, norm_inputs=tags)
    for i, what in ((1, "scale"), (2, "bias")):
        src = style_source(norm, graph, i)
        data = graph.const(norm.inputs[i])
        if src is not None:
            step.inputs.append(src[0])
            step.weights[f"norm_style_{what}"] = src[1]
            tags.append(f"style_{what}")
        elif data is None:
            step.inputs.append(norm.inputs[i])
            tags.append(what)
        else:
            step.weights[f"norm_{what}"] = np.ascontiguousarray(data, F32)
    if add is not None:
        step.inputs.append(add[1])
        tags.append("residual")
    step.flops += 6 * int(np.prod(graph.tensors[norm.outputs[0]].shape))
    return step


NHWC_OF_NCHW = (0, 2, 3, 1)


def absorbed_transpose(conv: Node, graph: Graph) -> str | None:
    """The NCHW tensor a conv reads directly instead of its NHWC transpose, or None.

    Legal when the conv's input is ``TRANSPOSE(src, perm=(0, 2, 3, 1))`` read only by the conv
    (as x) and not a graph output, src is a plain float32 run-time tensor, and the conv (plain
    float32) runs the igemm or pix kernel, both of which read planar rows (the transpose, a pass
    over the image, disappears: multistyle26's first conv reads the NCHW image)."""
    if conv.op is not Op.CONV2D or conv.attrs["in_layout"] != "nhwc" or \
            not _plain_float(graph, conv):
        return None
    t = conv.inputs[0]
    p = graph.producer(t)
    if p is None or p.op is not Op.TRANSPOSE or tuple(p.attrs["perm"]) != NHWC_OF_NCHW or \
            graph.is_output(t) or [id(n) for n in graph.consumers(t)] != [id(conv)] or \
            conv.inputs.count(t) != 1:
        return None
    src = graph.tensors[p.inputs[0]]
    w = graph.const(conv.inputs[1])
    if src.is_const or len(src.shape) != 4 or src.dtype is not DType.FLOAT32 or \
            src.quant is not None or w is None or w.ndim != 4:
        return None
    family = kernel_family(src.shape[1], w.shape[0], conv.attrs["group"], w.shape[2],
                           w.shape[3], conv.attrs["strides"][1])
    return src.name if family in ("igemm", "pix") else None


@lowers(Op.CONV2D)
def lower_conv2d(node: Node, graph: Graph) -> list[Step]:
    a = node.attrs
    x, x_shape, out, out_shape, w, bias = _common(node, graph)
    in_nchw, out_nchw = a["in_layout"] == "nchw", a["out_layout"] == "nchw"
    planar_src = absorbed_transpose(node, graph)
    if planar_src is not None:           # read the transpose's NCHW input instead
        x, in_nchw = planar_src, True
        x_shape = graph.tensors[x].shape
    graph_out_shape = out_shape
    if in_nchw:                                  # the tables and checks below speak NHWC
        x_shape = (x_shape[0], x_shape[2], x_shape[3], x_shape[1])
    if out_nchw:
        out_shape = (out_shape[0], out_shape[2], out_shape[3], out_shape[1])
    n, h, wd, c = x_shape
    co, cig, kh, kw = w.shape
    group = a["group"]
    if a["pad_mode"] not in ("constant", "reflect", "edge"):
        raise _fail(node, f"pad_mode {a['pad_mode']!r}; supported: constant, reflect, edge")
    rowmap, colmap = igemm.conv_tables(x_shape, (kh, kw), a["strides"], a["dilations"],
                                       a["pads"], a["pad_mode"], a["upsample"])
    if (rowmap.shape[0], colmap.shape[0]) != tuple(out_shape[1:3]):
        raise _fail(node, f"indirection tables {rowmap.shape[0]}x{colmap.shape[0]} do not match "
                          f"output {out_shape} (NHWC)")
    use_pix = pix.applicable(co, group, a["strides"][1])
    family = kernel_family(c, co, group, kh, kw, a["strides"][1])
    if (out_nchw and not use_pix) or (in_nchw and family not in ("pix", "igemm")):
        raise _fail(node, f"planar layouts (in {a['in_layout']}, out {a['out_layout']}) need the "
                          f"pix kernel: group 1, Co <= {pix.MAX_CO}, column stride 1 (Co {co}, "
                          f"group {group}, strides {a['strides']})")
    act, act_params = _act_params(node)
    inputs, weights = [x], {}
    res_name = node.inputs[3] if len(node.inputs) > 3 else ""
    if res_name:
        res = graph.const(res_name)
        if res is None:
            inputs.append(res_name)
        else:
            weights["residual"] = np.ascontiguousarray(np.broadcast_to(res, graph_out_shape), F32)
    macs = int(np.prod(out_shape)) * cig * kh * kw
    params = dict(group=group, step=1, act=act, act_params=act_params,
                  has_residual=bool(res_name), work=macs, mult=co // c)
    weights.update(bias=np.zeros(co, F32) if bias is None else bias, rowmap=rowmap, colmap=colmap)
    if group == c and c > 1 and kh * kw <= dw.MAX_TAPS:
        weights["w"] = dw.pack_weights(w)
        kernel = dw.KERNEL_ID
    elif use_pix:
        plan = pix.PixPlan(w, rowmap, colmap, a["upsample"], a["dilations"][1])
        del weights["rowmap"], weights["colmap"]
        weights["w"] = plan.wbank
        params.update(in_nchw=in_nchw, out_nchw=out_nchw, **geometry_params(node, kh, kw))
        kernel = plan.kernel
    elif igemm.use_kdot(co, group):
        mr, cg = igemm.kdot_tile(co)
        weights["w"], weights["wtap"] = igemm.pack_weights_kdot(w, cg)
        kernel = igemm.kdot_kernel_id(mr, cg)
    else:
        mr, nr = igemm.choose_tile(co // group)
        weights["w"] = igemm.pack_weights(w, nr, group, in_nchw)
        params["in_nchw"] = in_nchw
        kernel = igemm.kernel_id(mr, nr)
        norm = fused_norm(node, graph)
        if norm is not None:
            return [_with_norm(Step(node.name, kernel, inputs, [out], params, weights,
                                    2 * macs), norm, graph, mr, nr)]
    return [Step(node.name, kernel, inputs, [out], params, weights, 2 * macs)]


@lowers(Op.CONV_TRANSPOSE2D)
def lower_conv_transpose2d(node: Node, graph: Graph) -> list[Step]:
    a = node.attrs
    x, x_shape, out, out_shape, w, bias = _common(node, graph)
    ci, cog, kh, kw = w.shape
    group = a["group"]
    rowmap, colmap = convt.transpose_tables(x_shape, (kh, kw), a["strides"], a["dilations"],
                                            a["pads"], a["output_padding"])
    if (rowmap.shape[0], colmap.shape[0]) != tuple(out_shape[1:3]):
        raise _fail(node, f"indirection tables {rowmap.shape[0]}x{colmap.shape[0]} do not match "
                          f"output {out_shape} (NHWC)")
    act, act_params = _act_params(node)
    co = cog * group
    mr, nr = igemm.choose_tile(cog)
    macs = int(np.prod(x_shape)) * cog * kh * kw
    params = dict(group=group, step=int(a["strides"][1]), act=act, act_params=act_params,
                  has_residual=False, work=macs, mult=1)
    weights = dict(w=convt.pack_weights(w, nr, group), rowmap=rowmap, colmap=colmap,
                   bias=np.zeros(co, F32) if bias is None else bias)
    return [Step(node.name, convt.kernel_id(mr, nr), [x], [out], params, weights, 2 * macs)]


# NOTE: a residual ADD that a conv step absorbed (``fused_add``) lowers to nothing; the ADD's
# own lowering lives with the element-wise family, so it is wrapped here (as the int8
# families wrap theirs).
_lower_add = LOWERINGS[Op.ADD]


def _lower_add_unless_absorbed(node: Node, graph: Graph) -> list[Step]:
    if add_fused_into_conv(node, graph):
        return []
    return _lower_add(node, graph)


LOWERINGS[Op.ADD] = _lower_add_unless_absorbed
_lower_transpose = LOWERINGS[Op.TRANSPOSE]


def _lower_transpose_unless_absorbed(node: Node, graph: Graph) -> list[Step]:
    users = graph.consumers(node.outputs[0])
    if len(users) == 1 and absorbed_transpose(users[0], graph) == node.inputs[0]:
        return []                  # the conv reads the NCHW input (``absorbed_transpose``)
    return _lower_transpose(node, graph)


LOWERINGS[Op.TRANSPOSE] = _lower_transpose_unless_absorbed


def geometry_params(node: Node, kh: int, kw: int) -> dict:
    """A conv's geometry as step params, for binders that rebuild its indirection tables."""
    a = node.attrs
    return dict(kernel=[kh, kw], strides=list(a["strides"]), dilations=list(a["dilations"]),
                pads=list(a["pads"]), pad_mode=a["pad_mode"], upsample=int(a["upsample"]))
