"""Reading the x86 assembly of Numba kernels (``dispatcher.inspect_asm``) in the kernel tests.

The hot loop of a kernel is found as the single-block loop (a label whose block ends by jumping
back to it) with the most instructions of a kind (FMAs, ``vpdpbusd``); the tests then count its
instructions and refuse gathers and vector stack traffic (an accumulator tile that spilled).
"""
from __future__ import annotations

import re

LABEL = re.compile(r"^(\.LBB\d+_\d+):", re.M)
# A zmm register moved to or from the stack frame (rsp/rbp-relative), either operand order.
ZMM_SPILL = re.compile(r"^.*\(%r[sb]p\).*%zmm.*$|^.*%zmm.*\(%r[sb]p\).*$", re.M)
# Any gather (vgatherdps, vpgatherdd, vgatherpf...): DESIGN.md's 60x slower loops had them.
GATHER = re.compile(r"gather")


def loops(asm: str) -> list[str]:
    """Bodies of single-block loops: a label whose block ends by jumping back to it."""
    found = []
    starts = [(m.group(1), m.end()) for m in LABEL.finditer(asm)]
    for i, (label, begin) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(asm)
        back = re.search(rf"^\s*j\w+\s+{re.escape(label)}\s*$", asm[begin:end], re.M)
        if back:
            found.append(asm[begin:begin + back.end()])
    return found


def hottest_loop(asm: str, instruction: re.Pattern) -> str:
    """The loop body with the most matches of ``instruction``; fails when no loop has one."""
    body = max(loops(asm), key=lambda b: len(instruction.findall(b)), default="")
    assert instruction.findall(body), \
        f"no loop with {instruction.pattern!r} found in the kernel's assembly"
    return body


def assert_no_gathers(body: str) -> None:
    assert not GATHER.search(body), "gather instructions in the reduction loop"


def assert_no_spills(body: str) -> None:
    """The accumulator tile stays in registers: no zmm stack traffic in the loop body."""
    spills = ZMM_SPILL.findall(body)
    assert not spills, f"accumulators spilled to the stack: {spills}"
