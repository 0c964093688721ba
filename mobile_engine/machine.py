"""Machine facts for benchmark reports: CPU, ISA features, cores, governor, clock, heat, load.

Everything is read with plain file reads from ``/proc`` and ``/sys`` (Linux), plus llvmlite's view
of the host CPU, so this module imports and runs unchanged on x86-64 and aarch64 (and degrades on
other systems). A fact the machine does not expose is ``None``, never a guess.

The facts dict (``machine_facts()``, also the ``machine`` block of the bench JSON)::

    cpu            str         "AMD EPYC", "Cortex-A72", ... (model name, else ARM part, else LLVM)
    board          str|None    /proc/device-tree/model, e.g. "Raspberry Pi 4 Model B Rev 1.4"
    llvm_cpu       str         LLVM's host CPU ("znver5", "cortex-a72"): what Numba compiles for
    arch           str         platform.machine(): "x86_64", "aarch64", "armv7l"
    isa            [str]       SIMD features that matter to the kernels, in ISA_FEATURES order
    cores          int         logical CPUs of the machine
    cores_usable   int         CPUs this process may run on (sched_getaffinity)
    threads        [int]       thread counts the benchmark used (filled in by the caller)
    governor       str|None    cpufreq scaling governor; "a/b" when CPUs differ
    freq_mhz       float|None  mean current clock over the usable CPUs (scaling_cur_freq)
    max_freq_mhz   float|None  cpuinfo_max_freq
    temp_c         float|None  CPU temperature (a cpu/soc thermal zone, else k10temp/coretemp hwmon)
    loadavg        [float]*3   1, 5 and 15 minute load averages
    mem_total_mb   float|None
    os, python, numpy, numba, llvmlite, onnxruntime (None if not installed), engine: versions
    numba_threads  int         NUMBA_NUM_THREADS (the most threads a Session may use)
    threading_layer str|None   numba.threading_layer() once a parallel kernel ran, else None
    threading_layer_configured str  numba.config.THREADING_LAYER, or its priority list "tbb>omp>workqueue" (kernels/config.py)
    warnings       [str]       see ``machine_warnings``
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# /proc names of the features the kernels care about (NEON/asimd dot products and int8 matmul on
# ARM; FMA/AVX2/AVX-512/VNNI on x86). "neon" is added for 64-bit ARM, whose cpuinfo says "asimd".
ISA_FEATURES = ("neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2",
                "sse4_2", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx_vnni", "avx512_bf16", "amx_int8")

# LLVM host-feature spellings for machines without /proc/cpuinfo flags (macOS, odd kernels).
_LLVM_ALIASES = {"neon": "neon", "dotprod": "asimddp", "i8mm": "i8mm", "bf16": "bf16",
                 "sve": "sve", "sve2": "sve2", "fullfp16": "asimdhp", "sse4.2": "sse4_2",
                 "fma": "fma", "avx2": "avx2", "avx512f": "avx512f", "avx512bw": "avx512bw",
                 "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni",
                 "avx512bf16": "avx512_bf16", "amx-int8": "amx_int8"}

# ARM "CPU part" codes (implementer 0x41) of common boards and servers.
_ARM_PARTS = {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
              0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
              0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
              0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2",
              0xd49: "Neoverse-N2", 0xd4b: "Cortex-A78C", 0xd4f: "Neoverse-V2",
              0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4"}

# NOTE: above half the cores busy in the last minute, other work visibly shifts the medians.
BUSY_LOAD_PER_CORE = 0.5
HOT_C = 80.0          # most boards start throttling around 80-85 C


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _cpuinfo() -> tuple[dict[str, str], set[str]]:
    """First-processor fields of /proc/cpuinfo and the union of all flags/Features."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("flags", "Features"):
            flags.update(value.split())
        else:
            fields.setdefault(key, value)
    return fields, flags


def _llvm_host() -> tuple[str | None, set[str]]:
    try:
        import llvmlite.binding as llvm
        name = llvm.get_host_cpu_name()
        feats = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",")
                 if f.startswith("+")}
        return name, feats
    except Exception:            # noqa: BLE001  (an exotic host must not stop a benchmark)
        return None, set()


def isa_features(flags: set[str], llvm_features: set[str] = frozenset()) -> list[str]:
    """The ISA_FEATURES present, from cpuinfo flags (or LLVM's host features if there are none)."""
    have = set(flags)
    if not have:
        have = {_LLVM_ALIASES[f] for f in llvm_features if f in _LLVM_ALIASES}
    if "asimd" in have:
        have.add("neon")                                  # 64-bit ARM: Advanced SIMD is NEON
    return [f for f in ISA_FEATURES if f in have]


