"""The pass pipeline: one visible ordered tuple; any pass can be switched off by name.

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
from mobile_engine.passes import (absorb_pad, absorb_upsample, fold_batch_norm, fold_constants,
                                  fuse_activation, fuse_instance_norm, fuse_residual_add,
                                  nchw_tail, remove_dead, sink_transposes)


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
    Pass("fold_batch_norm", fold_batch_norm.run),
    Pass("absorb_pad", absorb_pad.run),
    Pass("absorb_upsample", absorb_upsample.run),
    Pass("fuse_residual_add", fuse_residual_add.run),
    Pass("fuse_activation", fuse_activation.run),
    Pass("nchw_tail", nchw_tail.run),               # after the fusions: convs know their epilogue
)
PASS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(p.name for p in PIPELINE))


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


def optimize(graph: Graph, disable: Iterable[str] = (), verify_each: bool = False
             ) -> list[PassReport]:
    """Run ``PIPELINE`` on ``graph`` in place, skipping passes named in ``disable``.

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
    unknown = disable - set(PASS_NAMES)
    if unknown:
        raise EngineError(f"unknown pass name(s) {', '.join(sorted(unknown))}; valid names: "
                          f"{', '.join(PASS_NAMES)}")
    reports = []
    for p in PIPELINE:
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
