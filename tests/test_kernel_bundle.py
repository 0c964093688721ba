"""Kernel bundles (``compile --kernels``): a plan's kernels compiled ahead of time, checked, used.

Each check runs the plan in a fresh interpreter with an EMPTY Numba cache (``NUMBA_CACHE_DIR``),
counting Numba's compilations (tests/bundle_probe.py): with a fitting bundle nothing compiles;
a damaged bundle, one for another CPU, or one the plan does not pin is refused with one
``KernelBundleWarning`` and the kernels compile as without it. Outputs are checked against numpy every time. The plan is tiny
(a max pool and a global average pool: two kernels that compile in about a second).
tests/arm/run.py makes the same checks with a bundle built for an emulated Cortex-A76.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_probe import reference, tiny_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Path:
    """A tiny plan and its host bundle, built once: tests copy the folder before changing it."""
    from mobile_engine import bundle_build
    path = tiny_plan(tmp_path_factory.mktemp("bundle") / "tiny.mplan")
    bundle_build.build(path, "host", say=lambda msg: None)
    return path


def copy(plan: Path, tmp_path: Path) -> Path:
    shutil.copy(plan, tmp_path / plan.name)
    shutil.copytree(plan.with_suffix(".kernels"), tmp_path / plan.with_suffix(".kernels").name)
    return tmp_path / plan.name


def probe(plan: Path, tmp_path: Path, threads: int = 2, **env) -> dict:
    """Run ``plan`` in a fresh interpreter with an empty kernel cache."""
    cache = tmp_path / f"numba-cache-{len(list(tmp_path.glob('numba-cache-*')))}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")},
           "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), **env}
    p = subprocess.run([sys.executable, "-m", "tests.bundle_probe", str(plan), str(threads)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(res["out"], reference(), rtol=1e-6)
    return res


def bundle_warnings(res: dict) -> list[str]:
    return [w for w in res["warnings"] if w.startswith("KernelBundleWarning")]


@pytest.mark.parametrize("threads", [1, 2])
def test_a_fitting_bundle_loads_every_kernel_without_compiling(bundled, tmp_path, threads):
    res = probe(bundled, tmp_path, threads)
    assert res["compiled"] == [], f"compiled with a fitting bundle: {res['compiled']}"
    assert res["loaded"] >= 2 and res["bundle"] and not bundle_warnings(res), res
    # Numba's runtime (NRT) comes from the bundle too, instead of compiling in the process
    assert res["runtime_loaded"] == 1, res


def test_without_the_bundle_the_same_run_compiles(bundled, tmp_path):
    """The counter sees compilations: the plan alone (its record removed) compiles both."""
    from mobile_engine.plan import Plan
    from mobile_engine.runtime import bundle
    plan = Plan.load(bundled)
    del plan.manifest[bundle.PLAN_FIELD]
    res = probe(plan.save(tmp_path / "bare.mplan"), tmp_path)
    assert len(res["compiled"]) >= 2 and res["loaded"] == 0 and res["bundle"] is None
    assert res["runtime_loaded"] == 0
    assert not bundle_warnings(res), "no bundle recorded: nothing to say"


def test_a_damaged_bundle_is_refused_and_the_kernels_compile(bundled, tmp_path):
    plan = copy(bundled, tmp_path)
    data = sorted(plan.with_suffix(".kernels").glob("*.nbc"))[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01                          # one bit of the machine code's pickle
    data.write_bytes(bytes(raw))
    res = probe(plan, tmp_path)
    (note,) = bundle_warnings(res)
    assert "kernel bundle not used" in note and data.name in note and "damaged" in note, note
    assert res["loaded"] == 0 and len(res["compiled"]) >= 2


def test_a_manifest_the_plan_does_not_pin_is_refused(bundled, tmp_path):
    """Editing the manifest to match a changed file does not help: the plan pins the manifest."""
    plan = copy(bundled, tmp_path)
    folder = plan.with_suffix(".kernels")
    data = sorted(folder.glob("*.nbc"))[0]
    data.write_bytes(data.read_bytes() + b"\0")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][data.name] = {"bytes": data.stat().st_size,
                                    "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    res = probe(plan, tmp_path)
    (note,) = bundle_warnings(res)
    assert "does not match the plan's record" in note, note
    assert res["loaded"] == 0


def test_a_missing_bundle_is_one_note(bundled, tmp_path):
    shutil.copy(bundled, tmp_path / bundled.name)
    res = probe(tmp_path / bundled.name, tmp_path)
    (note,) = bundle_warnings(res)
    assert "cannot read manifest.json" in note, note


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="an x86 CPU name")
def test_a_bundle_for_another_cpu_is_refused_by_name(bundled, tmp_path):
    """Numba told to compile for an older x86 (``NUMBA_CPU_NAME``) is another machine."""
    res = probe(bundled, tmp_path, NUMBA_CPU_NAME="x86-64-v3")
    (note,) = bundle_warnings(res)
    assert "not for this machine" in note and "x86-64-v3" in note, note
    assert res["loaded"] == 0 and len(res["compiled"]) >= 2


def test_a_record_that_leaves_the_plans_folder_is_refused(bundled, tmp_path):
    from mobile_engine.plan import Plan
    from mobile_engine.runtime import bundle
    plan = Plan.load(bundled)
    plan.manifest[bundle.PLAN_FIELD] = {**plan.manifest[bundle.PLAN_FIELD], "path": "../x"}
    res = probe(plan.save(tmp_path / "away.mplan"), tmp_path)
    (note,) = bundle_warnings(res)
    assert "not a folder beside it" in note, note


def test_cli_compile_kernels_and_inspect(tmp_path, capsys):
    """``compile --kernels`` writes the bundle (and inspect says it fits); an unknown target is
    one line before anything compiles."""
    import onnx
    from onnx import TensorProto, helper

    from mobile_engine.cli import main
    graph = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("GlobalAveragePool", ["p"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])])
    model = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    out = tmp_path / "t.mplan"
    assert main(["compile", str(model), "-o", str(out), "--kernels"]) == 0
    assert (tmp_path / "t.kernels" / "manifest.json").exists()
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert "kernel bundle t.kernels" in capsys.readouterr().out
    assert main(["compile", str(model), "-o", str(out), "--target", "cortex-z9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target cortex-z9" in err[0], err


def test_an_arm_target_without_the_emulator_is_one_line(tmp_path, capsys, monkeypatch):
    """``--kernels`` for an ARM core needs make test-arm's emulator: said before compiling."""
    from mobile_engine.cli import main
    monkeypatch.setenv("MOBILE_ENGINE_HOME", str(tmp_path / "empty-home"))
    out = tmp_path / "t.mplan"
    assert main(["compile", str(tmp_path / "never-read.onnx"), "-o", str(out), "--target",
                 "cortex-a76", "--kernels"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tests/arm/setup.sh" in err[0], err
    assert not out.exists()


def test_a_kernel_calling_a_jit_function_has_the_same_cache_key_in_every_process():
    """The igemm conv's closure holds its row function (a jit dispatcher, which pickles with a
    uuid drawn per process): its cache key must not change from one process to the next, or
    the kernel misses its bundle and Numba's cache in every new process and compiles again."""
    script = ("from kernels import f32_conv2d as ig\n"
              "from numba.core.registry import cpu_target\n"
              "cg = cpu_target.target_context.codegen()\n"
              "print(*(ig.igemm_kernel(8, 32, p)._cache._index_key((), cg)[2] for p in "
              "(False, True)))\n")
    keys = [subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
                           check=True).stdout for _ in range(2)]
    assert keys[0] == keys[1] and keys[0].strip(), keys


LINKED = """
import json
import numba
import numpy as np
from kernels import cache_bundle, f32_norm
out, res = np.zeros(8, np.float32), np.arange(8, dtype=np.float32)
f32_norm.add_inplace(out, res, 0, 8)
(cres,) = f32_norm.add_inplace.overloads.values()
lazy = isinstance(cres.library, cache_bundle._LazyLinkLibrary)
@numba.njit
def twice(o, r):           # compiled here: links the kernel's library (its bitcode is parsed)
    f32_norm.add_inplace(o, r, 0, 8)
    f32_norm.add_inplace(o, r, 0, 8)
twice(out, res)
print(json.dumps({"hits": sum(f32_norm.add_inplace._cache_hits.values()), "lazy": lazy,
                  "out": out.tolist()}))
"""


def test_a_cached_kernel_loads_without_parsing_its_bitcode_and_still_links(tmp_path):
    """A kernel loaded from the cache defers parsing its bitcode (``_LazyLinkLibrary``); code
    compiled later that calls it still links and runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", LINKED], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=300,
                                      check=True).stdout.strip().splitlines()[-1])
            for _ in range(2)]
    assert (runs[0]["hits"], runs[0]["lazy"]) == (0, False), runs        # compiled
    assert runs[1]["hits"] >= 1 and runs[1]["lazy"], runs                  # loaded
    for r in runs:
        assert r["out"] == [3.0 * i for i in range(8)]
