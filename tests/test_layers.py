"""The layers a test can hold: the import-linter contracts in pyproject.toml
(``[tool.importlinter]``, the rules of ../shared/tools/layers.py) checked by ``lint-imports``.

kernels import nothing of mobile_engine; the IR, the importers and the passes import no kernels;
planning imports no passes or importers; plan/ knows no planning or runtime; the runtime loads
only plan/, kernels/, errors and limits; the demo uses the public API only. A backward import
fails this test, e.g. (``test_a_backward_import_breaks_its_contract`` does exactly this on a
copy of the sources)::

    # kernels/f32_pool.py
    from mobile_engine.planning import step          # kernels -> mobile_engine

    $ lint-imports
    kernels import nothing of mobile_engine, quantize or the demo BROKEN
    -   kernels.f32_pool -> mobile_engine.planning.step (l.1)
"""
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mobile_engine", "kernels", "quantize", "demo_style_transfer")


def _contracts() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["id"] for c in config["tool"]["importlinter"]["contracts"]]


def lint_imports(root: Path, contracts) -> subprocess.CompletedProcess:
    """``lint-imports`` over the sources under ``root`` (first on the path, before any
    installed copy) for the contract ids ``contracts``."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is missing: pip install -e '.[test]' (import-linter)")
    args = [str(exe), "--no-cache"] + [f"--contract={c}" for c in contracts]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_layer_contract_holds():
    held = _contracts()
    assert {"kernels", "ir", "graph-rewriters", "planning", "plan", "runtime", "demo"} <= set(held)
    done = lint_imports(ROOT, held)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(held)} kept, 0 broken" in done.stdout, done.stdout[-2000:]


@pytest.mark.parametrize("path, line, contract", [
    ("kernels/f32_pool.py", "from mobile_engine.planning import step", "kernels"),
    ("mobile_engine/ir/graph.py", "import kernels.reference", "ir"),
    ("mobile_engine/plan/format.py", "from mobile_engine.runtime import session", "plan"),
    # indirect: the runtime reaches the compiler through a module it may import
    ("kernels/config.py", "import quantize.table", "runtime"),
    ("demo_style_transfer/hud.py", "import kernels.config", "demo"),
    ("mobile_engine/plan/plan.py", "import av", "video"),
    ("demo_style_transfer/hud.py", "from mobile_engine.video import job", "video"),
    ("mobile_engine/cluster/plans.py", "from mobile_engine.video import task", "cluster"),
])
def test_a_backward_import_breaks_its_contract(tmp_path, path, line, contract):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert lint_imports(tmp_path, [contract]).returncode == 0      # the copy holds
    target = tmp_path / path
    target.write_text(line + "\n" + target.read_text())
    done = lint_imports(tmp_path, [contract])
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout[-2000:]
    importer = path[:-3].replace("/", ".")
    assert importer in done.stdout, done.stdout[-2000:]
