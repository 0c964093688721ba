"""Arena planning: one buffer per session, tensors placed by lifetime, greedy by size.

Each runtime tensor lives from the step that writes it to the last step that reads it (graph inputs
from before the first step, graph outputs to after the last). Tensors are placed largest first, each
at the lowest 64-byte-aligned offset that overlaps no already-placed tensor whose lifetime
intersects its own (TFLite's "greedy by size"). Invariant: no two live tensors overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

from mobile_engine.plan.format import ALIGN


@dataclass(frozen=True)
class Lifetime:
    first: int     # index of the step that writes it (-1: a graph input)
    last: int      # index of the last step that reads it (n_steps: a graph output)
    nbytes: int

    def overlaps(self, other: "Lifetime") -> bool:
        return self.first <= other.last and other.first <= self.last


def aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_offsets(lifetimes: dict[str, Lifetime]) -> tuple[dict[str, int], int]:
    """Offsets per buffer name and the arena size in bytes."""
    offsets: dict[str, int] = {}
    placed: list[tuple[int, int, Lifetime]] = []     # (offset, end, lifetime)
    order = sorted(lifetimes, key=lambda n: (-lifetimes[n].nbytes, lifetimes[n].first, n))
    for name in order:
        life = lifetimes[name]
        size = aligned(max(life.nbytes, 1))
        busy = sorted((o, e) for o, e, l in placed if l.overlaps(life))
        offset = 0
        for start, end in busy:
            if offset + size <= start:
                break
            offset = max(offset, aligned(end))
        offsets[name] = offset
        placed.append((offset, offset + size, life))
    total = max((e for _, e, _ in placed), default=0)
    return offsets, aligned(total)
