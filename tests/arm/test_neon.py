"""The instruction checker of ``make test-arm`` (tests/arm/neon.py) on hand-written aarch64 loops
in LLVM's output format: it must pass NEON loops and fail scalar ones, libm exp calls per
element, and dot-product misuse. Runs on any host (plain text processing)."""
import pytest

from tests.arm import neon


def fn(*loops: str, prologue: str = "\tmov\tx8, xzr\n") -> str:
    """A function whose body is the given loop blocks, each ending in a branch back to itself."""
    out = ["\t.text", "kernel:", prologue.rstrip("\n")]
    for i, body in enumerate(loops):
        out.append(f".LBB0_{i + 1}:")
        out += [f"\t{line.strip()}" for line in body.strip().splitlines()]
        out.append("\tsubs\tx8, x8, #1")
        out.append(f"\tb.ne\t.LBB0_{i + 1}")
    out.append("\tret")
    return "\n".join(out) + "\n"


IGEMM = """
ldr s16, [x13, x11, lsl #2]
ldp q3, q0, [x14, #-32]
fmla v1.4s, v3.4s, v16.s[0]
fmla v2.4s, v0.4s, v16.s[0]
ldr s17, [x10, x11, lsl #2]
fmla v4.4s, v3.4s, v17.s[0]
fmla v5.4s, v0.4s, v17.s[0]
"""
SCALAR_FMA = """
ldr s0, [x1], #4
ldr s1, [x2], #4
fmadd s2, s0, s1, s2
"""
SPILLING = IGEMM + "ldr q20, [sp, #4592]\nfmla v20.4s, v3.4s, v16.s[0]\nstr q20, [sp, #4592]\n"
VEC_ADD = """
ldp q0, q1, [x1], #32
ldp q2, q3, [x2], #32
fadd v0.4s, v0.4s, v2.4s
fadd v1.4s, v1.4s, v3.4s
stp q0, q1, [x3], #32
"""
TAIL = """
ldr s0, [x1], #4
ldr s1, [x2], #4
fadd s0, s0, s1
str s0, [x3], #4
"""
EXP_CALL = """
ldr s0, [x19], #4
fneg s0, s0
bl expf
fmov s1, #1.00000000
fadd s0, s0, s1
fdiv s0, s1, s0
str s0, [x20], #4
"""
F64_SUM = """
ldr q0, [x1], #16
fcvtl v1.2d, v0.2s
fcvtl2 v0.2d, v0.4s
fadd v2.2d, v2.2d, v1.2d
fadd v3.2d, v3.2d, v0.2d
"""
SDOT = """
ldr q1, [x9], #16
sdot v0.4s, v1.16b, v2.16b
sdot v3.4s, v4.16b, v2.16b
"""
PORTABLE_DOT = """
ldr q1, [x9], #16
smull v4.8h, v5.8b, v1.8b
smull2 v6.8h, v5.16b, v1.16b
sadalp v0.4s, v4.8h
sadalp v3.4s, v6.8h
"""


def test_neon_fma_loop_passes_and_is_described():
    v = neon.check(fn(IGEMM), "fma")
    assert v.ok, v.problems
    assert v.hot.classes["fma_vec"] == 4 and v.hot.mnemonics["fmla.4s"] == 4
    assert "fmla.4s x4" in v.hot.summary()


def test_scalar_fma_fails():
    v = neon.check(fn(SCALAR_FMA), "fma")
    assert not v.ok and any("no loop uses vector FMAs" in p for p in v.problems)
    v = neon.check(fn(IGEMM + "fmadd s2, s0, s1, s2\n"), "fma")
    assert not v.ok and any("scalar" in p for p in v.problems)


def test_scalar_broadcast_preparation_is_fine_but_float64_is_not():
    """A border path multiplies each broadcast input by 0/1 before 4+ vector FMAs: vector."""
    assert neon.check(fn(IGEMM + "fmul s16, s16, s30\n"), "fma").ok
    assert not neon.check(fn(IGEMM + "fcvt d0, s16\nfmul d0, d0, d1\n"), "fma").ok


