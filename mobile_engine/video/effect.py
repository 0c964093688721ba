"""What is done to every frame: chosen on the client (``prepare``: the plans compiled or taken
from the demo's plan cache, their files to send), built again on each worker for each segment
(``frame_effect``: Sessions from the worker's cache, the effect's state fresh).

Effects are the demo's (demo_style_transfer/effects.py: ``style``, ``portrait-blur``,
``background``, ``style-background``, ``blur-faces``), or ``plan``: any plan with one image input
and a 3-channel image output (mobile_engine/images.py), the frame fitted to its input size.

Segments are processed apart, so an effect's memory of earlier frames (the segmentation mask's
moving average) starts again at each segment, that is at a keyframe; a one-worker run splits the
same way, so the output does not depend on the number of workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mobile_engine.cluster.plans import Shipped, checked_bytes, worker_session
from mobile_engine.errors import InputError

PLAN_EFFECT = "plan"


@dataclass(frozen=True)
class FrameJob:
    effect: str                          # PLAN_EFFECT or one of the demo's EFFECTS
    size: tuple[int, int]                # (h, w) of the frames written
    style_weights: np.ndarray | None     # multistyle26's f32[26] (style effects)
    face_style: str = "pixelate"
    precision: str = "fp32"              # of the style plan

    def describe(self) -> str:
        return f"{self.effect} at {self.size[0]}x{self.size[1]}" + (
            f" ({self.precision})" if self.style_weights is not None else "")


@dataclass(frozen=True)
class EffectChoice:
    """What the user asked for; ``prepare`` turns it into a FrameJob and the files to send."""
    effect: str = "style"                # PLAN_EFFECT or one of the demo's EFFECTS
    size: tuple[int, int] | None = None  # (h, w); None: the video's (or the plan's)
    style_weights: np.ndarray | None = None
    face_style: str = "pixelate"
    precision: str = "fp32"
    plan: str | None = None              # PLAN_EFFECT's plan file
    background: str | None = None        # the background effect's picture (None: the zoo's)
    plan_cache: str | None = None

    def frame_size(self, video_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the frames written (cheap: checked before any plan is compiled)."""
        if self.effect != PLAN_EFFECT:
            return tuple(self.size or video_size)
        import mobile_engine as me
        if not self.plan:
            raise InputError("--effect plan needs --plan FILE.mplan")
        out_size = plan_output_size(me.Plan.load(self.plan))
        if self.size is not None and tuple(self.size) != out_size:
            raise InputError(f"--size {self.size[0]}x{self.size[1]}: the plan writes "
                             f"{out_size[0]}x{out_size[1]} frames; compile it for that size or "
                             f"leave out --size")
        return out_size


def prepare(choice: EffectChoice, size: tuple[int, int],
            log: Callable[[str], None] = print) -> tuple[FrameJob, dict[str, bytes]]:
    """(the job, {role: file bytes}) for frames of ``size`` (``choice.frame_size``); plans are
    compiled here once (or taken from the plan cache). InputError when the effect cannot run."""
    from demo_style_transfer import effects
    from demo_style_transfer.errors import DemoError
    try:
        if choice.effect == PLAN_EFFECT:
            return _prepare_plan(choice.plan, size)
        effects.check_effect(choice.effect)
        return _prepare_demo_effect(choice, size, log)
    except DemoError as exc:
        raise InputError(str(exc)) from None


def plan_output_size(plan) -> tuple[int, int]:
    """(h, w) of a plan's 3-channel image output; InputError when it has none."""
    from mobile_engine.images import image_input
    out = plan.outputs[0]
    image = image_input([(out["name"], out["shape"], out["dtype"])])
    if image is None:
        raise InputError(f"--plan: its first output {out['name']} {out['dtype']} {out['shape']} "
                         f"is not a 3-channel image ([1, 3, H, W] or [1, H, W, 3])")
    return tuple(image.size)


