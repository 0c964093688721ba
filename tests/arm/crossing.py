"""Plans that cross devices (issue 20, part 1), for ``make test-arm`` (tests/arm/run.py).

Before the emulated sessions start, the host (x86) compiles multistyle26 at 64x64 and
SqueezeNet (the real-model set, 224x224) and runs onnxruntime on the same feeds: the plans and
``NAME.npz`` (the feeds and onnxruntime's outputs, ``out:<name>``) go into one folder that the
emulated cores read (``ARM_PLANS``). Each core runs the x86-compiled multistyle26 plan; the
``--real`` cores (default: cortex-a76 only, as every kernel compiles under emulation) also
SqueezeNet; both are checked against the host's onnxruntime outputs
(tests/arm/test_emulated.py). The other way round: the first ``--real`` core compiles
multistyle26 itself and saves the aarch64-made plan (``ARM_PLAN_OUT``); after the sessions the
host runs it and checks it against the same onnxruntime outputs (``reverse``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

STYLE_SHAPE = (1, 3, 64, 64)
REAL = "squeezenet"
TOLERANCE = 1e-3        # of the reference output's range (mobile_engine.bench_zoo's bound)


def style_feeds() -> dict[str, np.ndarray]:
    """chelsea.png at 64x64 (RGB 0..1) and a blend of styles 3 and 19."""
    from PIL import Image

    from mobile_engine import zoo
    img = Image.open(zoo.image_path("chelsea.png")).convert("RGB").resize((64, 64),
                                                                           Image.BILINEAR)
    w = np.zeros(26, np.float32)
    w[[3, 19]] = 0.5
    return {"image": (np.asarray(img, np.float32) / 255).transpose(2, 0, 1)[None].copy(),
            "style_weights": w}


def compare(names: list[str], ours: list[np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """Problems (empty: none): each output within TOLERANCE of the reference's range."""
    problems = []
    for name, got in zip(names, ours):
        ref = np.asarray(want[f"out:{name}"], np.float64)
        if got.shape != ref.shape:
            problems.append(f"{name}: shape {got.shape}, onnxruntime {ref.shape}")
            continue
        span = float(ref.max() - ref.min()) or float(np.abs(ref).max()) or 1e-6
        diff = float(np.abs(got.astype(np.float64) - ref).max())
        if not diff <= TOLERANCE * span:
            problems.append(f"{name}: max |diff| {diff:.3g} > {TOLERANCE} x range {span:.3g}")
    return problems


def _save(folder: Path, name: str, plan, model: str, feeds: dict) -> None:
    import platform

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    outs = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, feeds)
    plan.manifest["provenance"]["compiled_on"] = f"{platform.machine()} (the host)"
    plan.save(folder / f"{name}.mplan")
    names = [o["name"] for o in plan.outputs]
    np.savez(folder / f"{name}.npz", **{f"in:{k}": v for k, v in feeds.items()},
             **{f"out:{n}": v for n, v in zip(names, outs)})


def prepare(folder: Path) -> list[str]:
    """Compile the plans on this (x86) host and save onnxruntime's outputs; their names."""
    import onnx

    import mobile_engine as me
    from mobile_engine import zoo, zoo_real
    folder.mkdir(parents=True, exist_ok=True)
    style = str(zoo.model_path("multistyle26"))
    _save(folder, "multistyle26", me.compile(style, input_shapes={"image": STYLE_SHAPE}),
          style, style_feeds())
    real = zoo_real.model_file(REAL)
    iname = zoo_real.input_name(onnx.load(str(real), load_external_data=False))
    x, _ = zoo_real.test_input(REAL)
    _save(folder, REAL, me.compile(str(real), input_shapes={iname: x.shape}), str(real),
          {iname: x})
    return ["multistyle26", REAL]


def load(folder: Path, name: str) -> tuple[Path, dict, dict]:
    """(plan path, feeds, the npz) of a prepared case."""
    data = dict(np.load(folder / f"{name}.npz"))
    feeds = {k[3:]: v for k, v in data.items() if k.startswith("in:")}
    return folder / f"{name}.mplan", feeds, data


def reverse(plan_path: Path, folder: Path) -> tuple[bool, str]:
    """Run the plan an emulated core compiled on this host; (ok, one line)."""
    import platform

    import mobile_engine as me
    if not plan_path.exists():
        return False, f"no plan at {plan_path} (the emulated compile failed: see its log)"
    plan = me.Plan.load(plan_path)
    made_on = plan.manifest["provenance"].get("compiled_on", "an emulated core")
    _, feeds, want = load(folder, "multistyle26")
    outs = me.Session(plan, threads=2).run(None, feeds)
    problems = compare([o["name"] for o in plan.outputs], outs, want)
    what = f"multistyle26 compiled on {made_on}, run on this {platform.machine()} host"
    return (not problems), f"{what}: " + ("; ".join(problems) if problems else
                                          "matches onnxruntime")