def test_hot_loop_is_the_one_with_most_vector_fmas():
    v = neon.check(fn(SCALAR_FMA, IGEMM, VEC_ADD), "fma")
    assert v.ok and v.hot.label == ".LBB0_2" and v.n_loops == 3


def test_stack_spills_are_counted():
    v = neon.check(fn(SPILLING), "fma")
    assert v.ok and v.hot.classes["spill"] == 2
    assert "stack q-spills x2" in v.hot.summary()


@pytest.mark.parametrize("call", ["expf", "tanhf", "__expf_finite"])
def test_libm_call_per_element_fails_in_any_loop(call):
    loop = EXP_CALL.replace("bl expf", f"bl {call}")
    v = neon.check(fn(IGEMM, loop), "fma")
    assert not v.ok and any("libm exp/tanh" in p for p in v.problems)
    assert not neon.check(fn(VEC_ADD, loop), "vector").ok


def test_vector_kernel_with_scalar_tail_passes_scalar_only_fails():
    v = neon.check(fn(VEC_ADD, TAIL), "vector")
    assert v.ok and v.hot.label == ".LBB0_1" and v.n_scalar_fp_loops == 1
    v = neon.check(fn(TAIL), "vector")
    assert not v.ok and any("no loop does vector float" in p for p in v.problems)


def test_an_operation_left_scalar_among_vector_ones_fails():
    """Element-wise kernels hold one loop per operation: each scalar loop needs a vector twin
    (the remainder of a vectorised loop); a scalar sigmoid next to a vector add has none."""
    sigmoid = EXP_CALL.replace("bl expf", "fmadd s0, s0, s2, s3\nfrintm s4, s0")
    v = neon.check(fn(VEC_ADD, TAIL, sigmoid), "vector")
    assert not v.ok and [lp.label for lp in v.scalar_only] == [".LBB0_3"]
    assert any("scalar loop .LBB0_3 has no vector version" in p for p in v.problems)
    twin = "ldr q0, [x1], #16\nfneg v0.4s, v0.4s\nfmla v0.4s, v1.4s, v2.4s\nfrintm v4.4s, v0.4s\n" \
        "fadd v0.4s, v0.4s, v1.4s\nfdiv v0.4s, v1.4s, v0.4s\nstr q0, [x20], #16\n"
    assert neon.check(fn(VEC_ADD, TAIL, sigmoid, twin), "vector").ok

def test_float64_vector_accumulation_counts_as_vector():
    tail64 = "ldr s0, [x1], #4\nfcvt d0, s0\nfadd d2, d2, d0\n"
    v = neon.check(fn(F64_SUM, tail64), "vector")
    assert v.ok and v.hot.label == ".LBB0_1" and v.hot.mnemonics["fadd.2d"] == 2


def test_scalar_float64_bookkeeping_is_not_judged_but_float32_is():
    """Per-channel coefficients in float64 (a norm's mean and scale) run once per channel."""
    coef = "ldr d0, [x1], #8\nfmul d0, d0, d1\nfsqrt d2, d0\nfdiv d0, d3, d2\nfcvt s0, d0\n"
    assert neon.check(fn(VEC_ADD, coef), "vector").ok
    assert not neon.check(fn(VEC_ADD, coef.replace(" d", " s")), "vector").ok


@pytest.mark.parametrize("body,dotprod,require,ok", [
    (SDOT, True, True, True), (PORTABLE_DOT, True, True, False),
    (PORTABLE_DOT, True, False, True), (PORTABLE_DOT, False, False, True),
    (SDOT, False, False, False), (SCALAR_FMA, False, False, False)])
def test_int8_loops_use_sdot_when_required_and_never_without_dotprod(body, dotprod, require, ok):
    v = neon.check(fn(body), "dot", dotprod=dotprod, require_dot=require)
    assert v.ok == ok, v.problems


def test_int8_hot_loop_is_the_dot_loop_not_a_wider_bookkeeping_loop():
    """A weight-sum loop with more (non-multiply) vector integer ops than the dot loop."""
    bookkeeping = "ldr q1, [x9], #16\n" + "sshll v2.8h, v1.8b, #0\nadd v3.4s, v3.4s, v2.4s\n" * 8
    v = neon.check(fn(bookkeeping, SDOT), "dot", dotprod=True)
    assert v.ok and v.hot.label == ".LBB0_2"