def _prepare_plan(plan_path: str, size: tuple[int, int]):
    import mobile_engine as me
    from mobile_engine.images import require_image_input
    plan = me.Plan.load(plan_path)
    require_image_input([(i["name"], i["shape"], i["dtype"]) for i in plan.inputs], "--plan")
    if len(plan.inputs) != 1:
        raise InputError(f"--plan {plan_path}: has {len(plan.inputs)} inputs; a video plan takes "
                         f"only the image")
    return FrameJob(PLAN_EFFECT, size, None), {"plan": Path(plan_path).read_bytes()}


def _prepare_demo_effect(choice: EffectChoice, size: tuple[int, int], log):
    import cv2

    from demo_style_transfer import effects, pipeline
    from mobile_engine import zoo
    effect, precision = choice.effect, choice.precision
    cache = pipeline.PlanCache(choice.plan_cache)
    files = {}
    if effect in ("style", "style-background"):
        try:
            model = zoo.model_path(pipeline.MODEL_NAME)
        except zoo.ZooError as exc:
            raise InputError(f"{exc} (`mobile-engine zoo fetch` fetches it)") from None
        cached = cache.get(model, size, precision, log)
        files["style"] = cached.path.read_bytes()
    for kind in effects.needs(effect):
        path, input_size, kind_precision, build = effects.effect_plan_key(
            kind, effects.effect_model_path(kind))
        cached = cache.get(path, input_size, kind_precision, log, build=build)
        files[kind] = cached.path.read_bytes()
    if effect == "background":
        picture = effects.fit_picture(choice.background, size)
        files["background"] = cv2.imencode(".png", picture)[1].tobytes()
    weights = choice.style_weights if "style" in files else None
    return FrameJob(effect, tuple(size), weights, choice.face_style, precision), files


def frame_effect(job: FrameJob, files: dict[str, Shipped],
                 threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """On a worker: ``effect(u8[h0, w0, 3] BGR) -> u8[H, W, 3] BGR`` (a reused buffer, valid
    until the next call), with Sessions loaded once per worker and the effect's state new."""
    if job.effect == PLAN_EFFECT:
        return _plan_effect(worker_session(files["plan"], threads))
    from demo_style_transfer import effects
    from demo_style_transfer.pipeline import EngineStylizer, StylePipeline
    from demo_style_transfer.styles import NUM_STYLES
    stylizer = (EngineStylizer(worker_session(files["style"], threads), job.precision)
                if "style" in files else None)
    # NOTE: without a stylizer the pipeline only fits frames (the effects that stylize nothing)
    pipeline = StylePipeline(stylizer, job.size)
    models = effects.EffectModels(lambda kind: effects.wrap_effect_session(
        kind, worker_session(files[kind], threads), job.size, kind))
    runner = effects.EffectRunner(job.size, models, _picture(files.get("background")),
                                  job.face_style)
    runner.prepare(job.effect)
    weights = (job.style_weights if job.style_weights is not None
               else np.zeros(NUM_STYLES, np.float32))
    return lambda frame: runner.process(job.effect, pipeline, frame, weights).stylized


def _picture(shipped: Shipped | None) -> np.ndarray | None:
    if shipped is None:
        return None
    import cv2
    return cv2.imdecode(np.frombuffer(checked_bytes(shipped), np.uint8), cv2.IMREAD_COLOR)


def _plan_effect(session) -> Callable[[np.ndarray], np.ndarray]:
    """The frame fitted to the plan's image input (centre crop, resize), the output as BGR."""
    import cv2

    from demo_style_transfer.frames import FrameConverter
    from mobile_engine.images import image_input, output_to_rgb, rgb_to_input
    spec = image_input([(i["name"], i["shape"], i["dtype"]) for i in session.plan.inputs])
    converter = FrameConverter(spec.size)
    rgb = np.empty((*spec.size, 3), np.uint8)

    def effect(frame: np.ndarray) -> np.ndarray:
        cv2.cvtColor(converter.fit(frame), cv2.COLOR_BGR2RGB, dst=rgb)
        (out,) = session.run(None, {spec.name: rgb_to_input(rgb, spec)})[:1]
        return cv2.cvtColor(output_to_rgb(out), cv2.COLOR_RGB2BGR)
    return effect
