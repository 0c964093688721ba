"""Print the /proc/cpuinfo a Linux kernel would show on the CPU this process runs on.

Run inside the emulator (``qemu-aarch64-static -cpu cortex-a76 ...``). qemu-user (before 8.1)
passes the host's x86 /proc/cpuinfo through, so LLVM's host detection (the CPU name Numba
compiles for) would see a generic aarch64. This script asks the emulated core itself: the
``Features`` line is decoded from the AT_HWCAP/AT_HWCAP2 words qemu puts in the process's
auxiliary vector (the same bits the kernel prints), and implementer/part/variant/revision come
from the core's MIDR_EL1, read with one ``mrs`` instruction (Linux and qemu-user both emulate
that read for user space). ``tests/arm/run.py`` writes the result to ``<prefix>/proc/cpuinfo``
of the emulated core's root, where qemu's ``-L`` prefix lookup serves it to the guest.
Nothing here is a table of what a core "should" have: every field is read from the emulator.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct

# Linux arch/arm64/kernel/cpuinfo.c: hwcap_str, in bit order of AT_HWCAP and AT_HWCAP2.
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt "
         "fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
         "sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm "
          "svef64mm svebf16 i8mm bf16 dgh rng bti mte ecv afp rpres mte3 sme sme_i16i64 "
          "sme_f64f64 sme_i8i32 sme_f16f32 sme_b16f32 sme_f32f32 sme_fa64 wfxt ebf16 sve_ebf16 "
          "cssc rprfm sve2p1 sme2 sme2p1 sme_i16i32 sme_bi32i32 sme_b16b16 sme_f16f16 mops "
          "hbc").split()
AT_HWCAP, AT_HWCAP2 = 16, 26


def auxv() -> dict[int, int]:
    data = open("/proc/self/auxv", "rb").read()
    return dict(struct.iter_unpack("<QQ", data[: len(data) // 16 * 16]))


def midr() -> int:
    """MIDR_EL1 of the executing core: ``mrs x0, midr_el1; ret`` in an executable page."""
    code = struct.pack("<II", 0xD5380000, 0xD65F03C0)
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return int(fn())


def features() -> list[str]:
    aux = auxv()
    h1, h2 = aux.get(AT_HWCAP, 0), aux.get(AT_HWCAP2, 0)
    return ([n for i, n in enumerate(HWCAP) if h1 >> i & 1]
            + [n for i, n in enumerate(HWCAP2) if h2 >> i & 1])


def cpuinfo(n_cpus: int) -> str:
    m = midr()
    block = (f"BogoMIPS\t: 50.00\nFeatures\t: {' '.join(features())}\n"
             f"CPU implementer\t: {m >> 24 & 0xff:#x}\nCPU architecture: 8\n"
             f"CPU variant\t: {m >> 20 & 0xf:#x}\nCPU part\t: {m >> 4 & 0xfff:#05x}\n"
             f"CPU revision\t: {m & 0xf}\n")
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(n_cpus))


if __name__ == "__main__":
    print(cpuinfo(len(os.sched_getaffinity(0))), end="")
