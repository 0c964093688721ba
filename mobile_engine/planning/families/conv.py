"""Convolutions: CONV2D and CONV_TRANSPOSE2D (fp32, NHWC; kernels/f32_conv2d.py and friends).

Kernel selection per node:
- depthwise (group == C > 1, KH * KW <= MAX_TAPS): ``f32_dwconv2d_minmax``;
- few output channels (group 1, Co <= 8), column stride 1 and a kernel larger than 1x1 (or a
  planar layout): ``f32_conv2d_pix[up2]_{PX}x{Co}_minmax``
  (lanes over output pixels, kernels/f32_conv2d_pix.py; weight ``w`` = the folded weight bank;
  params ``in_nchw``, ``out_nchw`` and the geometry (``geometry_params``), from which the binder
  rebuilds the row and column plans: tens of KB at 480x640, derived in milliseconds); the
  only kernel for the planar layouts (``in_layout``/``out_layout`` "nchw");
- few output channels otherwise, at most 4:
  ``f32_conv2d_kdot4_{MR}x{4*CG}_minmax`` (weights ``w`` = the kernel-row runs, ``wtap`` =
  per-tap quads, from ``pack_weights_kdot``);
- everything else, grouped or not: ``f32_conv2d_igemm_{MR}x{NR}_minmax`` with (MR, NR) from
  ``planning.cpu.igemm_tile(Co / group)`` (for the target's vector registers), except 3x3
  stride-1 convs of one group with enough channels and
  tiles (``f32_conv2d_winograd.applicable``, whose input tables read padded row ``o + k``):
  ``f32_conv2d_winograd_f4x3_minmax`` (weight ``w`` = the ``[Co, C, 3, 3]`` weights as they are,
  transformed at load; the step's scratch, ``<node>:winograd``, ``scratch_floats`` floats of the
  arena that only the step uses, ``Step.scratch``);
- transposed: ``f32_conv_transpose2d_igemm_{MR}x{NR}_minmax`` (the igemm kernel over
  zero-stuffed indirection tables, ``step`` = stride W); with few output channels (group 1,
  Co <= 8) and column stride 2: ``f32_conv2d_pixup2_{PX}x{Co}_minmax`` (its two phases; the
  geometry params say ``transposed`` and carry ``output_padding``);
- an igemm conv that absorbed an instance norm (``passes/fusions/conv_norm.py``, record
  "norm", "add", "residual"): ``f32_conv2d_igemm_{MR}x{NR}_instnorm[_add][_<epilogue>]``, one
  step: the conv with the norm's statistics in its epilogue, then the norm in place (and the
  residual ADD after it). Params ``norm_epsilon``, ``norm_act``, ``norm_p0``, ``norm_p1``,
  ``norm_inputs`` (what the inputs after x and the conv's residual are: "scale", "bias"
  (run-time tensors), "style_scale", "style_bias" (the style vector whose product with weight
  ``norm_style_scale``/``norm_style_bias`` gives it, ``passes/fusions/style_chain.py``),
  "residual" (the ADD's other operand)); weights ``norm_scale``/``norm_bias`` when constant;
- a conv (igemm or pix) that absorbed its input's NCHW -> NHWC TRANSPOSE
  (``passes/fusions/nchw_input.py``, record "nchw_input") reads the NCHW tensor itself (param
  ``in_nchw``; igemm weights packed ``[.., KH, C/g, KW, NR]``);
- an igemm conv that absorbed the PRELU after it (``passes/fusions/conv_prelu.py``, record
  "prelu"): weight ``slopes`` f32[Co], the step writes the PRELU's output;
- an igemm conv whose residual was a zero PAD of the channel axis
  (``passes/fusions/channel_pad_residual.py``, record "channel_pad_residual") reads the
  unpadded tensor as its residual, ``[N, OH, OW, Cr]`` with ``Cr <= Co`` (param
  ``residual_channels``): the epilogue adds it to the first ``Cr`` output channels.

Step contract (JSON-able params, weight blobs):
    inputs  [x] or [x, residual]   (runtime tensors, NHWC; igemm's residual may have fewer
            channels than the output)
    weights w (packed), bias f32[Co] (zeros when absent), rowmap i32[OH, KH], colmap i32[OW, KW],
            and ``residual`` when the residual is a constant
    params  group, step, act (Activation int), act_params [p0, p1] (floats; CLAMP's may be
            +-inf), has_residual (bool), residual_channels (igemm, when fewer than Co), mult
            (depthwise multiplier), work (MACs: the binder runs
            the serial variant below ``config.PARALLEL_MIN_WORK * config.MAC_WORK``)
    flops   2 * MACs
"""
from __future__ import annotations

