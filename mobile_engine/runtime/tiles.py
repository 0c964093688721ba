"""What a step's kernel runs as on a CPU: its register tile and int8 dot-product variant.

A plan's kernel ids name a tile with AVX-512's rows (``kernels/table.py``; the packed weights
depend only on the tile's channel width NR, chosen for the plan's target, so one plan serves
every CPU), and each kernel factory fits the tile's rows to the CPU it compiles for
(``kernels.config.fit_rows``) and picks the int8 variant (``kernels.qu8_conv_common.host_isa``).
``runs_as`` answers the same question for any CPU given its vector registers and features, so
the compiler can record what runs on the target (``manifest["target"]["tiles"]``), ``inspect``
can show it and a Session can say which steps it refits when the plan was compiled for another
CPU (``refit_note``).

NOTE: the igemm, kdot and pix rows below mirror ``f32_conv2d.machine_rows``, ``kdot_kernel``
and ``f32_conv2d_pix.machine_tile`` (tests/test_targets.py checks them against those on this
machine for every id in the table).
"""
from __future__ import annotations

from kernels import config
from kernels import f32_conv2d as igemm
from kernels import f32_conv2d_pix as pix
from kernels import qu8_conv_common as qcommon
from kernels import table

_F32_IGEMM = ("f32_conv2d_igemm_", "f32_conv_transpose2d_igemm_")


def runs_as(kernel: str, registers: tuple[int, int], int8_dot: str) -> str | None:
    """The tile (``"6x16"``; pix: output pixels x channels; int8: with its dot-product variant,
    ``"6x64c4 vnni"``) that ``kernel`` compiles to on a CPU with ``registers`` (lanes, count)
    and ``int8_dot``; None for kernels without a register tile (the same code everywhere)."""
    try:
        row, f = table.row_of(kernel), table.fields(kernel)
    except KeyError:
        return None
    grammar = row.grammar
    if grammar.startswith(_F32_IGEMM):
        rows = min(config.fit_rows(f["mr"], f["nr"], registers), igemm.PIXEL_POINTERS)
        return f"{rows}x{f['nr']}"
    if grammar.startswith("f32_conv2d_kdot4_"):
        return f"{config.fit_rows(f['mr'], f['cg'] * igemm.VL, registers)}x{f['lanes']}"
    if grammar.startswith("f32_conv2d_pix"):
        co, phases = f["co"], f["phases"]
        nvx = config.fit_rows(pix.tile(co, phases), (phases * co + 1) * pix.VL, registers)
        return f"{pix.VL * nvx}x{co}"
    if grammar.startswith("qu8_conv2d_igemm_"):
        return f"{config.fit_rows(f['mr'], f['nr'], registers)}x{f['nr']}c4 {int8_dot}"
    if grammar.startswith("qu8_conv2d_kdot16_"):
        rows = config.fit_rows(f["mr"], f["cg"] * qcommon.VL, registers)
        return f"{rows}x{f['lanes']} {int8_dot}"
    return None


def here() -> tuple[tuple[int, int], str]:
    """(vector registers, int8 dot-product variant) of the code Numba compiles in this process."""
    return config.vector_registers(), qcommon.host_isa()


def plan_tiles(kernels: list[str], registers: tuple[int, int], int8_dot: str) -> list:
    """``runs_as`` of every step's kernel (the plan's ``target["tiles"]``)."""
    return [runs_as(k, registers, int8_dot) for k in kernels]


def refits(plan) -> list[tuple[int, str, str]]:
    """(step index, tile on the plan's target, tile here) of every step this CPU runs with
    another tile than the plan's target; [] when the plan records no target or the same CPU."""
    record = plan.manifest.get("target")
    if record is None:
        return []
    registers, dot = here()
    if tuple(record["vector"]) == registers and record["int8_dot"] == dot:
        return []
    out = []
    for i, (step, planned) in enumerate(zip(plan.steps, record["tiles"])):
        if planned is not None:
            now = runs_as(step["kernel"], registers, dot)
            if now != planned:
                out.append((i, planned, now))
    return out


def refit_note(plan) -> str | None:
    """One line saying that this CPU runs some of ``plan``'s steps with other tiles than the
    target it was compiled for, or None when nothing is refit."""
    changed = refits(plan)
    if not changed:
        return None
    record = plan.manifest["target"]
    (lanes, count), dot = here()
    first = ", ".join(f"step {i} {planned} -> {now}" for i, planned, now in changed[:2])
    return (f"{plan.path or 'plan'}: compiled for {record['name']} ({record['vector'][0]} float "
            f"lanes x {record['vector'][1]} vector registers, int8 {record['int8_dot']}); this "
            f"CPU has {lanes} x {count}, int8 {dot}: {len(changed)} of {len(plan.steps)} steps "
            f"refit at load ({first}{', ...' if len(changed) > 2 else ''})")
