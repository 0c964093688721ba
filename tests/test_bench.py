"""`mobile-engine bench` and `bench-report`: every field and its consistency, on a tiny model.

The model (two 3x3 convs with a residual add and a strided conv, 19x23 pixels) runs in well under
a millisecond; each bench uses a handful of runs. Independent references: the FLOP counts are
derived by hand from the ONNX shapes, peak RSS is checked against /proc/self/status, the peer's
outputs come from onnxruntime itself, percentiles from hand-computed order statistics.
"""
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import sys
from pathlib import Path

import numba
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mobile_engine as me
from mobile_engine import bench, bench_report, bench_schema, cli, machine
from mobile_engine.errors import EngineError, InputError

H, W = 19, 23
# (name, Cin, Cout, stride, H_out, W_out): the convs of the tiny model, for hand-derived FLOPs.
CONVS = [("c1", 3, 8, 1, H, W), ("c2", 8, 8, 1, H, W), ("c3", 8, 4, 2, (H - 1) // 2 + 1,
                                                         (W - 1) // 2 + 1)]
CONV_FLOPS = sum(2 * co * ho * wo * ci * 9 for _, ci, co, _, ho, wo in CONVS)
THREADS = [1, 2] if numba.config.NUMBA_NUM_THREADS >= 2 else [1]
RUNS = 5


def tiny_model(seed: int = 7, input_name: str = "image", h: int = H,
               w: int = W) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(x, name, ci, co, stride):
        w = (rng.standard_normal((co, ci, 3, 3)) / np.sqrt(9 * ci)).astype(np.float32)
        b = rng.normal(0, 0.1, co).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"),
                      numpy_helper.from_array(b, f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [name], name=name,
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[stride, stride]))
        return name

    nodes.append(helper.make_node("Relu", [conv(input_name, "c1", 3, 8, 1)], ["r1"], name="r1"))
    nodes.append(helper.make_node("Add", ["r1", conv("r1", "c2", 8, 8, 1)], ["s"], name="s"))
    conv("s", "c3", 8, 4, 2)
    graph = helper.make_graph(
        nodes, "tiny_bench",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("c3", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return path


@pytest.fixture(scope="module")
def report(model_path):
    pytest.importorskip("onnxruntime")
    return bench.run_bench(model_path, threads=THREADS, runs=RUNS, compare="onnxruntime",
                           profile_runs=3, label="here").as_dict()


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no VmHWM in /proc/self/status")


# --- the report's fields -------------------------------------------------------------------------
def test_schema_fields_present_and_valid(report):
    doc = json.loads(json.dumps(report))                       # JSON-serialisable as it is
    assert doc["schema_version"] == bench.SCHEMA_VERSION == 2
    assert set(bench_schema.TOP_FIELDS) <= set(doc)
    assert [r["threads"] for r in doc["results"]] == THREADS
    for r in doc["results"]:
        assert set(bench_schema.RESULT_FIELDS) <= set(r)
        assert set(bench_schema.LATENCY_FIELDS) <= set(r["latency_ms"])
        for op in r["ops"]:
            assert {"name", "kernel", "ms", "percent"} <= set(op)
        assert {"p50", "ratio"} <= set(r["compare"]["onnxruntime"])
    assert {"cpu", "arch", "isa", "threads"} <= set(doc["machine"])
    assert bench.validate_report(doc) is doc
    assert doc["label"] == "here" and doc["runs"] == RUNS
    assert doc["inputs"] == [{"name": "image", "shape": [1, 3, H, W], "dtype": "float32"}]
    assert doc["precision"] == "fp32" and doc["compile_ms"] is None
    assert doc["import_ms"] >= 0                 # the engine is imported already in this process
    assert doc["feeds"] == {"image": "uniform random [0, 1), seed 0"}
    assert doc["peer"] == {"engine": "onnxruntime", "model": doc["model"], "precision": "fp32",
                           "sha256": hashlib.sha256(Path(doc["model"]).read_bytes()).hexdigest()}


def test_latencies_ordered_and_throughput(report):
    for r in report["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]
        assert r["throughput_fps"] == pytest.approx(1000 / lat["mean"])
        assert r["first_run_ms"] > 0 and r["load_ms"] > 0 and r["bind_ms"] > 0


def test_init_is_load_bind_jit_and_cache_state_consistent(report):
    for r in report["results"]:
        jit = r["jit"]
        assert r["init_ms"] == pytest.approx(r["load_ms"] + r["bind_ms"] + jit["ms"])
        assert jit["kernels"] >= 2 and jit["ms"] >= 0
        expected = {(True, True): "mixed", (False, True): "cold", (True, False): "warm",
                    (False, False): "in-process"}[(jit["hits"] > 0, jit["misses"] > 0)]
        assert jit["cache"] == expected
    # a second block binds kernels already compiled in this process, except the variants its
    # own thread count picks (threads=1 binds only serial dispatchers: kernels.config.use_parallel)
    first = report["results"][0]
    for r in report["results"][1:]:
        if r["threads"] == first["threads"] or min(r["threads"], first["threads"]) > 1:
            assert r["jit"]["cache"] == "in-process"


def test_ops_match_plan_and_add_up(report, model_path):
    plan = me.compile(str(model_path))
    for r in report["results"]:
        ops = r["ops"]
        assert [(o["name"], o["kernel"]) for o in ops] == [(s["name"], s["kernel"])
                                                           for s in plan.steps]
        assert all(o["ms"] > 0 for o in ops)
        assert sum(o["percent"] for o in ops) == pytest.approx(100)
        assert r["ops_total_ms"] == pytest.approx(sum(o["ms"] for o in ops))
        for o in ops:
            assert o["percent"] == pytest.approx(100 * o["ms"] / r["ops_total_ms"])
        # steps timed one by one add up to about one run (generous: the machine is shared). With
        # several threads every step is a parallel launch whose helper thread may wait for a busy
        # core, so on a shared machine only the lower bound holds there.
        lat = r["latency_ms"]
        assert lat["min"] / 5 <= r["ops_total_ms"]
        if r["threads"] == 1:
            assert r["ops_total_ms"] <= 5 * lat["p50"]
        assert r["arena_bytes"] == plan.arena_bytes and r["weight_bytes"] == plan.weight_bytes
    assert report["plan"]["steps"] == len(plan.steps)


def test_gflops_only_for_convs_and_from_hand_derived_flops(report):
    for r in report["results"]:
        convs = [o for o in r["ops"] if "conv" in o["kernel"]]
        assert convs and sum(o["flops"] for o in convs) == CONV_FLOPS
        for o in r["ops"]:
            if "conv" in o["kernel"]:
                assert o["gflops"] == pytest.approx(o["flops"] / (o["ms"] * 1e-3) / 1e9)
            else:
                assert o["gflops"] is None


def test_compare_ratio_and_outputs(report):
    import onnxruntime
    for r in report["results"]:
        c = r["compare"]["onnxruntime"]
        assert c["version"] == onnxruntime.__version__
        assert c["ratio"] == pytest.approx(r["latency_ms"]["p50"] / c["p50"])
        assert 0 < c["min"] <= c["p50"] <= c["p90"] <= c["p99"] <= c["max"]
        assert c["max_abs_diff"] is not None and c["max_abs_diff"] < 1e-3
        # fp32 against fp32: far above any int8 figure; the RMS error is at most the max error
        assert c["psnr_db"] is None or c["psnr_db"] > 60
        assert not any("outputs differ" in w for w in r["warnings"])


def test_peer_computing_something_else_is_flagged(model_path, tmp_path, monkeypatch):
    """The peer is handed the same graph with other weights: the outputs differ, and the report
    says the ratio means nothing."""
    pytest.importorskip("onnxruntime")
    other = tmp_path / "other.onnx"
    onnx.save(tiny_model(seed=8), other)
    monkeypatch.setattr(bench, "_peer_source", lambda plan, model: str(other))
    r = bench.run_bench(model_path, runs=2, compare="onnxruntime", profile_runs=1).results[0]
    assert r["compare"]["onnxruntime"]["max_abs_diff"] > 0.05
    assert any("outputs differ from onnxruntime" in w for w in r["warnings"])


def test_agreement_hand_derived():
    a, b = np.array([[1.0, -2.0]], np.float32), np.array([[1.5, -4.0]], np.float32)
    got = bench.agreement([a], ["y"], [b], ["y"])
    # errors 0.5 and 2: MSE 2.125; peak = the reference's range 1.5 - (-4) = 5.5
    assert got["max_abs_diff"] == 2.0 and got["max_abs_ref"] == 4.0
    assert got["psnr_db"] == pytest.approx(10 * math.log10(5.5 ** 2 / 2.125))      # 11.53 dB
    assert bench.agreement([a], ["y"], [b[:, :1]], ["y"]) is None
    assert bench.agreement([a], ["y"], [b], ["z"]) is None
    # an image in [0, 1] off by 0.1 everywhere: 20 dB; off by 0.01: 40 dB
    ref = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    assert bench.agreement([ref + 0.1], ["y"], [ref], ["y"])["psnr_db"] == pytest.approx(20)
    assert bench.agreement([ref - 0.01], ["y"], [ref], ["y"])["psnr_db"] == pytest.approx(40)
    # several outputs: the worst one counts; names matched whatever the order
    two = bench.agreement([ref + 0.1, ref + 0.01], ["p", "q"], [ref, ref], ["q", "p"])
    assert two["psnr_db"] == pytest.approx(20) and two["max_abs_diff"] == pytest.approx(0.1)
    # a constant reference: peak = its |value|; identical outputs: no PSNR
    const = np.full((4,), -2.0, np.float32)
    assert bench.agreement([const + 0.2], ["y"], [const], ["y"])["psnr_db"] == \
        pytest.approx(20)
    same = bench.agreement([ref], ["y"], [ref.copy()], ["y"])
    assert same["max_abs_diff"] == 0 and same["psnr_db"] is None
    # a NaN anywhere is not hidden by a good second output, and is warned about
    bad = ref.copy()
    bad[0, 0, 3, 3] = np.nan
    nan = bench.agreement([bad, ref], ["p", "q"], [ref, ref], ["p", "q"])
    assert math.isnan(nan["max_abs_diff"]) and math.isnan(nan["psnr_db"])
    for precision in ("fp32", "int8"):
        assert "NaN" in bench.disagreement(nan, precision, "fp32")


@pytest.mark.parametrize("diff,ref,psnr,ours,theirs,warned", [
    (1e-4, 1.0, 80.0, "fp32", "fp32", False),
    (0.05, 1.0, 35.0, "fp32", "fp32", True),            # fine for int8, wrong for fp32
    (0.05, 1.0, 35.0, "int8", "fp32", False),           # the float threshold would fire here
    (0.30, 1.0, 25.0, "int8", "fp32", True),
    (0.30, 1.0, 25.0, "fp32", "int8", True),            # fp32 plan against a QDQ model
    (0.0, 1.0, None, "int8", "fp32", False),            # identical
    (0.02, 255.0, 50.0, "fp32", "fp32", False),         # relative to the largest |output|
])
def test_disagreement_criterion(diff, ref, psnr, ours, theirs, warned):
    agree = {"max_abs_diff": diff, "max_abs_ref": ref, "psnr_db": psnr}
    w = bench.disagreement(agree, ours, theirs)
    assert (w is not None) == warned
    if warned:
        assert "outputs differ from onnxruntime" in w
        assert ("PSNR" in w) == ("int8" in (ours, theirs))
    assert "cannot be compared" in bench.disagreement(None, ours, theirs)


def test_memory_fields(report):
    hwm = _vm_hwm_mb() if Path("/proc/self/status").exists() else None
    for r in report["results"]:
        assert 10 < r["peak_rss_mb"] < 1e5
        if hwm is not None:
            assert r["peak_rss_mb"] <= hwm + 1        # peak so far <= the kernel's peak now


def test_machine_block(report):
    m = report["machine"]
    assert m["arch"] == platform.machine() and m["cores"] == os.cpu_count()
    assert m["threads"] == THREADS and set(m["isa"]) <= set(machine.ISA_FEATURES)
    assert m["numba"] == numba.__version__
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags |= set(line.split(":", 1)[1].split())
    for f in ("avx2", "avx512f", "avx512_vnni", "asimddp", "i8mm"):
        assert (f in m["isa"]) == (f in flags), f
    # once a parallel kernel ran, the layer in use is one kernels/config.py asked for
    if m["threading_layer"] is not None:
        assert m["threading_layer"] in m["threading_layer_configured"].split(">")
    assert m["threading_layer"] == report["results"][-1]["threading_layer"]


def test_text_report_shows_blocks_and_profile(report):
    rep = bench.BenchReport.from_dict(report)
    text = rep.text(profile=True)
    for r in report["results"]:
        assert f"threads {r['threads']}:" in text
        for o in r["ops"]:
            assert o["kernel"] in text
    assert "ratio mobile-engine/onnxruntime" in text and "per-op profile" in text
    assert "per-op profile" not in rep.text(profile=False)


# --- pure functions -------------------------------------------------------------------------------
def test_percentiles_hand_derived():
    p = bench.percentiles(list(range(100, 0, -1)))             # 1..100 shuffled order
    # numpy's linear rule: the q-quantile sits at rank (n - 1) q = 99 q
    assert p == {"min": 1.0, "mean": 50.5, "p50": 50.5, "p90": pytest.approx(90.1),
                 "p99": pytest.approx(99.01), "max": 100.0}
    with pytest.raises(InputError):
        bench.percentiles([])


@pytest.mark.parametrize("flags,llvm,expected", [
    # Raspberry Pi 4 (Cortex-A72, 64-bit OS): NEON, no dot product
    ("fp asimd evtstrm crc32 cpuid", (), ["neon", "asimd"]),
    # Pi 5 / Cortex-A76: dot product; a Neoverse-V1 server also has i8mm, bf16 and sve
    ("fp asimd evtstrm aes crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp", (),
     ["neon", "asimd", "asimdhp", "asimddp"]),
    ("fp asimd asimdhp asimddp sve i8mm bf16", (),
     ["neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve"]),
    # 32-bit Raspberry Pi OS says "neon" itself
    ("half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae evtstrm crc32", (),
     ["neon"]),
    ("fpu sse4_2 fma avx2 avx512f avx512bw avx512vl avx512_vnni", (),
     ["sse4_2", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]),
    # no /proc flags (macOS): LLVM's host features
    ("", ("neon", "dotprod", "i8mm", "fp-armv8"), ["neon", "asimddp", "i8mm"]),
    ("", ("avx2", "avx512f", "avx512vnni", "sse4.2"), ["sse4_2", "avx2", "avx512f", "avx512_vnni"]),
])
def test_isa_features(flags, llvm, expected):
    assert machine.isa_features(set(flags.split()), set(llvm)) == expected


PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

processor\t: 1
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
"""


def test_machine_facts_of_a_pi4(monkeypatch):
    """A Raspberry Pi 4's /proc and /sys, faked file by file: every fact read, the warning given."""
    files = {"/proc/cpuinfo": PI4_CPUINFO,
             "/proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4\x00",
             "/proc/meminfo": "MemTotal:        3884328 kB\n"}
    for c in range(4):
        files[f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"] = "ondemand\n"
        files[f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_cur_freq"] = "1500000\n"
        files[f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq"] = "1800000\n"

    def fake_read(path):
        text = files.get(str(path))
        return None if text is None else text.strip("\x00\n ")
    monkeypatch.setattr(machine, "_read", fake_read)
    monkeypatch.setattr(machine, "_usable_cpus", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(machine, "_temperature_c", lambda: 61.3)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (3.5, 1.0, 0.5))
    f = machine.machine_facts([4])
    assert f["cpu"] == "Cortex-A72" and f["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert f["isa"] == ["neon", "asimd"] and f["cores_usable"] == 4 and f["threads"] == [4]
    assert f["governor"] == "ondemand" and f["freq_mhz"] == 1500.0 and f["max_freq_mhz"] == 1800.0
    assert f["mem_total_mb"] == pytest.approx(3793.3, abs=0.1)
    assert any("not 'performance'" in w and "scaling_governor" in w for w in f["warnings"])
    assert any("busy" in w for w in f["warnings"])               # 3.5 > 0.5 * 4 cores
    assert "Raspberry Pi 4" in machine.short_name(f) and "Cortex-A72" in machine.describe(f)


@pytest.mark.parametrize("facts,expect", [
    ({"governor": "performance", "loadavg": [0.1, 0, 0], "cores_usable": 4, "temp_c": 50}, []),
    ({"governor": "powersave", "loadavg": [0.1, 0, 0], "cores_usable": 4}, ["governor"]),
    ({"governor": None, "loadavg": [2.1, 0, 0], "cores_usable": 4}, ["busy"]),
    ({"governor": None, "loadavg": [2.0, 0, 0], "cores_usable": 4}, []),
    ({"governor": None, "loadavg": None, "cores_usable": 4, "temp_c": 84.0}, ["throttling"]),
])
def test_machine_warnings(facts, expect):
    got = machine.machine_warnings(facts)
    assert len(got) == len(expect) and all(e in g for e, g in zip(expect, got))


def test_progress_bar():
    out = io.StringIO()
    bar = bench.Progress(4, "bench x", enabled=True, stream=out)
    for i in range(1, 5):
        bar.update(i)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\rbench x [") and "4/4" in text and "#" * 30 in text
    assert text.endswith("\n")
    quiet = io.StringIO()                                  # auto mode: not a terminal -> silent
    bar = bench.Progress(4, "bench x", stream=quiet)
    for i in range(1, 5):
        bar.update(i)
    bar.close()
    assert quiet.getvalue() == ""


def _load_kernel_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_jit_cache_cold_warm_in_process(tmp_path, monkeypatch):
    """A fresh cached kernel: compiled (cold), then loaded by a new dispatcher (warm), then
    already in memory (in-process), as numba's own dispatcher stats say."""
    from kernels.config import CACHE
    if not CACHE:
        pytest.skip("the Numba cache directory is not writable here")
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "bench_probe_kernel.py"
    src.write_text("from kernels.config import jit\n\n\n@jit\ndef bump(x):\n"
                   "    x[0] += x.dtype.type(1)\n")

    class FakeSession:
        def __init__(self, fn):
            self.x = np.zeros(1, np.float32)
            self._calls = [(fn, (self.x,))]

        def bound_kernels(self):
            return [("probe", "probe", fn) for fn, _ in self._calls]

        def run(self, names, feeds):
            for fn, args in self._calls:
                fn(*args)

    cold = FakeSession(_load_kernel_module(src, "bench_probe_a").bump)
    _, jit = bench._first_run(cold, {})
    assert (jit["cache"], jit["hits"], jit["misses"], jit["kernels"]) == ("cold", 0, 1, 1)
    assert jit["ms"] > 0 and cold.x[0] == 1
    warm = FakeSession(_load_kernel_module(src, "bench_probe_b").bump)
    _, jit = bench._first_run(warm, {})
    assert (jit["cache"], jit["hits"], jit["misses"]) == ("warm", 1, 0)
    _, jit = bench._first_run(warm, {})
    assert (jit["cache"], jit["hits"], jit["misses"], jit["ms"]) == ("in-process", 0, 0, 0)
    assert warm.x[0] == 2


# --- the command ----------------------------------------------------------------------------------
def test_cli_bench_json_plot_profile(model_path, tmp_path, capsys):
    out_json, out_png = tmp_path / "out.json", tmp_path / "ops.png"
    rc = cli.main(["bench", str(model_path), "--shape", f"image=1x3x{H}x{W}", "--threads", "1",
                   "--runs", "3", "--profile-runs", "2", "--profile", "--json", str(out_json),
                   "--plot", str(out_png), "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    doc = bench.validate_report(json.loads(out_json.read_text()), "out.json")
    assert [r["threads"] for r in doc["results"]] == [1] and doc["results"][0]["compare"] == {}
    assert "machine:" in stdout and "per-op profile" in stdout
    for o in doc["results"][0]["ops"]:
        assert o["name"][:40] in stdout
    from PIL import Image
    with Image.open(out_png) as img:
        assert img.format == "PNG" and img.width > 400
        assert img.height >= 18 * len(doc["results"][0]["ops"])
        # bars drawn: both colours present (convs and the other steps)
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert bench_report._FLOP_COLOR in colours and bench_report._OTHER_COLOR in colours


def test_cli_bench_plan_compares_with_its_source(model_path, tmp_path, capsys):
    plan_path = me.compile(str(model_path)).save(tmp_path / "tiny.mplan")
    pytest.importorskip("onnxruntime")
    rc = cli.main(["bench", str(plan_path), "--runs", "2", "--compare", "onnxruntime",
                   "--json", str(tmp_path / "p.json")])
    assert rc == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["source"] == str(model_path) and doc["model"] == str(plan_path)
    assert doc["results"][0]["compare"]["onnxruntime"]["max_abs_diff"] < 1e-3
    # a --shape the plan was not compiled for is refused, naming the input and its shape
    rc = cli.main(["bench", str(plan_path), "--shape", "image=1x3x32x32", "--runs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "image" in err and f"[1, 3, {H}, {W}]" in err


def test_compare_refuses_a_changed_source(model_path, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    src = tmp_path / "copy.onnx"
    src.write_bytes(model_path.read_bytes())
    plan_path = me.compile(str(src)).save(tmp_path / "copy.mplan")
    model = onnx.load(src)
    model.producer_name = "edited"
    onnx.save(model, src)
    rc = cli.main(["bench", str(plan_path), "--runs", "1", "--compare", "onnxruntime"])
    assert rc == 2 and "changed since" in capsys.readouterr().err


def test_missing_onnxruntime_is_a_clear_error(model_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # `import onnxruntime` fails
    with pytest.raises(EngineError, match="onnxruntime is not installed.*pip install onnxruntime"):
        bench.run_bench(model_path, runs=1, compare="onnxruntime")
    rc = cli.main(["bench", str(model_path), "--runs", "1", "--compare", "onnxruntime"])
    captured = capsys.readouterr()
    assert rc == 2 and "onnxruntime is not installed" in captured.err
    assert "threads 1:" not in captured.out                    # refused before measuring


@pytest.mark.parametrize("argv,match", [
    (["--threads", "0"], "--threads 0"),
    (["--runs", "0"], "--runs 0"),
])
def test_bad_arguments(model_path, capsys, argv, match):
    assert cli.main(["bench", str(model_path), *argv]) == 2
    assert match in capsys.readouterr().err


def test_missing_model(tmp_path, capsys):
    assert cli.main(["bench", str(tmp_path / "nope.onnx"), "--runs", "1"]) == 2
    assert "no such file" in capsys.readouterr().err


# --- bench-report ---------------------------------------------------------------------------------
def test_bench_report_one_row_per_file(report, tmp_path, capsys):
    paths = []
    for label in ("pi4", "pi5", "laptop"):
        doc = json.loads(json.dumps(report))
        doc["label"] = label
        doc["results"] = doc["results"][:1]
        doc["results"][0]["latency_ms"]["p50"] = {"pi4": 31.25, "pi5": 12.5, "laptop": 3.125}[label]
        paths.append(tmp_path / f"{label}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "boards.md"
    assert cli.main(["bench-report", *map(str, paths), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == list(bench_report.COLUMNS)
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:] if ln.startswith("|")]
    assert len(rows) == 3
    col = {name: i for i, name in enumerate(header)}
    r0 = report["results"][0]
    for row, label, p50 in zip(rows, ("pi4", "pi5", "laptop"), ("31.25", "12.50", "3.12")):
        assert row[col["machine"]] == label and row[col["p50 ms"]] == p50
        assert row[col["model"]] == "tiny.onnx" and row[col["shape"]] == f"image=1x3x{H}x{W}"
        assert row[col["threads"]] == str(r0["threads"])
        assert row[col["p90 ms"]] == f"{r0['latency_ms']['p90']:.2f}"
        assert row[col["init ms"]].startswith(f"{r0['init_ms']:.0f} (")
        assert row[col["peak RSS MB"]] == f"{r0['peak_rss_mb']:.0f}"
        assert row[col["vs onnxruntime"]].startswith(
            f"{r0['compare']['onnxruntime']['ratio']:.2f}x")
        assert row[col["precision"]] == "fp32"
        psnr = r0["compare"]["onnxruntime"]["psnr_db"]
        assert ("PSNR" in row[col["vs onnxruntime"]]) == (psnr is not None)
    # printed when no -o; both thread blocks of one file give two rows
    assert cli.main(["bench-report", str(tmp_path / "pi4.json")]) == 0
    assert "| tiny.onnx |" in capsys.readouterr().out
    both = tmp_path / "both.json"
    both.write_text(json.dumps(report))
    assert len(bench_report.rows(bench_report.load_reports([both]))) == len(THREADS)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not JSON"),
    ('{"kind": "something-else"}', "not a mobile-engine bench result"),
    ('{"kind": "mobile-engine-bench", "schema_version": 99}', "schema_version 99"),
    ('{"kind": "mobile-engine-bench", "schema_version": 1}', "missing field"),
])
def test_bench_report_bad_files(tmp_path, capsys, content, match):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert cli.main(["bench-report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and match in err


def test_versus_cell_names_another_peer_model_and_psnr():
    c = {"ratio": 0.3456, "p50": 70.0, "psnr_db": 34.25}
    peer = {"engine": "onnxruntime", "model": "/m/style.onnx", "sha256": "0" * 64,
            "precision": "fp32"}
    assert bench_report._versus(c, peer, "/p/style_int8.mplan") == \
        "0.35x (onnxruntime p50 70.00 ms, on style.onnx (fp32), PSNR 34.2 dB)"
    assert bench_report._versus(dict(c, psnr_db=None), peer, "/m/style.onnx") == \
        "0.35x (onnxruntime p50 70.00 ms)"
    assert bench_report._versus(None, None, "x.onnx") == "not measured"


def test_by_kernel_and_chart_bars():
    ops = [{"name": f"s{i}", "kernel": k, "ms": ms, "percent": 100 * ms / 10.0, "flops": 0,
            "gflops": None} for i, (k, ms) in enumerate([("a", 4.0), ("b", 0.005), ("a", 5.0),
                                                         ("c", 0.995)])]
    assert bench.by_kernel(ops) == {"a": (2, 9.0, 90.0), "b": (1, 0.005, 0.05),
                                    "c": (1, 0.995, pytest.approx(9.95))}
    bars = bench_report._bars(ops)            # s1 is under MIN_PERCENT: summed into the last bar
    assert [b[0].split()[0] for b in bars] == ["s0", "s2", "s3", "(1"]
    assert sum(b[1] for b in bars) == pytest.approx(10.0)


# --- int8 plans against the fp32 model, real-looking feeds -----------------------------------------
def _photo(k: int, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth synthetic picture (gradients, a disc, mild texture) as uint8 HWC."""
    y, x = np.mgrid[0:h, 0:w] / np.float32(max(h, w))
    disc = ((x - 0.3 - 0.1 * k) ** 2 + (y - 0.5) ** 2 < 0.05).astype(np.float32)
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * x + k), 0.5 + 0.4 * np.cos(2 * y - k),
                    0.3 * disc + 0.5 * x * y], -1)
    rgb += 0.03 * np.random.default_rng(k).standard_normal(rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def int8_setup(model_path, tmp_path_factory):
    """(calibration folder, a held-out photo, the int8 plan `compile --int8 --calib` wrote)."""
    from PIL import Image
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("int8")
    calib = root / "calib"
    calib.mkdir()
    for k in range(4):
        Image.fromarray(_photo(k)).save(calib / f"p{k}.png")
    photo = root / "held_out.png"
    Image.fromarray(_photo(7)).save(photo)
    plan = root / "tiny_int8.mplan"
    assert cli.main(["compile", str(model_path), "--int8", "--calib", str(calib), "-o",
                     str(plan)]) == 0
    return calib, photo, plan


def _psnr_by_hand(ours: np.ndarray, ref: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    mse = np.mean((ours.astype(np.float64) - ref) ** 2)
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / mse)


def test_int8_plan_against_the_fp32_model_on_a_photo(model_path, int8_setup, tmp_path):
    """bench PLAN --peer-model MODEL --input IMG: the peer runs the fp32 model on the photo, and
    the PSNR is the one onnxruntime's output and the plan's own output give by hand."""
    import onnxruntime
    from PIL import Image
    _, photo, plan_path = int8_setup
    out = tmp_path / "int8.json"
    assert cli.main(["bench", str(plan_path), "--runs", "2", "--profile-runs", "1", "--compare",
                     "onnxruntime", "--peer-model", str(model_path), "--input", str(photo),
                     "--json", str(out)]) == 0
    doc = bench.validate_report(json.loads(out.read_text()))
    assert doc["precision"] == "int8" and doc["compile_ms"] is None
    assert doc["peer"] == {"engine": "onnxruntime", "model": str(model_path), "precision": "fp32",
                           "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest()}
    assert str(photo) in doc["feeds"]["image"]
    # the photo as `run --input` feeds it, derived here with PIL and numpy
    img = Image.open(photo).convert("RGB").resize((W, H), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255).transpose(2, 0, 1)[None].copy()
    ref = onnxruntime.InferenceSession(str(model_path)).run(None, {"image": x})[0]
    ours = me.Session(str(plan_path)).run(None, {"image": x})[0]
    c = doc["results"][0]["compare"]["onnxruntime"]
    assert c["psnr_db"] == pytest.approx(_psnr_by_hand(ours, ref), abs=1e-6)
    assert c["max_abs_diff"] == pytest.approx(float(np.max(np.abs(ours - ref))), rel=1e-6)
    assert 25 < c["psnr_db"] < 90 and c["max_abs_diff"] > 0      # int8: close, not equal
    assert ("outputs differ" in " ".join(doc["results"][0]["warnings"])) == \
        (c["psnr_db"] < bench.PSNR_WARN)


def test_int8_in_process_is_the_compile_int8_plan(model_path, int8_setup, tmp_path):
    """bench MODEL --int8 --calib DIR compiles with compile's calibration: the same steps and
    weights as the plan `compile --int8` wrote, hence the same outputs (same PSNR to 1e-9)."""
    from mobile_engine.plan import Plan
    calib, photo, plan_path = int8_setup
    common = ["--runs", "2", "--profile-runs", "1", "--compare", "onnxruntime", "--input",
              str(photo)]
    a, b = tmp_path / "inproc.json", tmp_path / "file.json"
    assert cli.main(["bench", str(model_path), "--int8", "--calib", str(calib), *common,
                     "--json", str(a)]) == 0
    assert cli.main(["bench", str(plan_path), "--peer-model", str(model_path), *common,
                     "--json", str(b)]) == 0
    inproc, fromfile = json.loads(a.read_text()), json.loads(b.read_text())
    plan = Plan.load(plan_path)
    assert inproc["precision"] == "int8" and inproc["compile_ms"] > 0
    assert inproc["model"] == inproc["source"] == str(model_path)
    assert inproc["plan"] == fromfile["plan"]
    assert inproc["plan"]["weight_bytes"] == plan.weight_bytes
    assert [o["kernel"] for o in inproc["results"][0]["ops"]] == [s["kernel"] for s in plan.steps]
    c_in = inproc["results"][0]["compare"]["onnxruntime"]
    c_file = fromfile["results"][0]["compare"]["onnxruntime"]
    assert c_in["psnr_db"] == pytest.approx(c_file["psnr_db"], abs=1e-9)
    assert c_in["max_abs_diff"] == c_file["max_abs_diff"]


def test_peer_model_with_other_inputs_is_refused(model_path, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    plan_path = me.compile(str(model_path)).save(tmp_path / "tiny.mplan")
    renamed, resized = tmp_path / "renamed.onnx", tmp_path / "resized.onnx"
    onnx.save(tiny_model(input_name="img"), renamed)
    onnx.save(tiny_model(h=H + 2), resized)
    rc = cli.main(["bench", str(plan_path), "--runs", "1", "--compare", "onnxruntime",
                   "--peer-model", str(renamed)])
    err = capsys.readouterr().err
    assert rc == 2 and "renamed.onnx" in err and "['img']" in err and "['image']" in err
    rc = cli.main(["bench", str(plan_path), "--runs", "1", "--compare", "onnxruntime",
                   "--peer-model", str(resized)])
    err = capsys.readouterr().err
    assert rc == 2 and "'image'" in err and f"{H + 2}" in err and f"[1, 3, {H}, {W}]" in err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model" * 10)
    rc = cli.main(["bench", str(plan_path), "--runs", "1", "--compare", "onnxruntime",
                   "--peer-model", str(garbage)])
    err = capsys.readouterr().err
    assert rc == 2 and "garbage.onnx: not an ONNX model" in err


@pytest.mark.parametrize("argv,match", [
    (["--peer-model", "x.onnx"], "--peer-model needs --compare"),
    (["--calib", "somewhere"], "need --int8"),
    (["--compare", "onnxruntime", "--peer-model", "nope.onnx"], "nope.onnx: no such file"),
])
def test_bad_peer_and_int8_arguments(model_path, capsys, argv, match):
    if "onnxruntime" in argv:
        pytest.importorskip("onnxruntime")
    assert cli.main(["bench", str(model_path), "--runs", "1", *argv]) == 2
    assert match in capsys.readouterr().err


def test_int8_on_a_plan_is_refused(model_path, tmp_path, capsys):
    plan_path = me.compile(str(model_path)).save(tmp_path / "tiny.mplan")
    assert cli.main(["bench", str(plan_path), "--int8", "--calib", str(tmp_path)]) == 2
    assert "is a plan, compiled already" in capsys.readouterr().err


def test_make_feeds_given_and_random():
    inputs = [{"name": "image", "shape": [1, 3, 2, 2], "dtype": "float32"},
              {"name": "k", "shape": [2], "dtype": "int64"}]
    x = np.full((1, 3, 2, 2), 0.25, np.float32)
    feeds, described = bench.make_feeds(inputs, given={"image": (x, "a photo")})
    assert np.array_equal(feeds["image"], x)
    assert np.array_equal(feeds["k"], np.zeros(2, np.int64))
    assert described == {"image": "a photo", "k": "zeros"}
    rand, described = bench.make_feeds(inputs, seed=3)
    assert np.array_equal(rand["image"],
                          np.random.default_rng(3).random((1, 3, 2, 2), dtype=np.float32))
    assert described["image"] == "uniform random [0, 1), seed 3"
    with pytest.raises(InputError, match=r"'image'.*float32 \[1, 3, 2, 2\]"):
        bench.make_feeds(inputs, given={"image": (x[..., :1], "cropped")})
    with pytest.raises(InputError, match="'style'.*no such input"):
        bench.make_feeds(inputs, given={"style": (x, "?")})


def test_version_1_files_still_read(report, tmp_path, capsys):
    doc = json.loads(json.dumps(report))
    doc["schema_version"] = 1
    for key in bench_schema.V1_DEFAULTS:
        del doc[key]
    for r in doc["results"]:
        del r["compare"]["onnxruntime"]["psnr_db"]
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(doc))
    assert cli.main(["bench-report", str(old)]) == 0
    assert "| tiny.onnx |" in capsys.readouterr().out
    text = bench.BenchReport.from_dict(json.loads(old.read_text())).text()
    assert "ratio mobile-engine/onnxruntime" in text and "PSNR" not in text


def test_fresh_process_reports_the_engine_import(model_path, tmp_path):
    """In a new process the engine's import (Numba, the kernel modules: hundreds of ms) is timed
    before the machine facts import it, and the start of that process is shown as the sum."""
    import subprocess
    plan_path = me.compile(str(model_path)).save(tmp_path / "tiny.mplan")
    out = tmp_path / "fresh.json"
    proc = subprocess.run([sys.executable, "-m", "mobile_engine", "bench", str(plan_path),
                           "--runs", "1", "--profile-runs", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    r = doc["results"][0]
    assert doc["import_ms"] > 50                 # `import numba` alone takes longer than this
    total = doc["import_ms"] + r["init_ms"] + r["first_run_ms"]
    assert f"start of a fresh process: import {doc['import_ms']:.1f}" in proc.stdout
    assert f"= {total:.1f} ms" in proc.stdout
