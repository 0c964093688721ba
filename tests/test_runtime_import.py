"""The runtime loads no compiler: ``import mobile_engine.runtime`` in a fresh interpreter pulls in
no module of the importers, the passes, planning, quantize or onnx (a phone-side runtime needs
only the plan format and the kernels).

The check can fail: ``test_the_check_sees_a_compiler_import`` runs it on a program that imports
a pass module, as a binder that reached back into the compiler would.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILER_SIDE = ("mobile_engine.importers", "mobile_engine.passes", "mobile_engine.planning",
                 "quantize", "onnx")


def compiler_modules_after(code: str) -> list[str]:
    """Compiler-side modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules "
             f"if m.split('.')[0] == 'onnx' or m.startswith({COMPILER_SIDE[:-1]!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runtime_imports_no_compiler():
    loaded = compiler_modules_after("import mobile_engine.runtime")
    assert loaded == [], f"import mobile_engine.runtime loaded compiler modules: {loaded}"


def test_loading_and_running_a_plan_imports_no_compiler(tmp_path):
    """Beyond the import: loading a saved plan and binding every step stays compiler-free."""
    from mobile_engine.ir import GraphBuilder, Op
    import mobile_engine as me
    import numpy as np
    b = GraphBuilder("tiny")
    x = b.input("x", (1, 8, 8, 4))
    w = b.const(np.ones((4, 4, 3, 3), np.float32))
    g = b.build(b.node(Op.RELU, b.node(Op.CONV2D, x, w, pads=[1, 1, 1, 1], in_layout="nhwc",
                                       out_layout="nhwc")))
    path = me.compile(g).save(tmp_path / "tiny.mplan")
    loaded = compiler_modules_after(
        "from mobile_engine.runtime import Session\nimport numpy as np\n"
        f"s = Session({str(path)!r})\n"
        "s.run(None, {'x': np.zeros((1, 8, 8, 4), np.float32)})")
    assert loaded == [], f"loading and running a plan loaded compiler modules: {loaded}"


def test_the_check_sees_a_compiler_import():
    loaded = compiler_modules_after("import mobile_engine.runtime\n"
                                    "import mobile_engine.passes.remove_dead")
    assert "mobile_engine.passes.remove_dead" in loaded
