"""What a kernel's inner loops execute, read from its aarch64 assembly (Numba's ``inspect_asm``).

Pure text processing, so it runs (and is unit-tested) on any host; ``make test-arm`` feeds it the
assembly of kernels compiled under an emulated Cortex-A53/A72/A76.

Loops are found the way a compiler finds them, not by text layout (LLVM places blocks of an
outer loop after the inner loop's branch back): the assembly is cut into basic blocks (at
``.LBB<f>_<n>`` labels and after branches), a control-flow graph is built (``b``, ``b.<cond>``,
``cbz``/``cbnz``, ``tbz``/``tbnz``, ``br`` through a jump table, fall-through), and every back
edge to a block that dominates its source defines a natural loop. *Innermost* loops contain no
other loop's header. Each instruction of a loop falls into one class:

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
    vmem       other vector loads/stores (``ldp q0, q1, [x9]``, ``ld1r``): operands, or a tile
               kept in memory through a pointer (listed, not judged: a loop with as many vector
               loads/stores as multiplies is memory-bound)
    call       ``bl <symbol>`` / ``blr``: a call per iteration (``expf``, ``tanhf`` hurt most)

Verdicts (``check``), per kernel *kind*:

    fma    (convolutions, GEMM): the hot loop is the innermost loop with the most vector FMAs; it
           must use ``fmla v.4s``, no scalar FMA, no float64, fewer scalar float ops than vector
           FMAs (a scalar multiply that prepares a broadcast operand is fine), and call nothing
    vector (norms, element-wise, reductions): the hot loop is the innermost loop with the most
           vector float arithmetic. Such kernels hold one loop per operation (add, sigmoid,
           ...) chosen at run time, each vectorised with a scalar remainder loop, so every
           scalar float loop must have a vector twin: a vector loop doing at least the same
           kinds of float32 arithmetic (``fmadd`` ~ ``fmla``; compares, selects, conversions,
           negation ignored). A scalar loop without one is an operation that stayed scalar.
           Scalar float64 loops (per-channel statistics, float64 accumulators) are listed,
           not judged.
    dot    (int8 convolutions): the hot loop (most dot products, else most vector integer
           multiplies) must multiply with vector instructions, use ``sdot``/``udot`` when the
           kernel is the dot-product variant, and never on a core without dotprod
    info   (data movement): printed, never judged
and for every kind: no loop may call ``expf``/``exp`` or ``tanhf``/``tanh`` (one libm call per
element; the kernels have vectorisable ``exp_f32`` and ``tanh_f32``).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

CODE_LABEL = re.compile(r"^(\.LBB\d+_\d+|[A-Za-z_$][\w$.]*):")   # blocks and function symbols
INSN = re.compile(r"^\s+([a-z][a-z0-9.]*)\s*(.*?)\s*(?://.*)?$")
JUMP_TABLE_REF = re.compile(r"^\s+\.(?:byte|hword|word|xword)\s.*?(\.LBB(\d+)_\d+)")
TARGET = re.compile(r"(\.LBB\d+_\d+)\s*$")
CONDITIONAL = re.compile(r"^(?:b\.\w+|cbn?z|tbn?z)$")

VREG = re.compile(r"^v\d+\.(\d+)([bhsd])$")          # v3.4s, v16.16b
FP_ARITH = {"fadd", "fsub", "fmul", "fdiv", "fmadd", "fmsub", "fnmadd", "fnmsub", "fnmul", "fmax",
            "fmin", "fmaxnm", "fminnm", "fsqrt", "fabs", "fneg", "fcsel", "fmla", "fmls",
            "faddp", "fmaxp", "fminp", "fmaxnmp", "fminnmp", "frecpe", "frecps", "frsqrte",
            "frsqrts", "fmulx", "fcmeq", "fcmge", "fcmgt", "fcmle", "fcmlt", "fcmp", "fcmpe",
            "fccmp", "fcvtzs", "fcvtzu", "fcvtns", "fcvtms", "fcvtps", "fcvtas", "scvtf", "ucvtf",
            "fcvt", "fcvtl", "fcvtl2", "fcvtn", "fcvtn2"} | {f"frint{c}" for c in "anpmxzi"}
DOT = {"sdot", "udot", "usdot", "sudot"}
INT_MUL = DOT | {"mul", "mla", "mls", "smull", "smull2", "umull", "umull2", "smlal", "smlal2",
                 "umlal", "umlal2", "sadalp", "uadalp", "smmla", "ummla", "usmmla"}
FMA_VEC = {"fmla", "fmls"}
FMA_SCALAR = {"fmadd", "fmsub", "fnmadd", "fnmsub"}
# libm calls per element that the kernels replace with vectorisable plain arithmetic
# (kernels/f32_elementwise.py exp_f32, tanh_f32)
LIBM_PER_ELEMENT = {f"{pre}{fn}{suf}" for fn in ("exp", "expf", "tanh", "tanhf")
                    for pre in ("", "__") for suf in ("", "_finite")}
SPILL = re.compile(r"^(?:ldr|str|ldur|stur|ldp|stp)$")
LOADSTORE = re.compile(r"^(?:ld|st)[a-z0-9]*$")
NOT_ARITH = {"mov", "movi", "dup", "ins", "umov", "smov", "ext", "zip1", "zip2", "uzp1", "uzp2",
             "trn1", "trn2", "tbl", "rev64", "mvni", "orr", "and", "bic", "eor", "bsl", "bit",
             "bif", "fmov"}
# Arithmetic kinds a scalar loop and its vector twin share (``_kinds``); compares, selects,
# conversions and sign flips are left out: they change form when vectorised (fcsel -> bsl).
_KIND = {"fmadd": "fma", "fmsub": "fma", "fnmadd": "fma", "fnmsub": "fma", "fmla": "fma",
         "fmls": "fma", "fadd": "add", "fsub": "add", "faddp": "add", "fmul": "mul",
         "fnmul": "mul", "fmulx": "mul", "fdiv": "div", "fsqrt": "sqrt", "fmax": "minmax",
         "fmin": "minmax", "fmaxnm": "minmax", "fminnm": "minmax", "frecpe": "div",
         "frecps": "div", "frsqrte": "sqrt", "frsqrts": "sqrt",
         **{f"frint{c}": "round" for c in "anpmxzi"}}


@dataclass
class Loop:
    """One innermost loop: its header label, instruction count and per-class tallies."""
    label: str
    n_insns: int = 0
    depth: int = 1                                        # loops it sits in, itself included
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

    @property
    def int_muls(self) -> int:
        """Vector integer multiplies (dot products included): the work of an int8 conv."""
        return sum(n for m, n in self.mnemonics.items() if m.split(".")[0] in INT_MUL)

    def kinds(self) -> set[str]:
        """The kinds of float32 arithmetic (``_KIND``) the loop does."""
        return {_KIND[m.split(".")[0]] for m in self.mnemonics
                if m.split(".")[0] in _KIND and m.split(".")[-1] in ("s", "4s", "2s")}

    def summary(self, top: int = 6) -> str:
        """``fmla.4s x64, stack q-spills x70, bl expf``-style one-liner."""
        parts = [f"{m} x{n}" for m, n in self.mnemonics.most_common(top)]
        if self.classes["spill"]:
            parts.append(f"stack q-spills x{self.classes['spill']}")
        if self.classes["vmem"]:
            parts.append(f"q loads/stores x{self.classes['vmem']}")
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
    if LOADSTORE.match(mnem) and (re.match(r"q\d+$", first) or first.startswith("{")):
        return "vmem", None
    vm = VREG.match(first)
    lanes = f".{vm.group(1)}{vm.group(2)}" if vm else ""
    if mnem in DOT:
        return "dot", mnem + lanes
    if mnem in FP_ARITH or (mnem.startswith("f") and vm and not LOADSTORE.match(mnem)
                            and mnem not in NOT_ARITH):
        if vm:
            if vm.group(2) == "d":
                return "fp64_vec", mnem + lanes
            return ("fma_vec" if mnem in FMA_VEC else "fp_vec"), mnem + lanes
        if re.match(r"d\d+$", first):
            return "fp64", mnem + ".d"
        if re.match(r"[sh]\d+$", first):
            return ("fma_scalar" if mnem in FMA_SCALAR else "fp_scalar"), mnem + "." + first[0]
        return None, None
    if vm and not LOADSTORE.match(mnem) and mnem not in NOT_ARITH:
        return "int_vec", mnem + lanes
    return None, None


# --- control flow -----------------------------------------------------------------------------
@dataclass
class _Block:
    name: str
    func: str                                   # the function it belongs to (order in the text)
    insns: list = field(default_factory=list)   # (mnemonic, operands)
    succ: list = field(default_factory=list)
    falls_through: bool = True


def _blocks(asm: str) -> tuple[list[_Block], list[int]]:
    """Basic blocks with successor indices, and the indices of function entry blocks."""
    blocks: list[_Block] = []
    entries: list[int] = []
    jump_tables: dict[str, list[str]] = {}
    llvm_number: dict[int, str] = {}            # function (by order) -> the <f> of .LBB<f>_<n>
    cur: _Block | None = None
    owner = -1
    anon = 0

    def start(name: str) -> _Block:
        nonlocal cur
        blk = _Block(name, str(owner))
        if cur is not None and cur.falls_through:
            cur.succ.append(name)
        blocks.append(blk)
        cur = blk
        return blk

    for line in asm.splitlines():
        m = CODE_LABEL.match(line)
        if m:
            name = m.group(1)
            if name.startswith(".LBB"):
                llvm_number.setdefault(owner, name[4:].split("_")[0])
            else:                               # a function symbol: no fall-through into it
                cur = None
                owner += 1
                entries.append(len(blocks))
            start(name)
            continue
        jt = JUMP_TABLE_REF.match(line)
        if jt:
            jump_tables.setdefault(jt.group(2), []).append(jt.group(1))
            continue
        m = INSN.match(line)
        if not m or cur is None:
            continue
        mnem, ops = m.group(1), m.group(2)
        if cur.falls_through is False:           # code after a terminator: a new block
            anon += 1
            cur = None
            start(f"{blocks[-1].name}+{anon}")
        cur.insns.append((mnem, ops))
        if mnem == "b" or CONDITIONAL.match(mnem):
            t = TARGET.search(ops)
            if t:
                cur.succ.append(t.group(1))
            cur.falls_through = mnem != "b"
            if cur.falls_through:                # conditional: the fall-through starts a block
                anon += 1
                start(f"{cur.name}+{anon}")
        elif mnem in ("ret", "br", "brk", "udf", "eret"):
            if mnem == "br":                     # through a jump table of this function
                cur.succ.append(("jt", cur.func))
            cur.falls_through = False
    index = {b.name: i for i, b in enumerate(blocks)}
    for b in blocks:
        succ = []
        for s in b.succ:
            names = jump_tables.get(llvm_number.get(int(s[1]), "?"), []) \
                if isinstance(s, tuple) else [s]
            succ += [index[n] for n in names if n in index]
        b.succ = sorted(set(succ))
    return blocks, entries


def _dominators(n: int, succ: list[list[int]], entries: list[int]) -> list[int]:
    """Immediate dominators (Cooper, Harvey, Kennedy) from a virtual root ``n`` over all
    function entries; -1 for unreachable blocks."""
    graph = succ + [entries]
    order, seen = [], [False] * (n + 1)
    stack = [(n, iter(graph[n]))]
    seen[n] = True
    while stack:                                 # iterative post-order DFS
        node, it = stack[-1]
        nxt = next((s for s in it if not seen[s]), None)
        if nxt is None:
            order.append(node)
            stack.pop()
        else:
            seen[nxt] = True
            stack.append((nxt, iter(graph[nxt])))
    rpo = order[::-1]
    pos = {v: i for i, v in enumerate(rpo)}
    preds: list[list[int]] = [[] for _ in range(n + 1)]
    for v in rpo:
        for s in graph[v]:
            preds[s].append(v)
    idom = [-1] * (n + 1)
    idom[n] = n

    def meet(a: int, b: int) -> int:
        while a != b:
            while pos[a] > pos[b]:
                a = idom[a]
            while pos[b] > pos[a]:
                b = idom[b]
        return a

    changed = True
    while changed:
        changed = False
        for v in rpo[1:]:
            done = [p for p in preds[v] if idom[p] != -1]
            if not done:
                continue
            new = done[0]
            for p in done[1:]:
                new = meet(p, new)
            if idom[v] != new:
                idom[v], changed = new, True
    return idom[:n]


def loops(asm: str) -> list[Loop]:
    """The innermost natural loops of ``asm`` with their instruction tallies."""
    blocks, entries = _blocks(asm)
    n = len(blocks)
    if not n:
        return []
    succ = [b.succ for b in blocks]
    idom = _dominators(n, succ, entries)

    def dominates(h: int, u: int) -> bool:
        while u != -1 and u < n:
            if u == h:
                return True
            nxt = idom[u]
            if nxt == u or nxt >= n:
                return False
            u = nxt
        return False

    preds: list[list[int]] = [[] for _ in range(n)]
    for u in range(n):
        for s in succ[u]:
            preds[s].append(u)
    bodies: dict[int, set[int]] = {}
    for u in range(n):
        if idom[u] == -1:
            continue
        for h in succ[u]:
            if dominates(h, u):                  # back edge u -> h: natural loop of h
                body = bodies.setdefault(h, {h})
                work = [u]
                while work:
                    v = work.pop()
                    if v not in body and idom[v] != -1:
                        body.add(v)
                        work += preds[v]
    out = []
    for h, body in bodies.items():
        if any(h2 != h and h2 in body for h2 in bodies):
            continue                             # holds another loop: not innermost
        loop = Loop(blocks[h].name, depth=sum(1 for b2 in bodies.values() if h in b2))
        for i in sorted(body):
            for mnem, ops in blocks[i].insns:
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
    return sorted(out, key=lambda lp: [int(p) if p.isdigit() else p
                                       for p in re.split(r"(\d+)", lp.label)])


@dataclass
class Verdict:
    ok: bool
    hot: Loop | None
    problems: list[str]
    n_loops: int
    n_vector_loops: int
    n_scalar_fp_loops: int
    scalar_only: list = field(default_factory=list)     # scalar float loops without a vector twin


def hot_loop(found: list[Loop], kind: str) -> Loop | None:
    if kind == "fma":
        key = lambda lp: (lp.classes["fma_vec"], -lp.scalar_fp_ops)   # noqa: E731
    elif kind == "dot":
        key = lambda lp: (lp.classes["dot"], lp.int_muls, lp.int_ops)  # noqa: E731
    else:
        key = lambda lp: (lp.vec_fp_ops, lp.fp_ops, lp.n_insns)        # noqa: E731
    return max(found, key=key, default=None)


def scalar_without_twin(found: list[Loop]) -> list[Loop]:
    """Scalar float32 loops for which no vector loop does the same kinds of arithmetic.

    Scalar float64 loops are not counted: in these kernels they are deliberate bookkeeping
    (per-channel statistics and coefficients, float64 accumulators), listed but not judged.
    """
    vector = [lp.kinds() for lp in found if lp.vec_fp_ops]
    return [lp for lp in found
            if lp.classes["fp_scalar"] + lp.classes["fma_scalar"] and not lp.vec_fp_ops
            and lp.kinds() and not any(lp.kinds() <= v for v in vector)]


def check(asm: str, kind: str, dotprod: bool = False, require_dot: bool | None = None) -> Verdict:
    """Judge the loops of one kernel's assembly (see the module docstring for the rules).

    ``dotprod``: the core has the dot product instructions; ``require_dot`` (default
    ``dotprod``): an int8 kernel must use them (its sdot variant; a portable variant need not).
    """
    require_dot = dotprod if require_dot is None else require_dot
    if kind not in ("fma", "vector", "dot", "info"):
        raise ValueError(f"unknown kernel kind {kind!r}")
    found = loops(asm)
    hot = hot_loop(found, kind)
    problems = []
    libm_loops = [lp.label for lp in found if LIBM_PER_ELEMENT & set(lp.calls)]
    if libm_loops:
        problems.append(f"{len(libm_loops)} loop(s) call libm exp/tanh per element "
                        f"({', '.join(libm_loops[:4])})")
    c = hot.classes if hot else Counter()
    lonely = scalar_without_twin(found)
    if kind == "fma":
        if not c["fma_vec"]:
            problems.append("no loop uses vector FMAs (fmla v.4s)")
        elif c["fma_scalar"] or c["fp_scalar"] > c["fma_vec"] or c["fp64"] or c["fp64_vec"]:
            problems.append(f"hot loop is scalar: {c['fma_vec']} vector FMAs, "
                            f"{c['fma_scalar']} scalar FMAs, {c['fp_scalar']} scalar float32 "
                            f"and {c['fp64'] + c['fp64_vec']} float64 ops")
        if c["call"]:
            problems.append(f"hot loop calls {sorted(set(hot.calls))}")
    elif kind == "vector":
        if hot is None or not hot.vec_fp_ops:
            problems.append("no loop does vector float arithmetic")
        for lp in lonely:
            problems.append(f"scalar loop {lp.label} has no vector version: {lp.summary()}")
    elif kind == "dot":
        if hot is None or not hot.int_muls:
            problems.append("no loop multiplies with vector integer instructions")
        elif require_dot and not c["dot"]:
            problems.append("no sdot/udot in the hot loop" + (
                " although the core has dotprod (asimddp)" if dotprod else ""))
        if not dotprod and any(lp.classes["dot"] for lp in found):
            problems.append("sdot/udot on a core without dotprod")   # would be SIGILL
    if kind == "info":
        problems = []
    vec = sum(1 for lp in found if lp.vec_fp_ops + lp.int_ops)
    scal = sum(1 for lp in found if lp.scalar_fp_ops and not lp.vec_fp_ops)
    return Verdict(not problems, hot, problems, len(found), vec, scal, lonely)
