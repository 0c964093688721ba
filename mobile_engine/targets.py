"""Compile targets: the CPU a plan is compiled for (``compile --target TARGET``).

A target is this machine (``host``), an ARM core or an x86 level, described by what decides
how its kernels are built: the LLVM CPU name, the LLVM features that matter to the kernels, and
from them the vector registers (``kernels.config.vector_registers``) that size every conv's
register tile and the int8 dot-product variant (``kernels.qu8_conv_common.host_isa``). The
fp32 igemm convs pack their weights for a channel width that suits the target's registers
(``planning/cpu.py``); the plan records the target and, per step, the tile and variant its kernel
runs as there (``mobile_engine/runtime/tiles.py``); ``inspect`` shows them and a Session on
another CPU refits the tiles' rows at load with one note (the packed width stays).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

from mobile_engine.errors import EngineError

HOST = "host"

# LLVM feature spellings that change which kernel code is built (tile widths, dot products);
# a host record keeps only these of the (long) host feature list.
KERNEL_FEATURES = ("+neon", "+dotprod", "+i8mm", "+bf16", "+sve", "+sve2", "+fullfp16",
                   "+sse4.2", "+avx", "+avx2", "+fma", "+avx512f", "+avx512bw", "+avx512vl",
                   "+avx512vnni", "+avxvnni", "+avx512bf16", "+amx-int8")

_V3 = ("+sse4.2", "+avx", "+avx2", "+fma")                       # x86-64-v3 (Haswell)
_V4 = _V3 + ("+avx512f", "+avx512bw", "+avx512vl")               # x86-64-v4 (Skylake-X)
_ARMV8 = ("+neon",)
_ARMV82 = _ARMV8 + ("+fullfp16", "+dotprod")                     # Armv8.2 with FEAT_DotProd
_ARMV9 = _ARMV82 + ("+i8mm", "+bf16", "+sve", "+sve2")


@dataclass(frozen=True)
class Target:
    name: str
    arch: str                      # platform.machine() of the CPU: "x86_64", "aarch64"
    cpu: str                       # LLVM's CPU name
    features: frozenset[str]       # LLVM spellings, KERNEL_FEATURES only
    about: str

    @property
    def registers(self) -> tuple[int, int]:
        """(32-bit lanes per vector register, vector registers)."""
        from kernels import config
        return config.vector_registers(set(self.features))

    @property
    def int8_dot(self) -> str:
        """The int8 conv kernels' dot-product variant: "vnni", "sdot" or "portable"."""
        from kernels.qu8_conv_common import host_isa
        return host_isa(set(self.features))

    def record(self) -> dict:
        """The plan's ``target`` record (the per-step ``tiles`` are added by the compiler)."""
        lanes, count = self.registers
        return {"name": self.name, "arch": self.arch, "cpu": self.cpu,
                "features": sorted(self.features), "vector": [lanes, count],
                "int8_dot": self.int8_dot}


def _t(name, arch, cpu, features, about):
    return Target(name, arch, cpu, frozenset(features), about)


TARGETS = {t.name: t for t in (
    _t("cortex-a53", "aarch64", "cortex-a53", _ARMV8, "NEON (Pi 3, Zero 2, little cores)"),
    _t("cortex-a55", "aarch64", "cortex-a55", _ARMV82, "NEON + sdot (phones' little cores)"),
    _t("cortex-a72", "aarch64", "cortex-a72", _ARMV8, "NEON (Pi 4)"),
    _t("cortex-a76", "aarch64", "cortex-a76", _ARMV82, "NEON + sdot (Pi 5)"),
    _t("cortex-a78", "aarch64", "cortex-a78", _ARMV82, "NEON + sdot (phones' big cores)"),
    _t("cortex-a710", "aarch64", "cortex-a710", _ARMV9, "Armv9: NEON + sdot + i8mm, SVE2"),
    _t("x86-64-v3", "x86_64", "haswell", _V3, "AVX2 + FMA: 8 float lanes, 16 registers"),
    _t("x86-64-v4", "x86_64", "skylake-avx512", _V4, "AVX-512 without VNNI"),
    _t("sapphirerapids", "x86_64", "sapphirerapids",
       _V4 + ("+avx512vnni", "+avxvnni", "+avx512bf16", "+amx-int8"), "AVX-512 + VNNI + AMX"),
    _t("znver4", "x86_64", "znver4", _V4 + ("+avx512vnni", "+avx512bf16"),
       "Zen 4: AVX-512 + VNNI"),
    _t("znver5", "x86_64", "znver5", _V4 + ("+avx512vnni", "+avxvnni", "+avx512bf16"),
       "Zen 5: AVX-512 + VNNI"),
)}


def names() -> list[str]:
    return [HOST, *TARGETS]


def host() -> Target:
    """This machine as Numba compiles for it (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES included)."""
    import llvmlite.binding as llvm
    from numba import config as numba_config

    from kernels import config
    feats = config.compile_features()
    return Target(HOST, platform.machine(), numba_config.CPU_NAME or llvm.get_host_cpu_name(),
                  frozenset(f for f in KERNEL_FEATURES if f in feats), "this machine")


def resolve(name: str) -> Target:
    """The target called ``name``; an EngineError listing the known ones otherwise."""
    if name == HOST:
        return host()
    if name not in TARGETS:
        known = ", ".join(names())
        raise EngineError(f"unknown target {name!r}: choose {known}",
                          cli=f"--target {name}: unknown target; choose {known}")
    return TARGETS[name]
