"""The emulated aarch64 cores of ``make test-arm``, for the kernel-bundle builder and the tests.

``tests/arm/setup.sh`` (run by ``make test-arm``) unpacks an arm64 Debian userland with its
python3 and installs the project's aarch64 wheels, Numba, llvmlite and numpy pinned to the host
venv's versions, under ``$MOBILE_ENGINE_HOME/arm``. ``Emulator`` runs that python3 on one core
with qemu-user. Each core gets its own root for qemu's ``-L`` prefix: symlinks to the shared
userland plus a ``proc/cpuinfo`` read from the emulated core itself (``tests/arm/cpuinfo.py``),
because qemu 7.2 shows the guest the host's x86 /proc/cpuinfo. So LLVM, and therefore Numba and
the engine's ISA dispatch, see the emulated core exactly as on a board. A development tool: it
needs this repository's checkout (the set-up script and ``tests/arm/cpuinfo.py``).
"""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Directories of the userland that the emulated programs see; the rest (/proc, /dev, /tmp,
# /sys, /root, /home, /work ...) is the host's.
ROOT_DIRS = ("bin", "etc", "lib", "sbin", "usr", "var")
NICE = "10"             # emulation is background work on a shared machine
SKIP_ENV = ("OPENBLAS_CORETYPE", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "PYTHONHOME",
            "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "QEMU_CPU", "QEMU_LD_PREFIX")
# The cores qemu 7.2 emulates that the engine targets (``qemu-aarch64-static -cpu help``).
CORES = {
    "cortex-a53": "Cortex-A53: NEON only (Pi 3, Pi Zero 2, many phones' little cores)",
    "cortex-a72": "Cortex-A72: NEON only (Pi 4)",
    "cortex-a76": "Cortex-A76: NEON + dot product (Pi 5)",
}


class EmulatorMissing(RuntimeError):
    """No emulated userland: ``tests/arm/setup.sh`` has not run."""


def arm_home() -> Path:
    return Path(os.environ.get("MOBILE_ENGINE_HOME",
                               Path.home() / ".cache" / "mobile-engine")) / "arm"


class Emulator:
    """Runs the arm64 userland's python3 on one emulated core."""

    def __init__(self, home: Path, core: str):
        self.home, self.core = home, core
        self.rootfs = home / "rootfs"
        self.site = (home / "site").resolve()
        self.prefix = home / "cores" / core
        if not (self.rootfs / ".complete").exists() or not (self.site / ".complete").exists():
            raise EmulatorMissing(f"no arm64 userland under {home}: run tests/arm/setup.sh "
                                  f".venv/bin/python (or make test-arm) first")

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in SKIP_ENV}
        env.update(PYTHONPATH=f"{self.site}{os.pathsep}{REPO}",
                   PYTHONPYCACHEPREFIX=str(self.home / "pycache"), ARM_CORE=self.core)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def argv(self, *args, prefix: Path | None = None) -> list[str]:
        return ["nice", "-n", NICE, "qemu-aarch64-static", "-cpu", self.core, "-L",
                str(prefix or self.prefix), str(self.rootfs / "usr" / "bin" / "python3"), *args]

    def prepare(self) -> str:
        """The core's root: the userland's directories and the core's own /proc/cpuinfo."""
        (self.prefix / "proc").mkdir(parents=True, exist_ok=True)
        for d in ROOT_DIRS:
            link = self.prefix / d
            if not link.is_symlink():
                try:
                    link.symlink_to(self.rootfs / d)
                except FileExistsError:         # another job made it
                    pass
        info = subprocess.run(self.argv("-S", str(REPO / "tests/arm/cpuinfo.py"),
                                        prefix=self.rootfs),
                              env=self.env(), capture_output=True, text=True, check=True).stdout
        if "CPU part" not in info:
            raise RuntimeError(f"{self.core}: could not read the emulated core's identity:\n{info}")
        tmp = self.prefix / "proc" / f".cpuinfo.{os.getpid()}.{threading.get_ident()}"
        tmp.write_text(info)
        tmp.replace(self.prefix / "proc" / "cpuinfo")     # atomic: other jobs may be reading
        return next(line.split(":", 1)[1].strip() for line in info.splitlines()
                    if line.startswith("Features"))