import numpy as np

from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import f32_conv2d_winograd as wino
from kernels import f32_conv_transpose2d as convt
from kernels import f32_dwconv2d as dw
from mobile_engine.errors import UnsupportedOperatorError
from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.planning.cpu import igemm_tile
from mobile_engine.planning.families.elementwise import EPILOGUES, activation
from mobile_engine.planning.families.norm import norm_inputs
from mobile_engine.planning.step import Step, lowers

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
    # NOTE: a 1x1 conv gains nothing from pix's planar row copies, which cost as much as its
    # MACs over Co: MediaPipe's 1x1 heads (16x16x88 -> 2, 24x24x128 -> 2, 12x12x256 -> 6) ran
    # 43, 108 and 97 us as pix, 7, 30 and 20 us as kdot (one Zen 4 thread, in their plans)
    if pix.applicable(co, group, stride_w) and kh * kw > 1:
        return "pix"
    # NOTE: the few-channel convs pix leaves (1x1 or column-strided) run kdot only up to 4
    # outputs: 5-8 fill a 16-lane igemm tile half and still beat kdot's per-pixel sums (face
    # detection full range's 1x1 96x96x32 -> 8: 251 us as kdot, 140 us as igemm 16x16; hand
    # recrop's stride-2 256x256x3 -> 8 and 128x128x8 -> 8: 460 and 114 us against 302 and
    # 83 us); 1-4 outputs were even (1x1 16x16x88 -> 2: 7 against 10 us; one Zen 4 thread)
    if igemm.use_kdot(co, group) and co <= 4:
        return "kdot"
    return "igemm"


def _with_norm(step: Step, conv: Node, graph: Graph, mr: int, nr: int) -> Step:
    """``step`` (an igemm conv) extended by the instance norm (and residual ADD) it absorbs
    (``passes/fusions/conv_norm.py`` marks them)."""
    record = fusion.fusion(conv)
    norm = graph.node(record["norm"])
    add = graph.node(record["add"]) if "add" in record else None
    act, p0, p1 = activation(norm if add is None else add)
    step.kernel = f"f32_conv2d_igemm_{mr}x{nr}_instnorm{'' if add is None else '_add'}" \
        f"{EPILOGUES[act]}"
    step.outputs = [norm.outputs[0] if add is None else add.outputs[0]]
    names, tags, weights = norm_inputs(norm, graph, "norm_")
    step.inputs += names
    step.weights.update(weights)
    step.params.update(norm_epsilon=float(norm.attrs["epsilon"]), norm_act=act, norm_p0=p0,
                       norm_p1=p1, norm_inputs=tags)
    if add is not None:
        step.inputs.append(record["residual"])
        tags.append("residual")
    step.flops += 6 * int(np.prod(graph.tensors[norm.outputs[0]].shape))
    return step


def _winograd(node: Node, x_shape, out_shape, w, rowmap, colmap, in_nchw: bool,
              with_norm: bool = False) -> bool:
    """Whether an igemm conv runs the Winograd kernel instead (not one that absorbed a norm:
    its statistics come from the igemm's epilogue; ``with_norm``: asked before the fusion
    passes decide)."""
    a = node.attrs
    return (not in_nchw and (with_norm or "norm" not in fusion.fusion(node))
            and wino.applicable(w.shape[2], w.shape[3], a["strides"], a["dilations"],
                                a["group"], x_shape[3], w.shape[0],
                                wino.tiles_of(*out_shape[:3]))
            and wino.padded_maps(rowmap, colmap, out_shape[1], out_shape[2]) is not None)


