"""The pass pipelines: two visible ordered tuples; any pass can be switched off by name.

``PIPELINE``: graph rewrites on the imported model (before calibration and quantization).
``FUSION_PASSES``: kernel-fusion marks on the final float or int8 graph, just before lowering
(``passes/fusions``); each asks the compiler's ``KernelTarget`` what the kernels can do.

Order matters where one rewrite creates the pattern of the next:
fuse_instance_norm before sink_transposes (it emits transposes that cancel the importer's);
sink_transposes before fold_batch_norm/absorb_pad/absorb_upsample (they need the conv's NHWC
neighbour directly, not through the importer's transpose pair);
absorb_pad before absorb_upsample (a conv upsamples, then pads); fuse_residual_add before
fuse_activation (relu(conv + x) takes both).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

from mobile_engine.errors import EngineError, GraphError
from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import Op
from mobile_engine.ir.verify import verify
from mobile_engine.ir import fusion
from mobile_engine.passes import fold_qdq, pack_output_pixels
from mobile_engine.passes import (absorb_pad, absorb_upsample, fold_batch_norm, fold_constants,
                                  fuse_activation, fuse_instance_norm, fuse_residual_add,
                                  fold_conv_affine, fold_layout_chain, fuse_activation_affine,
                                  fuse_hard_swish, fuse_swish,
                                  nchw_tail, remove_dead, sink_transposes)
from mobile_engine.passes.fusions import (channel_pad_residual, conv_norm, conv_prelu,
                                          int8_conv_norm, int8_norm_add, nchw_input, norm_add,
                                          stats_table, style_chain)
from mobile_engine.passes.fusions.target import KernelTarget


class Pass(NamedTuple):
    name: str
    run: Callable[[Graph], int]


PIPELINE: tuple[Pass, ...] = (
    Pass("fold_constants", fold_constants.run),
    Pass("remove_dead", remove_dead.run),
    Pass("fuse_instance_norm", fuse_instance_norm.run),
    Pass("sink_transposes", sink_transposes.run),
    Pass("fold_constants", fold_constants.run),     # transposed/reshaped constants
    Pass("remove_dead", remove_dead.run),           # identity transposes, dead wrappers
    Pass("fold_layout_chain", fold_layout_chain.run),  # reshape/transpose chains: one copy
    Pass("fold_batch_norm", fold_batch_norm.run),
    Pass("fold_conv_affine", fold_conv_affine.run),  # conv * c + d with per-channel constants
    Pass("absorb_pad", absorb_pad.run),
    Pass("absorb_upsample", absorb_upsample.run),
    Pass("fuse_residual_add", fuse_residual_add.run),
    Pass("fuse_hard_swish", fuse_hard_swish.run),    # x * clip(x + 3, 0, 6) / 6 -> HARD_SWISH
    Pass("fuse_swish", fuse_swish.run),              # x * sigmoid(x) -> SILU, then into convs
    Pass("fuse_activation", fuse_activation.run),
    Pass("fuse_activation_affine", fuse_activation_affine.run),  # hard_swish(conv) * a + b
    Pass("nchw_tail", nchw_tail.run),               # after the fusions: convs know their epilogue
)

# A pre-quantized (QDQ) model, after PIPELINE: its QUANTIZE/DEQUANTIZE pairs fold into int8 ops;
# the uint8 PAD/RESIZE left in front of int8 convs become their indirection tables; unit
# transposes become views; few-channel int8 convs fill their lanes; what stays float and planar
# goes NCHW last (a planar conv would not fold into the NHWC int8 kernels).
QDQ_PIPELINE: tuple[Pass, ...] = (
    Pass("fold_qdq", fold_qdq.run),
    Pass("absorb_pad", absorb_pad.run),
    Pass("absorb_upsample", absorb_upsample.run),
    Pass("unit_transposes", fold_qdq.unit_transposes),
    Pass("pack_output_pixels", pack_output_pixels.run),
    Pass("nchw_tail", nchw_tail.run),
)


class FusionPass(NamedTuple):
    name: str
    run: Callable[[Graph, KernelTarget], int]


# Order: a node joins at most one step; stats chains first (they take whole int8 regions), then
# the int8 norm + add (the style chain and the int8 conv + norm ask whether a norm runs the int8
# kernels), the style chain (the conv + norm fusions ask where a norm's scale comes from).
FUSION_PASSES: tuple[FusionPass, ...] = (
    FusionPass("stats_table", stats_table.run),
    FusionPass("int8_norm_add", int8_norm_add.run),
    FusionPass("style_chain", style_chain.run),
    FusionPass("int8_conv_norm", int8_conv_norm.run),
    FusionPass("conv_norm", conv_norm.run),
    FusionPass("norm_add", norm_add.run),           # the norms conv_norm left
    FusionPass("nchw_input", nchw_input.run),
    FusionPass("channel_pad_residual", channel_pad_residual.run),   # convs with no other mark
    FusionPass("conv_prelu", conv_prelu.run),      # after the two marks it may join
)
GRAPH_PASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PIPELINE + QDQ_PIPELINE))
FUSION_PASS_NAMES: tuple[str, ...] = tuple(p.name for p in FUSION_PASSES)
PASS_NAMES: tuple[str, ...] = GRAPH_PASS_NAMES + FUSION_PASS_NAMES


@dataclass
class PassReport:
    """What one pass did: its name, how many rewrites, and the op counts around it."""
    name: str
    rewrites: int
    ops_before: dict[Op, int]
    ops_after: dict[Op, int]

    def changes(self) -> dict[Op, int]:
        """Op -> count difference (after - before), only the ops that changed."""
        ops = set(self.ops_before) | set(self.ops_after)
        diff = {op: self.ops_after.get(op, 0) - self.ops_before.get(op, 0) for op in ops}
        return {op: d for op, d in sorted(diff.items(), key=lambda kv: kv[0].value) if d}

    def __str__(self) -> str:
        nodes = f"{sum(self.ops_before.values())} -> {sum(self.ops_after.values())} nodes"
        delta = ", ".join(f"{op.name} {d:+d}" for op, d in self.changes().items())
        return f"{self.name}: {self.rewrites} rewrites, {nodes}" + (f" ({delta})" if delta else "")


def op_counts(graph: Graph) -> dict[Op, int]:
    return dict(Counter(n.op for n in graph.nodes))


def _check_names(disable: set[str]) -> None:
    unknown = disable - set(PASS_NAMES)
    if unknown:
        raise EngineError(f"unknown pass name(s) {', '.join(sorted(unknown))}; valid names: "
                          f"{', '.join(PASS_NAMES)}")


def optimize(graph: Graph, disable: Iterable[str] = (), verify_each: bool = False,
             pipeline: tuple[Pass, ...] | None = None) -> list[PassReport]:
    """Run ``pipeline`` (default ``PIPELINE``) on ``graph`` in place, skipping passes named in
    ``disable``.

    Parameters
    ----------
    graph: the imported graph (modified in place).
    disable: pass names to skip (a name listed twice in the pipeline is skipped both times).
    verify_each: run ``ir.verify`` after every pass; a failure raises ``GraphError`` naming
        the pass.

    Returns
    -------
    One ``PassReport`` per pass that ran, in order.
    """
    disable = set(disable)
    _check_names(disable)
    reports = []
    for p in PIPELINE if pipeline is None else pipeline:
        if p.name in disable:
            continue
        before = op_counts(graph)
        rewrites = p.run(graph)
        if verify_each:
            try:
                verify(graph)
            except GraphError as e:
                raise GraphError(f"after pass {p.name!r}: {e}") from e
        reports.append(PassReport(p.name, rewrites, before, op_counts(graph)))
    return reports


def fuse(graph: Graph, target: KernelTarget, disable: Iterable[str] = ()) -> list[PassReport]:
    """Run ``FUSION_PASSES`` on ``graph`` (clearing earlier marks first), skipping the names in
    ``disable``; one ``PassReport`` per pass that ran (rewrites = fusions made)."""
    disable = set(disable)
    _check_names(disable)
    fusion.clear(graph)
    reports = []
    for p in FUSION_PASSES:
        if p.name not in disable:
            counts = op_counts(graph)
            reports.append(PassReport(p.name, p.run(graph, target), counts, counts))
    return reports
