"""``make test-arm``: the engine on emulated aarch64 cores (Cortex-A53, A72, A76).

For each core, one emulated pytest session (qemu-user, ``nice -n 10``) runs
tests/arm/test_emulated.py: the core the engine sees, its int8 ISA dispatch, the int8 conv
edge cases per ISA variant the core has (bit-exact), multistyle26 at 64x64 against the numpy
interpreter and onnxruntime; then, on the ``--full`` cores (default: all three), the
table-driven kernel tests of tests/kernels; last, the instructions of the inner loop of every
kernel the session compiled (tests/arm/neon.py). All sessions run at once: the whole check
takes about their CPU time over the CPUs (29 minutes on 2 busy CPUs; ``--full cortex-a76``
runs the kernel tests on one core only, for a quicker look).
Before the sessions start, the host compiles the plans they run (multistyle26 at 64x64, and
SqueezeNet for the ``--real`` cores) and saves onnxruntime's outputs: plans compiled on x86 run
on every emulated core and are checked there against the host's onnxruntime; the first
``--real`` core also compiles a plan that the host runs afterwards (tests/arm/crossing.py).
Alongside: the negative check (tests/arm/sigill.py): code compiled for an A76 dies with SIGILL
on an emulated A72, so the emulator does enforce the instruction set; and the kernel-bundle
check: a tiny plan's kernels compiled for an A76 under the emulator load on a fresh A76 without
compiling and are refused, with one note, on an A72. Prints the instruction table
per kernel and core; exits 1 if anything failed. Emulated timings mean nothing and are not
reported except as the wall time of this check itself.

Each core gets its own root for qemu's ``-L`` prefix: symlinks to the shared arm64 userland
plus a ``proc/cpuinfo`` read from the emulated core itself (tests/arm/cpuinfo.py), because
qemu 7.2 shows the guest the host's x86 /proc/cpuinfo. So LLVM, and therefore Numba and the
engine's ISA dispatch, see the emulated core exactly as on a board: no NUMBA_CPU_NAME override.

Usage: python tests/arm/run.py [--cores cortex-a53,cortex-a72,cortex-a76] [--full CORES|all]
[--real CORES] [--jobs N] [--no-sigill] [--no-bundle]
(after tests/arm/setup.sh, which ``make test-arm`` runs first).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))           # run as a script: the engine's emulator module
from mobile_engine.emulator import CORES, Emulator, EmulatorMissing, arm_home  # noqa: E402
from tests.arm import crossing  # noqa: E402

import numpy as np  # noqa: E402

# The kernel tests run on the --full cores (tests/arm/plugin.py): the table-driven tests of the
# families the plans use, at their edge shapes. An emulated compile takes 10-60 s, so each file
# may compile only this many kernel variants beyond those the multistyle26 plan (run first)
# already compiled; tests needing more are skipped and counted.
KERNEL_TESTS = {  # file: compile budget (conv kernels take ~1 min each, the others seconds)
    "tests/kernels/test_f32_conv.py": 2,
    "tests/kernels/test_f32_winograd.py": 2,
    "tests/kernels/test_f32_elementwise.py": 2,
    "tests/kernels/test_f32_norm.py": 1,
    "tests/kernels/test_f32_reduce.py": 2,
    "tests/kernels/test_f32_gemm.py": 1,
    "tests/kernels/test_f32_layout.py": 3,
}
KERNEL_SELECT = ("(test_conv2d and not lowering) or test_igemm_every_tile or test_dwconv2d"
                 " or test_unary_table or test_binary_table or test_exp_accuracy"
                 " or test_special_values or test_gemm_table or test_instance_norm_table"
                 " or test_reduce_table or test_softmax_table or test_transpose_nhwc_nchw"
                 " or test_winograd_channels")
FULL = "all"            # the cores that run the kernel tests
REAL = "cortex-a76"     # the cores that run the real network (tests/arm/crossing.py)


def _run(argv: list[str], timeout: float, **kw) -> tuple[int | str, float]:
    """Run ``argv``; (exit code, or "timeout"; CPU seconds it used, children included)."""
    proc = subprocess.Popen(argv, start_new_session=True, **kw)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ("timeout" if expired.is_set() else proc.returncode), usage.ru_utime + usage.ru_stime


def run_core(emu: Emulator, logs: Path, timeout: float, select: str = KERNEL_SELECT,
             budget: dict | None = None, full: bool = True, extra: dict | None = None) -> dict:
    """One emulated pytest session: the plan and core checks, the kernel tests (``full``),
    the instruction table."""
    t0 = time.monotonic()
    features = emu.prepare()
    report = logs / f"{emu.core}.json"
    report.unlink(missing_ok=True)
    asm_dir = logs / f"{emu.core}-asm"
    shutil.rmtree(asm_dir, ignore_errors=True)
    cache = Path(tempfile.mkdtemp(prefix=f"numba-{emu.core}-", dir=emu.home))
    log = logs / f"{emu.core}.log"
    budget = (KERNEL_TESTS if budget is None else budget) if full else {}
    args = ["-m", "pytest", "-p", "tests.arm.plugin", "-p", "no:cacheprovider", "-q",
            "--durations=12", "tests/arm/test_emulated.py", *budget,
            "tests/arm/test_instructions.py",
            "-k", f"({select}) or test_emulated or test_instructions"]
    env = emu.env(NUMBA_CACHE_DIR=cache, ARM_REPORT=report, ARM_ASM_DIR=asm_dir,
                  ARM_COMPILE_BUDGET=json.dumps({Path(f).name: n for f, n in budget.items()}),
                  **(extra or {}))
    try:
        with open(log, "w") as out:
            out.write(f"$ {' '.join(emu.argv(*args))}\n\n")
            out.flush()
            rc, cpu = _run(emu.argv(*args), timeout, cwd=REPO, stdout=out,
                           stderr=subprocess.STDOUT, env=env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    text = log.read_text(errors="replace")
    summary = next((ln.strip("= ") for ln in reversed(text.splitlines())
                    if " passed" in ln or " failed" in ln or " error" in ln), f"rc {rc}")
    budget_line = next((ln for ln in text.splitlines()
                        if ln.startswith("kernel tests per file")), "")
    rows = json.loads(report.read_text()) if report.exists() else []
    return {"core": emu.core, "rc": rc, "summary": summary, "seconds": time.monotonic() - t0,
            "cpu_seconds": cpu, "log": str(log), "asm": str(asm_dir), "rows": rows,
            "features": features, "budget": budget_line, "full": full}


def _no_core_dumps() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))     # qemu would dump the SIGILL'd guest


def sigill_check(home: Path, logs: Path) -> dict:
    """A76 code on an A72 must die with SIGILL; the same code on an A76, and A72 code compiled
    by Numba for the CPU it runs on, must run and agree with numpy."""
    a72, a76 = Emulator(home, "cortex-a72"), Emulator(home, "cortex-a76")
    a72.prepare()
    a76.prepare()
    force = dict(NUMBA_CPU_NAME="cortex-a76", NUMBA_CPU_FEATURES="+neon,+dotprod,+fullfp16")
    script = str(REPO / "tests/arm/sigill.py")
    cases = [  # (name, emulator, env, expect SIGILL, expect dot instructions)
        ("A76 code on an A72", a72, force, True, True),
        ("A76 code on an A76", a76, force, False, True),
        ("host-compiled code on an A72", a72, {}, False, False),
    ]
    results, ok = [], True
    with open(logs / "sigill.log", "w") as log:
        for name, emu, extra, want_ill, want_dot in cases:
            p = subprocess.run(emu.argv(script), cwd=REPO, env=emu.env(**extra),
                               capture_output=True, text=True, timeout=1800,
                               preexec_fn=_no_core_dumps)
            log.write(f"## {name} (rc {p.returncode})\n{p.stdout}{p.stderr}\n")
            has_dot = "dot instructions: yes" in p.stdout
            died = p.returncode in (-signal.SIGILL, 128 + signal.SIGILL)
            good = (died == want_ill and has_dot == want_dot
                    and (want_ill or (p.returncode == 0 and "result:" in p.stdout)))
            ok &= good
            what = ("SIGILL" if died else f"exit {p.returncode}") + \
                f", dot instructions {'yes' if has_dot else 'no'}"
            results.append(f"{'ok  ' if good else 'FAIL'} {name}: {what} (expected "
                           f"{'SIGILL' if want_ill else 'exit 0'}, dot "
                           f"{'yes' if want_dot else 'no'})")
    return {"ok": ok, "lines": results, "log": str(logs / "sigill.log")}


def bundle_check(home: Path, logs: Path) -> dict:
    """Kernel bundles for an ARM core (issue 20, part 3): the host compiles a tiny plan and has
    its kernels compiled for a Cortex-A76 under the emulator (``compile --kernels --target
    cortex-a76``); a fresh emulated A76 with an empty Numba cache then loads every kernel from
    the bundle and compiles none, and an A72 refuses it (another CPU) with one note, compiles,
    and still computes the right output."""
    from mobile_engine import bundle_build
    from tests import bundle_probe
    folder = home / "plans" / "bundle"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    plan = bundle_probe.tiny_plan(folder / "tiny.mplan")
    lines, ok = [], True
    with open(logs / "bundle.log", "w") as log:
        bundle_build.build(plan, "cortex-a76", say=lambda m: log.write(m + "\n"))
        for core, fits in (("cortex-a76", True), ("cortex-a72", False)):
            emu = Emulator(home, core)
            emu.prepare()
            cache = Path(tempfile.mkdtemp(prefix=f"numba-{core}-", dir=home))
            try:
                p = subprocess.run(emu.argv("-m", "tests.bundle_probe", str(plan), "2"),
                                   cwd=REPO, env=emu.env(NUMBA_CACHE_DIR=cache),
                                   capture_output=True, text=True, timeout=3600)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            log.write(f"## {core} (rc {p.returncode})\n{p.stdout}{p.stderr}\n")
            try:
                res = json.loads(p.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                ok = False
                lines.append(f"FAIL {core}: the probe failed (rc {p.returncode})")
                continue
            notes = [w for w in res["warnings"] if w.startswith("KernelBundleWarning")]
            right = bool(np.allclose(res["out"], bundle_probe.reference(), rtol=1e-6))
            good = right and (
                (not res["compiled"] and res["loaded"] >= 2 and not notes) if fits else
                (len(notes) == 1 and "not for this machine" in notes[0]
                 and len(res["compiled"]) > 0))
            ok &= good
            lines.append(f"{'ok  ' if good else 'FAIL'} A76 bundle on {core}: "
                         f"{res['loaded']} kernels loaded, {len(res['compiled'])} compiled, "
                         f"output {'right' if right else 'WRONG'}"
                         + (f"; note: {notes[0].split(': ', 1)[1]}" if notes else ""))
    return {"ok": ok, "lines": lines, "log": str(logs / "bundle.log")}


def table(results: list[dict]) -> str:
    """kernel | kind | core | verdict | the hot loop's SIMD/FP instructions."""
    by_kernel: dict[str, list[dict]] = {}
    for res in results:
        for row in res["rows"]:
            if row["kind"] != "info" or row["in_plan"]:      # helpers are not listed
                by_kernel.setdefault(row["kernel"], []).append(row)
    order = sorted(by_kernel, key=lambda k: (by_kernel[k][0]["kind"] == "info",
                                             not by_kernel[k][0]["in_plan"], k))
    lines = [f"{'kernel':<44} {'kind':<6} {'core':<10} {'':<4} hot inner loop: instructions "
             f"(count per iteration)", "-" * 132]
    for k in order:
        rows = sorted(by_kernel[k], key=lambda r: r["core"])
        steps = sorted({s for r in rows for s in r.get("plan_steps", [])})
        for i, row in enumerate(rows):
            name = (k + (" [plan]" if row["in_plan"] else "")) if i == 0 else \
                (f"  steps: {', '.join(steps)}" if i == 1 and steps else "")
            verdict = "-" if row["kind"] == "info" else ("ok" if row["ok"] else "FAIL")
            lines.append(f"{name:<44} {row['kind'] if i == 0 else '':<6} {row['core']:<10} "
                         f"{verdict:<4} {row['hot']}")
            for prob in row["problems"] if row["kind"] != "info" else []:
                lines.append(f"{'':<67}  ! {prob}")
    return "\n".join(lines)