def test_only_innermost_loops_are_judged():
    asm = """kernel:
.LBB0_1:
\tmov\tx9, xzr
.LBB0_2:
\tldp\tq0, q1, [x1], #32
\tfmla\tv2.4s, v0.4s, v1.4s
\tsubs\tx9, x9, #1
\tb.ne\t.LBB0_2
\tfmadd\ts0, s1, s2, s0
\tsubs\tx8, x8, #1
\tcbnz\tx8, .LBB0_1
\tret
"""
    found = neon.loops(asm)
    assert [lp.label for lp in found] == [".LBB0_2"]
    assert neon.check(asm, "fma").ok


def test_outer_loop_blocks_placed_after_the_inner_loop_are_not_taken_for_innermost():
    """LLVM places blocks where it likes: here the outer loop's latch (with a scalar fmadd)
    comes after its branch back, and the inner loop sits between; only the CFG tells them
    apart."""
    asm = """kernel:
\tmov\tx8, xzr
.LBB0_1:
\tmov\tx9, xzr
\tb\t.LBB0_3
.LBB0_2:
\tfmadd\ts0, s1, s2, s0
\tsubs\tx8, x8, #1
\tb.ne\t.LBB0_1
\tret
.LBB0_3:
\tldp\tq0, q1, [x1], #32
\tfmla\tv2.4s, v0.4s, v1.4s
\tsubs\tx9, x9, #1
\tb.ne\t.LBB0_3
\tb\t.LBB0_2
"""
    found = neon.loops(asm)
    assert [(lp.label, lp.depth) for lp in found] == [(".LBB0_3", 2)]
    assert neon.check(asm, "fma").ok


def test_jump_table_cases_are_reachable():
    """A switch over operation codes: loops reached only through ``br`` are still found."""
    asm = """kernel:
\tadr\tx10, .LBB0_1
\tldrb\tw11, [x9, x8]
\tadd\tx10, x10, x11, lsl #2
\tbr\tx10
.LBB0_1:
\tldr\tq0, [x1], #16
\tfadd\tv0.4s, v0.4s, v1.4s
\tsubs\tx8, x8, #1
\tb.ne\t.LBB0_1
\tret
.LBB0_2:
\tldr\ts0, [x1], #4
\tfsqrt\ts0, s0
\tsubs\tx8, x8, #1
\tb.ne\t.LBB0_2
\tret
\t.section\t.rodata
.LJTI0_0:
\t.byte\t(.LBB0_1-.LBB0_1)>>2
\t.byte\t(.LBB0_2-.LBB0_1)>>2
"""
    v = neon.check(asm, "vector")
    assert v.n_loops == 2 and not v.ok
    assert [lp.label for lp in v.scalar_only] == [".LBB0_2"]      # sqrt stayed scalar


def test_info_kernels_are_never_judged_and_unknown_kinds_raise():
    assert neon.check(fn(TAIL), "info").ok
    with pytest.raises(ValueError):
        neon.check(fn(TAIL), "simd")


def test_a_tile_kept_in_memory_is_counted():
    """The qu8 6x32 tile on a Cortex-A76 (48 q accumulators > 32 registers): LLVM kept the
    tile in its stack array and loops over pixels, two sdot per ldp/stp pair (LLVM's output)."""
    body = """
ld1r { v16.4s }, [x11], x12
ldp q18, q17, [x14, #-32]
eor v16.16b, v16.16b, v27.16b
sdot v18.4s, v16.16b, v2.16b
sdot v17.4s, v16.16b, v3.16b
stp q18, q17, [x14, #-32]
ldp q18, q17, [x14, #-64]
sdot v18.4s, v16.16b, v0.16b
sdot v17.4s, v16.16b, v1.16b
stp q18, q17, [x14, #-64]
"""
    v = neon.check(fn(body), "dot", dotprod=True)
    assert v.ok and v.hot.classes["vmem"] == 5 and v.hot.classes["spill"] == 0
    assert v.hot.summary() == "sdot.4s x4, q loads/stores x5"
