"""What a kernel's inner loops execute, read from its aarch64 assembly (Numba's ``inspect_asm``).

Pure text processing, so it runs (and is unit-tested) on any host; ``make test-arm`` feeds it the
assembly of kernels compiled under an emulated Cortex-A53/A72/A76.

A *loop* is the span from a label to the last branch back to it (LLVM's ``.LBB<f>_<n>`` labels;
``b``, ``b.<cond>``, ``cbz``/``cbnz``, ``tbz``/``tbnz``); *innermost* loops contain no other loop.
Each instruction of a loop falls into one class:

    fma_vec    fmla/fmls on float32 lanes (``v1.4s``: 4 float32 lanes of a 128-bit NEON register)
    fp_vec     other vector float32 arithmetic (fadd, fmul, fmax, frint, fcvt, fcm..., ``v.4s``)
    fp64_vec   vector float64 arithmetic (``v.2d``; the reductions accumulate in float64)
    dot        sdot/udot/usdot/sudot (Armv8.2 dot product: 4 int8 products per int32 lane)
    int_vec    vector integer arithmetic (smull, sadalp, mla, add ``v.4s`` ...)
    fma_scalar fmadd/fmsub/fnmadd/fnmsub on one ``s`` register: a multiply-add that is not NEON
    fp_scalar  other float32 arithmetic on one ``s`` register (fadd, fmul, fcsel ...)
    fp64       scalar float64 arithmetic (``d`` registers): a stray double in a float32 loop
    spill      vector loads/stores to the stack (``ldr q3, [sp, #...]``): accumulators that did not
               fit the 32 NEON registers
    call       ``bl <symbol>`` / ``blr``: a call per iteration (``expf`` is the one that hurts)

Verdicts (``check``), per kernel *kind*:

    fma    (convolutions, GEMM): the innermost loop with the most vector FMAs is the hot loop; it
           must use ``fmla v.4s``, no scalar FMA, no float64, fewer scalar float ops than vector
           FMAs (a scalar multiply that prepares a broadcast operand is fine), and call nothing
    vector (norms, element-wise, reductions): the innermost loop with the most float
           arithmetic is the hot loop; it must be vector (``.4s``) and have no scalar float ops
    dot    (int8 convolutions): the hot loop (most integer vector or dot instructions) must use
           ``sdot``/``udot`` when the core has dotprod, vector integer code otherwise
    info   (data movement): printed, never judged
and for every kind: no loop may call ``expf``/``exp`` (one libm call per element; the kernels
have a vectorisable ``exp_f32``).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

LABEL = re.compile(r"^(\.LBB\d+_\d+):", re.M)
BRANCH = re.compile(r"^\s*(?:b|b\.\w+|cbn?z\s+[wx]\d+,|tbn?z\s+[wx]\d+,\s*#\d+,)\s*(\.LBB\d+_\d+)\s*$")
INSN = re.compile(r"^\s+([a-z][a-z0-9.]*)\s*(.*?)\s*(?://.*)?$")

VREG = re.compile(r"^v\d+\.(\d+)([bhsd])$")          # v3.4s, v16.16b
FP_ARITH = {"fadd", "fsub", "fmul", "fdiv", "fmadd", "fmsub", "fnmadd", "fnmsub", "fnmul", "fmax",
            "fmin", "fmaxnm", "fminnm", "fsqrt", "fabs", "fneg", "fcsel", "fmla", "fmls",
            "faddp", "fmaxp", "fminp", "fmaxnmp", "fminnmp", "frecpe", "frecps", "frsqrte",
            "frsqrts", "fmulx", "fcmeq", "fcmge", "fcmgt", "fcmle", "fcmlt", "fcmp", "fcmpe",
            "fccmp", "fcvtzs", "fcvtzu", "fcvtns", "fcvtms", "fcvtps", "fcvtas", "scvtf", "ucvtf",
            "fcvt", "fcvtl", "fcvtl2", "fcvtn", "fcvtn2"} | {f"frint{c}" for c in "anpmxzi"}
DOT = {"sdot", "udot", "usdot", "sudot"}
FMA_VEC = {"fmla", "fmls"}
FMA_SCALAR = {"fmadd", "fmsub", "fnmadd", "fnmsub"}
LIBM_EXP = {"expf", "exp", "__expf", "__exp", "__expf_finite", "__exp_finite"}
SPILL = re.compile(r"^(?:ldr|str|ldur|stur|ldp|stp)$")
LOADSTORE = re.compile(r"^(?:ld|st)[a-z0-9]*$")


@dataclass
class Loop:
    """One innermost loop: its label, instruction count and per-class tallies."""
    label: str
    n_insns: int
    classes: Counter = field(default_factory=Counter)
    mnemonics: Counter = field(default_factory=Counter)   # SIMD/FP/dot mnemonics with lanes
    calls: list = field(default_factory=list)

    @property
    def vec_fp_ops(self) -> int:
        c = self.classes
        return c["fma_vec"] + c["fp_vec"] + c["fp64_vec"]

    @property
    def scalar_fp_ops(self) -> int:
        return self.classes["fp_scalar"] + self.classes["fma_scalar"] + self.classes["fp64"]

    @property
    def fp_ops(self) -> int:
        return self.vec_fp_ops + self.scalar_fp_ops

    @property
    def int_ops(self) -> int:
        return self.classes["int_vec"] + self.classes["dot"]

    def summary(self, top: int = 6) -> str:
        """``fmla.4s x64, ldr.q x70 (spill 128), bl expf``-style one-liner."""
        parts = [f"{m} x{n}" for m, n in self.mnemonics.most_common(top)]
        if self.classes["spill"]:
            parts.append(f"stack q-spills x{self.classes['spill']}")
        parts += [f"bl {c}" for c in sorted(set(self.calls))]
        return ", ".join(parts) or "no SIMD/FP instructions"


def _classify(mnem: str, ops: str) -> tuple[str | None, str | None]:
    """(class, mnemonic label for the histogram) of one instruction."""
    regs = [o.strip() for o in ops.split(",")]
    first = regs[0] if regs else ""
    if SPILL.match(mnem) and re.match(r"q\d+$", first) and re.search(r"\[(?:sp|x29)\b", ops):
        return "spill", None
    if mnem in ("bl", "blr"):
        return "call", None
    vm = VREG.match(first)
    lanes = f".{vm.group(1)}{vm.group(2)}" if vm else ""
    if mnem in DOT:
        return "dot", mnem + lanes
    if mnem in FP_ARITH or (mnem.startswith("f") and vm and not LOADSTORE.match(mnem)
                            and mnem not in ("fmov",)):
        if vm:
            if vm.group(2) == "d":
                return "fp64_vec", mnem + lanes
            return ("fma_vec" if mnem in FMA_VEC else "fp_vec"), mnem + lanes
        if re.match(r"d\d+$", first):
            return "fp64", mnem + ".d"
        if re.match(r"[sh]\d+$", first):
            loop_cls = "fma_scalar" if mnem in FMA_SCALAR else "fp_scalar"
            return loop_cls, mnem + "." + first[0]
        return None, None
    if mnem in ("scvtf", "ucvtf", "fcvtzs", "fcvtzu") and not vm:
        return None, None
    if vm and not LOADSTORE.match(mnem) and mnem not in ("mov", "movi", "dup", "ins", "umov",
                                                        "smov", "ext", "zip1", "zip2", "uzp1",
                                                        "uzp2", "trn1", "trn2", "tbl", "rev64",
                                                        "mvni", "orr", "and", "bic", "eor"):
        return "int_vec", mnem + lanes
    return None, None


def _spans(lines: list[str]) -> list[tuple[int, int, str]]:
    """(first line, last line, label) of every loop: a label and the last branch back to it."""
    where = {}
    spans = {}
    for i, line in enumerate(lines):
        m = LABEL.match(line)
        if m:
            where[m.group(1)] = i
            continue
        b = BRANCH.match(line)
        if b and b.group(1) in where:
            spans[b.group(1)] = (where[b.group(1)], i)
    return [(s, e, lab) for lab, (s, e) in spans.items()]


def loops(asm: str) -> list[Loop]:
    """The innermost loops of ``asm`` with their instruction tallies."""
    lines = asm.splitlines()
    spans = _spans(lines)
    inner = [(s, e, lab) for s, e, lab in spans
             if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2, _ in spans)]
    out = []
    for s, e, lab in sorted(inner):
        loop = Loop(lab, 0)
        for line in lines[s + 1:e + 1]:
            m = INSN.match(line)
            if not m or m.group(1).startswith("."):
                continue
            mnem, ops = m.group(1), m.group(2)
            loop.n_insns += 1
            cls, label = _classify(mnem, ops)
            if cls is None:
                continue
            loop.classes[cls] += 1
            if label:
                loop.mnemonics[label] += 1
            if cls == "call":
                loop.calls.append(ops.split()[0] if mnem == "bl" else "<indirect>")
        out.append(loop)
    return out


@dataclass
class Verdict:
    ok: bool
    hot: Loop | None
    problems: list[str]
    n_loops: int
    n_vector_loops: int
    n_scalar_fp_loops: int


def hot_loop(found: list[Loop], kind: str) -> Loop | None:
    if kind == "fma":
        key = lambda lp: (lp.classes["fma_vec"], -lp.scalar_fp_ops)   # noqa: E731
    elif kind == "dot":
        key = lambda lp: (lp.int_ops, lp.n_insns)                      # noqa: E731
    else:
        key = lambda lp: (lp.fp_ops, lp.n_insns)                       # noqa: E731
    return max(found, key=key, default=None)


def check(asm: str, kind: str, dotprod: bool = False) -> Verdict:
    """Judge the loops of one kernel's assembly (see the module docstring for the rules)."""
    found = loops(asm)
    hot = hot_loop(found, kind)
    problems = []
    exp_loops = [lp.label for lp in found if LIBM_EXP & set(lp.calls)]
    if exp_loops:
        problems.append(f"{len(exp_loops)} loop(s) call libm exp per element "
                        f"({', '.join(exp_loops[:4])})")
    c = hot.classes if hot else Counter()
    if kind == "fma":
        if not c["fma_vec"]:
            problems.append("no loop uses vector FMAs (fmla v.4s)")
        if c["fma_scalar"] or c["fp_scalar"] > c["fma_vec"] or c["fp64"] or c["fp64_vec"]:
            problems.append(f"hot loop is scalar: {c['fma_vec']} vector FMAs, "
                            f"{c['fma_scalar']} scalar FMAs, {c['fp_scalar']} scalar float32 "
                            f"and {c['fp64'] + c['fp64_vec']} float64 ops")
        if c["call"]:
            problems.append(f"hot loop calls {sorted(set(hot.calls))}")
    elif kind == "vector":
        if hot is None or not hot.fp_ops:
            problems.append("no loop does float arithmetic")
        elif not hot.vec_fp_ops or hot.scalar_fp_ops:
            problems.append(f"hot loop is not vector: {hot.vec_fp_ops} vector and "
                            f"{hot.scalar_fp_ops} scalar float ops")
    elif kind == "dot":
        if hot is None or not hot.int_ops:
            problems.append("no loop uses vector integer instructions")
        elif dotprod and not c["dot"]:
            problems.append("core has dotprod (asimddp) but the hot loop uses no sdot/udot")
        elif not dotprod and c["dot"]:
            problems.append("sdot/udot on a core without dotprod")   # would be SIGILL
    elif kind != "info":
        raise ValueError(f"unknown kernel kind {kind!r}")
    vec = sum(1 for lp in found if lp.vec_fp_ops + lp.int_ops)
    scal = sum(1 for lp in found if lp.scalar_fp_ops and not lp.vec_fp_ops)
    return Verdict(not problems, hot, problems, len(found), vec, scal)