def claim(home: Path):
    """One ``make test-arm`` at a time per cache (the logs and cores' roots are shared): an
    exclusive lock on ``home/.lock``, held by the returned file until the process ends. Then
    removes the Numba cache directories of runs that were killed before their cleanup."""
    import fcntl
    lock = open(home / ".lock", "w")  # noqa: SIM115  (held until the process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"test-arm: another run holds {home / '.lock'}") from None
    for stale in home.glob("numba-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return lock


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cores", default=",".join(CORES))
    # NOTE: every session is CPU-bound and single-threaded most of the time, and the A76's (with
    # the kernel tests) is the longest: all at once share the CPUs so that the whole check takes
    # about (total CPU time) / CPUs; two at a time leave one CPU running A53 then A72 while the
    # other idles after the A76 (from the sessions' CPU times: about 20% longer on 2 CPUs).
    ap.add_argument("--jobs", type=int, default=len(CORES) + 2,
                    help="emulated sessions run at once (default: all cores, the negative "
                         "check and the bundle check together)")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("ARM_TIMEOUT", "2700")),
                    help="seconds per core (default 2700: within CI's 90 minutes with make test)")
    ap.add_argument("--no-sigill", action="store_true", help="skip the negative check")
    ap.add_argument("--no-bundle", action="store_true",
                    help="skip the kernel-bundle check (an A76 bundle on an A76 and an A72)")
    ap.add_argument("--full", default=FULL,
                    help="cores that also run the kernel tests (comma list, or 'all'; default "
                         f"{FULL}); the others run the core, int8 and plan checks and the "
                         "instruction table")
    ap.add_argument("--real", default=REAL,
                    help=f"cores that also run the real network compiled on the host, the first "
                         f"of them also compiles a plan for the host (default {REAL}; '' none)")
    ap.add_argument("--select", default=KERNEL_SELECT,
                    help="pytest -k expression of the kernel tests to run (default: the subset)")
    ap.add_argument("--budget", type=int, default=None,
                    help="kernel variants each kernel test file may compile (default: "
                         "KERNEL_TESTS in tests/arm/run.py; 0: only the plan's kernels)")
    opts = ap.parse_args()
    cores = [c.strip() for c in opts.cores.split(",") if c.strip()]
    unknown = set(cores) - set(CORES)
    if unknown:
        ap.error(f"unknown cores {sorted(unknown)}; choose from {', '.join(CORES)}")
    home = arm_home()
    try:
        Emulator(home, cores[0])
    except EmulatorMissing as exc:
        raise SystemExit(f"test-arm: {exc}") from None
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    held = claim(home)  # noqa: F841  (the lock is held until exit)
    t0 = time.monotonic()
    lock = threading.Lock()

    def say(msg: str) -> None:
        with lock:
            print(f"test-arm [{time.monotonic() - t0:6.0f}s] {msg}", flush=True)

    full = set(cores) if opts.full == "all" else {c.strip() for c in opts.full.split(",")}
    real = [c for c in (c.strip() for c in opts.real.split(",")) if c in cores]
    plans = home / "plans"
    shutil.rmtree(plans, ignore_errors=True)
    say(f"host: compiling {', '.join(crossing.prepare(plans))} for the emulated cores, and "
        f"onnxruntime's outputs ({plans})")
    reverse_plan = plans / f"from-{real[0]}.mplan" if real else None

    def job(core: str) -> dict:
        what = "kernel tests, plan, int8, instructions" if core in full else \
            "plan, int8, instructions"
        say(f"{core}: {CORES[core]}: starting: {what} (log {logs / (core + '.log')})")
        budget = None if opts.budget is None else {f: opts.budget for f in KERNEL_TESTS}
        extra = {"ARM_PLANS": plans, "ARM_REAL": ",".join(real)}
        if real and core == real[0]:
            extra["ARM_PLAN_OUT"] = reverse_plan
        res = run_core(Emulator(home, core), logs, opts.timeout, opts.select, budget,
                       full=core in full, extra=extra)
        say(f"{core}: {res['summary']} ({res['seconds']:.0f}s)")
        return res

    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        # the longest (full) sessions first, so the short ones fill the other CPU
        futures = [pool.submit(job, c) for c in sorted(cores, key=lambda c: c not in full)]
        sig = None if opts.no_sigill else pool.submit(sigill_check, home, logs)
        bundles = None if opts.no_bundle else pool.submit(bundle_check, home, logs)
        results = [f.result() for f in futures]
        sig = sig.result() if sig else None
        try:
            bundles = bundles.result() if bundles else None
        except Exception as exc:          # the check's own failure: reported, not a traceback
            bundles = {"ok": False, "lines": [f"FAIL the bundle check failed: "
                                              f"{type(exc).__name__}: {exc}"]}

    back = crossing.reverse(reverse_plan, plans) if reverse_plan else None
    print("\nInstructions of each kernel's hot inner loop, per emulated core "
          "(tests/arm/neon.py; [plan]: run by multistyle26):\n")
    print(table(results))
    print()
    for res in results:
        print(f"{res['core']:<11} Features: {res['features']}")
    failed = [r for r in results if r["rc"] != 0]
    print()
    for res in results:
        print(f"{'ok  ' if res['rc'] == 0 else 'FAIL'} {res['core']}: {res['summary']}; host CPU "
              f"{res['cpu_seconds'] / 60:.1f} min (log {res['log']}, assembly {res['asm']})")
        if res["budget"]:
            print(f"       {res['budget']}")
        if res["rc"] != 0:
            tail = Path(res["log"]).read_text(errors="replace").splitlines()
            failures = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))]
            for ln in failures[:25] or tail[-25:]:
                print(f"       {ln}")
    if sig:
        print("\nNegative check (the emulator enforces the instruction set):")
        for line in sig["lines"]:
            print(f"{line}")
    print("\nPlans across devices (tests/arm/crossing.py): the host's plans ran on every core "
          "above (test_a_plan_compiled_on_the_host_runs_here); the other way round:")
    print(f"{'ok  ' if back and back[0] else 'FAIL' if back else 'skip'} "
          f"{back[1] if back else 'no --real core compiled a plan'}")
    if bundles:
        print("\nKernel bundles for an ARM core (a tiny plan's kernels compiled for a Cortex-A76):")
        for line in bundles["lines"]:
            print(line)
    ok = not failed and (sig is None or sig["ok"]) and (back is None or back[0]) and \
        (bundles is None or bundles["ok"])
    print(f"\ntest-arm: {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.0f}s "
          f"(emulated: correctness and instructions only; latency is measured on real boards)")
    (home / "last-report.json").write_text(json.dumps(
        {"results": results, "sigill": sig, "reverse": back, "bundles": bundles, "ok": ok}, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