def _cpu_name(fields: dict[str, str], llvm_cpu: str | None) -> str:
    if fields.get("model name"):
        return " ".join(fields["model name"].split())
    part = fields.get("CPU part")
    if part and fields.get("CPU implementer", "").lower() == "0x41":
        try:
            return _ARM_PARTS.get(int(part, 16), f"ARM part {part}")
        except ValueError:
            pass
    if part:
        return f"CPU implementer {fields.get('CPU implementer')} part {part}"
    return platform.processor() or llvm_cpu or "unknown"


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def _governor(cpus: list[int]) -> str | None:
    found = []
    for c in cpus:
        g = _read(f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor")
        if g and g not in found:
            found.append(g)
    return "/".join(found) or None


def _freq_mhz(cpus: list[int], name: str) -> float | None:
    values = []
    for c in cpus:
        v = _read(f"/sys/devices/system/cpu/cpu{c}/cpufreq/{name}")
        if v and v.isdigit():
            values.append(int(v) / 1e3)                  # kHz -> MHz
    return round(sum(values) / len(values), 1) if values else None


def _temperature_c() -> float | None:
    """A CPU/SoC thermal zone if one is named so, else a CPU hwmon sensor, else the first zone."""
    zones = []
    for z in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        kind, temp = _read(z / "type") or "", _read(z / "temp")
        if temp and temp.lstrip("-").isdigit():
            zones.append((kind.lower(), int(temp) / 1e3))
    for kind, t in zones:
        if any(k in kind for k in ("cpu", "soc", "x86_pkg", "package")):
            return t
    for h in sorted(Path("/sys/class/hwmon").glob("hwmon*")):
        if (_read(h / "name") or "") in ("k10temp", "coretemp", "cpu_thermal", "zenpower"):
            temp = _read(h / "temp1_input")
            if temp and temp.lstrip("-").isdigit():
                return int(temp) / 1e3
    return zones[0][1] if zones else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _mem_total_mb() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _configured_layer() -> str:
    """numba.config.THREADING_LAYER, or its priority list ("tbb>omp>workqueue") when it is
    "default" (kernels/config.py: the first that loads)."""
    import numba
    layer = str(numba.config.THREADING_LAYER)
    if layer == "default":
        return ">".join(numba.config.THREADING_LAYER_PRIORITY)
    return layer


def threading_layer() -> str | None:
    """Numba's threading layer in use; None until a parallel kernel has run in this process."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def machine_facts(threads: list[int] | None = None) -> dict:
    """Facts about this machine now (see the module docstring for the fields)."""
    import numba
    import numpy
    from mobile_engine.compiler import ENGINE_VERSION
    fields, flags = _cpuinfo()
    llvm_cpu, llvm_features = _llvm_host()
    cpus = _usable_cpus()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    facts = {
        "cpu": _cpu_name(fields, llvm_cpu),
        "board": _read("/proc/device-tree/model"),
        "llvm_cpu": llvm_cpu,
        "arch": platform.machine(),
        "isa": isa_features(flags, llvm_features),
        "cores": os.cpu_count(),
        "cores_usable": len(cpus),
        "threads": list(threads or []),
        "governor": _governor(cpus),
        "freq_mhz": _freq_mhz(cpus, "scaling_cur_freq"),
        "max_freq_mhz": _freq_mhz(cpus[:1], "cpuinfo_max_freq"),
        "temp_c": _temperature_c(),
        "loadavg": load,
        "mem_total_mb": _mem_total_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "llvmlite": _version("llvmlite"),
        "onnxruntime": _version("onnxruntime"),
        "engine": ENGINE_VERSION,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": threading_layer(),
        "threading_layer_configured": _configured_layer(),
    }
    facts["warnings"] = machine_warnings(facts)
    return facts


def machine_warnings(facts: dict) -> list[str]:
    """Conditions that make latency numbers untrustworthy: governor, load, heat."""
    out = []
    gov = facts.get("governor")
    if gov is not None and gov != "performance":
        out.append(f"CPU governor is {gov!r}, not 'performance': the clock moves with load, so "
                   f"latencies vary; pin it with: echo performance | sudo tee "
                   f"/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")
    load, cores = facts.get("loadavg"), facts.get("cores_usable") or facts.get("cores")
    if load and cores and load[0] > BUSY_LOAD_PER_CORE * cores:
        out.append(f"machine is busy: 1-minute load average {load[0]:.2f} on {cores} cores; other "
                   f"processes share the CPUs, so latencies are noisy")
    temp = facts.get("temp_c")
    if temp is not None and temp >= HOT_C:
        out.append(f"CPU at {temp:.0f} C: it may be throttling (add a heatsink or a fan)")
    return out


def short_name(facts: dict) -> str:
    """A one-cell description: the board if known, else the CPU, with the core count."""
    name = facts.get("board") or facts.get("cpu") or "unknown"
    return f"{name} ({facts.get('cores_usable') or facts.get('cores')} cores, {facts.get('arch')})"


def describe(facts: dict) -> str:
    """The machine block of the terminal report."""
    def opt(v, fmt="{}"):
        return "n/a" if v is None else fmt.format(v)
    board = f" on {facts['board']}" if facts.get("board") else ""
    lines = [
        f"machine: {facts['cpu']}{board} ({facts['arch']}, LLVM {facts.get('llvm_cpu')}), "
        f"{facts['cores_usable']}/{facts['cores']} cores usable, threads used "
        f"{', '.join(map(str, facts.get('threads') or [])) or 'n/a'}",
        f"  isa: {' '.join(facts['isa']) or 'none detected'}",
        f"  governor {opt(facts['governor'])}, clock {opt(facts['freq_mhz'], '{:.0f}')} MHz "
        f"(max {opt(facts['max_freq_mhz'], '{:.0f}')}), temperature "
        f"{opt(facts['temp_c'], '{:.1f}')} C, load {opt(facts['loadavg'])}",
        f"  python {facts['python']}, numpy {facts['numpy']}, numba {facts['numba']}, llvmlite "
        f"{facts['llvmlite']}, onnxruntime {opt(facts['onnxruntime'])}, threading layer "
        f"{facts['threading_layer'] or 'not started'} (configured "
        f"{facts['threading_layer_configured']})",
    ]
    lines += [f"  WARNING: {w}" for w in facts.get("warnings", [])]
    return "\n".join(lines)
