"""Resource limits, so a huge shape is refused with a clear error instead of an OOM kill.

The arena limit defaults to half the memory available when the process starts; set
``MOBILE_ENGINE_MAX_ARENA_MB`` to change it (read here and nowhere else).
"""
from __future__ import annotations

import os

from mobile_engine.errors import ResourceLimitError


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4 << 30      # NOTE: no way to ask (macOS without /proc): assume a 4 GB device


def arena_limit() -> tuple[int, str]:
    """(the arena limit in bytes, where it comes from, for messages)."""
    value = os.environ.get("MOBILE_ENGINE_MAX_ARENA_MB")
    if value:
        try:
            limit = int(float(value) * (1 << 20))
        except ValueError:
            raise ResourceLimitError(f"MOBILE_ENGINE_MAX_ARENA_MB={value!r} is not a number "
                                     f"(MiB, e.g. 512)") from None
        if limit <= 0:
            raise ResourceLimitError(f"MOBILE_ENGINE_MAX_ARENA_MB={value!r} must be positive")
        return limit, f"set by MOBILE_ENGINE_MAX_ARENA_MB={value}"
    return available_memory_bytes() // 2, ("half the available memory; "
                                            "MOBILE_ENGINE_MAX_ARENA_MB changes it")


def max_arena_bytes() -> int:
    return arena_limit()[0]


def check_arena(nbytes: int, where: str) -> None:
    limit, source = arena_limit()
    if nbytes > limit:
        # NOTE: MiB everywhere (compile, inspect, this check), as MOBILE_ENGINE_MAX_ARENA_MB
        raise ResourceLimitError(
            f"{where}: the activations need a {nbytes / 2**20:.2f} MiB arena, over the limit of "
            f"{limit / 2**20:.2f} MiB ({source}): use a smaller input shape")