def runs_winograd(node: Node, graph: Graph) -> bool:
    """Whether ``node`` (a CONV2D of the float graph) lowers to the Winograd kernel when no norm
    joins its step (``passes/fusions/conv_norm.py`` asks, and leaves such a conv's norm a step
    of its own: measured on multistyle26's 3x3 32->32 residual convs at 480x640, one thread,
    Winograd plus a separate norm pass beat the igemm with the norm's statistics in its
    epilogue)."""
    a = node.attrs
    x = graph.tensors[node.inputs[0]]
    w = graph.const(node.inputs[1])
    out = graph.tensors[node.outputs[0]]
    if (w is None or w.ndim != 4 or len(x.shape) != 4 or a["in_layout"] != "nhwc"
            or a["out_layout"] != "nhwc" or a["pad_mode"] not in ("constant", "reflect", "edge")
            or fusion.fusion(node).get("nchw_input") is not None):
        return False
    rowmap, colmap = igemm.conv_tables(x.shape, w.shape[2:], a["strides"], a["dilations"],
                                       a["pads"], a["pad_mode"], a["upsample"])
    return _winograd(node, x.shape, out.shape, w, rowmap, colmap, False, with_norm=True)


@lowers(Op.CONV2D)
def lower_conv2d(node: Node, graph: Graph) -> list[Step]:
    a = node.attrs
    x, x_shape, out, out_shape, w, bias = _common(node, graph)
    in_nchw, out_nchw = a["in_layout"] == "nchw", a["out_layout"] == "nchw"
    planar_src = fusion.fusion(node).get("nchw_input")
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
    family = kernel_family(c, co, group, kh, kw, a["strides"][1])
    # the planar layouts need pix (or igemm for a planar input), whatever the kernel size
    use_pix = family == "pix" or ((in_nchw or out_nchw) and
                                  pix.applicable(co, group, a["strides"][1]))
    if (out_nchw and not use_pix) or (in_nchw and not use_pix and family != "igemm"):
        raise _fail(node, f"planar layouts (in {a['in_layout']}, out {a['out_layout']}) need the "
                          f"pix kernel: group 1, Co <= {pix.MAX_CO}, column stride 1 (Co {co}, "
                          f"group {group}, strides {a['strides']})")
    act, act_params = _act_params(node)
    inputs, weights = [x], {}
    res_name = node.inputs[3] if len(node.inputs) > 3 else ""
    # the unpadded residual of an absorbed channel PAD (passes/fusions/channel_pad_residual.py)
    res_name = fusion.fusion(node).get("channel_pad_residual", res_name)
    if res_name:
        res = graph.const(res_name)
        if res is None:
            inputs.append(res_name)
        else:
            weights["residual"] = np.ascontiguousarray(np.broadcast_to(res, graph_out_shape), F32)
    macs = int(np.prod(out_shape)) * cig * kh * kw
    params = dict(group=group, step=1, act=act, act_params=act_params,
                  has_residual=bool(res_name), work=macs, mult=co // c)
    if "channel_pad_residual" in fusion.fusion(node):
        params["residual_channels"] = graph.tensors[res_name].shape[3]
    weights.update(bias=np.zeros(co, F32) if bias is None else bias, rowmap=rowmap, colmap=colmap)
    if "prelu" in fusion.fusion(node) and (family != "igemm" or
                                           _winograd(node, x_shape, out_shape, w, rowmap, colmap,
                                                     in_nchw)):
        raise _fail(node, f"a PReLU was fused into a conv that runs {family} (only igemm "
                          f"applies one in its epilogue)")
    if group == c and c > 1 and kh * kw <= dw.MAX_TAPS:
        weights["w"] = dw.pack_weights(w)
        kernel = dw.KERNEL_ID
    elif use_pix:
        plan = pix.PixPlan(w, rowmap, colmap, a["upsample"], a["dilations"][1])
        del weights["rowmap"], weights["colmap"]
        weights["w"] = plan.wbank
        params.update(in_nchw=in_nchw, out_nchw=out_nchw, **geometry_params(node, kh, kw))
        kernel = plan.kernel
    elif family == "kdot":
        mr, cg = igemm.kdot_tile(co)
        weights["w"], weights["wtap"] = igemm.pack_weights_kdot(w, cg)
        kernel = igemm.kdot_kernel_id(mr, cg)
    elif _winograd(node, x_shape, out_shape, w, rowmap, colmap, in_nchw):
        weights["w"] = w
        floats = wino.scratch_floats(wino.tiles_of(*out_shape[:3]), c, co)
        return [Step(node.name, wino.KERNEL_ID, inputs, [out], params, weights, 2 * macs,
                     scratch={f"{node.name}:winograd": ((floats,), "float32")})]
    else:
        mr, nr = igemm_tile(co // group)
        weights["w"] = igemm.pack_weights(w, nr, group, in_nchw)
        params["in_nchw"] = in_nchw
        kernel = igemm.kernel_id(mr, nr)
        prelu = fusion.fusion(node).get("prelu")
        if prelu is not None:              # the PReLU in the epilogue writes its output
            prelu_node = graph.node(prelu)
            slope = graph.const(prelu_node.inputs[1]).reshape(-1)   # one, or one per channel
            weights["slopes"] = np.ascontiguousarray(np.broadcast_to(slope, (co,)), F32)
            out = prelu_node.outputs[0]
            return [Step(node.name, kernel, inputs, [out], params, weights,
                         2 * macs + 2 * int(np.prod(out_shape)))]
        if "norm" in fusion.fusion(node):
            return [_with_norm(Step(node.name, kernel, inputs, [out], params, weights,
                                    2 * macs), node, graph, mr, nr)]
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
    mr, nr = igemm_tile(cog)
    macs = int(np.prod(x_shape)) * cog * kh * kw
    params = dict(group=group, step=int(a["strides"][1]), act=act, act_params=act_params,
                  has_residual=False, work=macs, mult=1)
    weights = dict(w=convt.pack_weights(w, nr, group), rowmap=rowmap, colmap=colmap,
                   bias=np.zeros(co, F32) if bias is None else bias)
    kernel = convt.kernel_id(mr, nr)
    plan = _pix_transposed(node, w, rowmap, colmap, co)
    if plan is not None:
        del weights["rowmap"], weights["colmap"]
        weights["w"] = plan.wbank
        params.update(step=1, in_nchw=False, out_nchw=False, **geometry_params(node, kh, kw))
        kernel = plan.kernel
    return [Step(node.name, kernel, [x], [out], params, weights, 2 * macs)]


def _pix_transposed(node: Node, w: np.ndarray, rowmap, colmap, co: int) -> pix.PixPlan | None:
    """The pix kernel's plan of a transposed conv with few output channels and column stride
    2 (its two phases), or None when the igemm runs it: the igemm's channel lanes hold one of
    16 values for a 1-channel output (PP-OCRv4 detector's last 2x2 stride-2 24->1 transposed
    conv at 640x640: 5.6 ms at 3.5 GFLOP/s, 1 thread)."""
    if not pix.applicable(co, node.attrs["group"], node.attrs["strides"][1], transposed=True):
        return None
    try:                 # [Ci, Co, KH, KW] -> a conv's [Co, Ci, KH, KW]; the tables index taps
        return pix.PixPlan(np.ascontiguousarray(w.transpose(1, 0, 2, 3)), rowmap, colmap, 2)
    except ValueError:   # columns that do not decompose into the two phases
        return None




def geometry_params(node: Node, kh: int, kw: int) -> dict:
    """A conv's geometry as step params, for binders that rebuild its indirection tables."""
    a = node.attrs
    if node.op is Op.CONV_TRANSPOSE2D:
        return dict(kernel=[kh, kw], strides=list(a["strides"]), dilations=list(a["dilations"]),
                    pads=list(a["pads"]), transposed=True,
                    output_padding=list(a["output_padding"]))
    return dict(kernel=[kh, kw], strides=list(a["strides"]), dilations=list(a["dilations"]),
                pads=list(a["pads"]), pad_mode=a["pad_mode"], upsample=int(a["upsample"]))
