"""The demo's video effects: style transfer (the style pipeline as it is), and the effects built on
MediaPipe's small networks compiled with the engine from their ``.tflite`` files:

    style             the whole frame stylized (multistyle26, or --style-image's models)
    portrait-blur     selfie segmentation: the background blurred, the person kept sharp
    background        selfie segmentation: the background replaced by a picture
    style-background  style transfer + selfie segmentation: the background stylized, the person kept
    blur-faces        face detection (short range) on every frame: each face pixelated (or blurred)

Layout: frame u8[H, W, 3] BGR -> fitted u8[H, W, 3] BGR (the style pipeline's converter) ->
segmentation input f32[1, 256, 256, 3] RGB 0..1 (stretched) -> person probability f32[256, 256]
-> smoothed over time (exponential moving average, so edges do not flicker) -> u8[H, W] 0..255
(resized) -> blend of the fitted frame (person) and the effect's background, in 8 bits (OpenCV's
saturating multiply-add: a few times faster than float here, within 2 levels of the float
blend) -> u8[H, W, 3] BGR (reused buffers).

The models load on first use (``EffectModels``: the engine's plan cache, like the style plan) so
a run of ``--effect style`` never touches them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from demo_style_transfer import faces
from demo_style_transfer.errors import DemoError
from demo_style_transfer.frames import FrameConverter, Result, StylePipeline

EFFECTS = ("style", "portrait-blur", "background", "style-background", "blur-faces")
SEGMENTATION_MODEL = "selfie_segmentation"
MODEL_INPUT = {"segmenter": (256, 256), "faces": (faces.INPUT_SIZE, faces.INPUT_SIZE)}
MODEL_NAMES = {"segmenter": SEGMENTATION_MODEL, "faces": faces.MODEL_NAME}
DEFAULT_BACKGROUND = "rocket.jpg"     # a zoo photo when --effect background has no IMAGE
MASK_ALPHA = 0.6                      # weight of the newest mask in the moving average
FACE_STYLES = ("pixelate", "blur")


def needs(effect: str) -> tuple[str, ...]:
    """The models (beyond the style plan) an effect runs: "segmenter", "faces"."""
    if effect in ("portrait-blur", "background", "style-background"):
        return ("segmenter",)
    if effect == "blur-faces":
        return ("faces",)
    return ()


def check_effect(name: str) -> str:
    if name not in EFFECTS:
        raise DemoError(f"--effect {name!r}: use one of {', '.join(EFFECTS)}")
    return name


class Segmenter:
    """Person probability on a frame: ``run(x) -> [out]`` is selfie segmentation (the engine's
    Session, or LiteRT in the tests) on ``f32[1, h, w, 3] RGB 0..1``, out ``f32[1, h, w, 1]``."""

    def __init__(self, run: Callable[[np.ndarray], list], input_size: tuple[int, int],
                 description: str = "", clock=time.perf_counter) -> None:
        self._run = run
        self.input_size = h, w = input_size
        self.description = description
        self._clock = clock
        self._small = np.empty((h, w, 3), np.uint8)
        self._x = np.empty((1, h, w, 3), np.float32)
        self.inference_ms = 0.0

    def to_model(self, frame_bgr: np.ndarray) -> np.ndarray:
        """u8[H, W, 3] BGR -> f32[1, h, w, 3] RGB 0..1 (stretched; the reused input buffer)."""
        h, w = self.input_size
        # NOTE: bilinear even to shrink: INTER_AREA at 480x640 -> 256x256 costs 3x the model's input
        cv2.resize(frame_bgr, (w, h), dst=self._small, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2RGB, dst=self._small)
        np.multiply(self._small, np.float32(1 / 255), out=self._x[0])
        return self._x

    def mask(self, frame_bgr: np.ndarray) -> np.ndarray:
        """f32[h, w] person probability 0..1 at the model's resolution (the model's array)."""
        x = self.to_model(frame_bgr)
        t0 = self._clock()
        (out,) = self._run(x)[:1]
        self.inference_ms = (self._clock() - t0) * 1e3
        if out.shape != (1, *self.input_size, 1):
            raise DemoError(f"the segmentation model returned shape {out.shape}; expected "
                            f"{(1, *self.input_size, 1)}")
        return out[0, :, :, 0]


class MaskSmoother:
    """Exponential moving average of the masks of consecutive frames: ``alpha`` of the newest,
    the rest from before (``reset`` starts again, e.g. when the effect changes)."""

    def __init__(self, alpha: float = MASK_ALPHA) -> None:
        if not 0 < alpha <= 1:
            raise DemoError(f"mask smoothing {alpha}: must be in (0, 1]")
        self.alpha = np.float32(alpha)
        self._m: np.ndarray | None = None

    def reset(self) -> None:
        self._m = None

    def update(self, mask: np.ndarray) -> np.ndarray:
        if self._m is None or self._m.shape != mask.shape:
            self._m = np.array(mask, np.float32)
        else:
            cv2.addWeighted(mask.astype(np.float32, copy=False), float(self.alpha), self._m,
                            float(1 - self.alpha), 0.0, dst=self._m)
        return self._m


class EffectModels:
    """The effects' models, each loaded on first use by ``load(kind) -> Segmenter |
    FaceDetector`` (kind: "segmenter" or "faces") and kept."""

    def __init__(self, load: Callable[[str], object]) -> None:
        self._load = load
        self._models: dict = {}

    def get(self, kind: str):
        if kind not in self._models:
            self._models[kind] = self._load(kind)
        return self._models[kind]

    def loaded(self) -> dict:
        return dict(self._models)


def fit_picture(path: str | Path | np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """A background picture fitted to the working size (centre crop, resize) like the frames;
    ``path`` a file or the picture itself (u8[h, w, 3] BGR); ``None``: the zoo's
    DEFAULT_BACKGROUND, else a drawn pattern."""
    from demo_style_transfer.sources import pattern_image
    if isinstance(path, np.ndarray):
        return FrameConverter(size).fit(path).copy()
    if path is None:
        from mobile_engine import zoo
        try:
            path = zoo.image_path(DEFAULT_BACKGROUND)
        except zoo.ZooError:
            return pattern_image(*size)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError(f"--effect background {path}: not a picture OpenCV can read")
    return FrameConverter(size).fit(image).copy()


class EffectRunner:
    """One frame through an effect (``process``), in reused buffers; the style pipeline is passed
    in on each call (the app swaps it when the precision changes)."""

    def __init__(self, size: tuple[int, int], models: EffectModels,
                 background: str | Path | np.ndarray | None = None, face_style: str = "pixelate",
                 clock=time.perf_counter, alpha: float = MASK_ALPHA) -> None:
        if face_style not in FACE_STYLES:
            raise DemoError(f"face style {face_style!r}: use {' or '.join(FACE_STYLES)}")
        self.size = h, w = size
        self.models = models
        self.background_path = background
        self.face_style = face_style
        self.smoother = MaskSmoother(alpha)
        self._clock = clock
        self._background: np.ndarray | None = None
        self._mask = np.empty((h, w), np.uint8)
        self._mask3 = np.empty((h, w, 3), np.uint8)
        self._inverse3 = np.empty((h, w, 3), np.uint8)
        self._person = np.empty((h, w, 3), np.uint8)
        self._blurred = np.empty((h, w, 3), np.uint8)
        self._out = np.empty((h, w, 3), np.uint8)
        self.faces_found = 0
        self.last_effect = ""

    def prepare(self, effect: str) -> None:
        """Load what ``effect`` needs (its models, its picture); DemoError when it cannot run."""
        check_effect(effect)
        for kind in needs(effect):
            self.models.get(kind)
        if effect == "background" and self._background is None:
            self._background = fit_picture(self.background_path, self.size)

    def label(self, effect: str) -> str:
        """HUD text for the effect."""
        if effect == "blur-faces":
            n = self.faces_found
            return f"effect {effect} ({n} face{'s' if n != 1 else ''})"
        return f"effect {effect}"

    # --- the effects ---------------------------------------------------------------------------
    def process(self, effect: str, pipeline: StylePipeline, frame: np.ndarray,
                style_weights: np.ndarray) -> Result:
        if effect != self.last_effect:
            self.smoother.reset()     # NOTE: a mask from another effect's frames would ghost
            self.last_effect = effect
        if effect == "style":
            return pipeline.process(frame, style_weights)
        if effect == "style-background":
            styled = pipeline.process(frame, style_weights)
            return self._composite(styled.original, styled.stylized, styled)
        t0 = self._clock()
        fitted = pipeline.converter.fit(frame)
        if effect == "blur-faces":
            return self._hide_faces(fitted, t0)
        if effect == "background":
            if self._background is None:
                self.prepare(effect)
            return self._composite(fitted, self._background, None, t0)
        if effect == "portrait-blur":
            return self._composite(fitted, self._blur(fitted), None, t0)
        raise DemoError(f"unknown effect {effect!r}")

    def _blur(self, fitted: np.ndarray) -> np.ndarray:
        """A strong background blur, cheap: at a quarter of the size, then back up."""
        h, w = self.size
        small = cv2.resize(fitted, (max(1, w // 4), max(1, h // 4)),
                           interpolation=cv2.INTER_LINEAR)       # NOTE: the blur hides aliasing
        small = cv2.GaussianBlur(small, (0, 0), max(1.0, min(h, w) / 160))
        cv2.resize(small, (w, h), dst=self._blurred, interpolation=cv2.INTER_LINEAR)
        return self._blurred

    def person_mask(self, fitted: np.ndarray) -> np.ndarray:
        """u8[H, W] 0..255: the smoothed person probability resized to the frame (reused)."""
        h, w = self.size
        smooth = self.smoother.update(self.models.get("segmenter").mask(fitted))
        small = cv2.convertScaleAbs(smooth, alpha=255)          # rounded, clamped to 0..255
        cv2.resize(small, (w, h), dst=self._mask, interpolation=cv2.INTER_LINEAR)
        return self._mask

    def _composite(self, person: np.ndarray, background: np.ndarray, styled: Result | None,
                   t0: float | None = None) -> Result:
        """The person from ``person`` over ``background`` by the mask."""
        segmenter = self.models.get("segmenter")
        t1 = self._clock()
        mask = self.person_mask(person)
        cv2.merge((mask, mask, mask), dst=self._mask3)
        cv2.bitwise_not(self._mask3, dst=self._inverse3)                   # 255 - mask
        cv2.multiply(person, self._mask3, dst=self._person, scale=1 / 255)
        cv2.multiply(background, self._inverse3, dst=self._out, scale=1 / 255)
        cv2.add(self._out, self._person, dst=self._out)
        t2 = self._clock()
        seg_ms = segmenter.inference_ms
        if styled is not None:
            return Result(person, self._out, styled.pre_ms,
                          styled.inference_ms + seg_ms,
                          styled.post_ms + (t2 - t1) * 1e3 - seg_ms)
        return Result(person, self._out, (t1 - t0) * 1e3, seg_ms, (t2 - t1) * 1e3 - seg_ms)

    def _hide_faces(self, fitted: np.ndarray, t0: float) -> Result:
        detector = self.models.get("faces")
        t1 = self._clock()
        boxes, _scores = detector.detect(fitted)
        t2 = self._clock()
        np.copyto(self._out, fitted)
        regions = faces.face_regions(boxes, self.size)
        (faces.pixelate if self.face_style == "pixelate" else faces.blur)(self._out, regions)
        self.faces_found = len(regions)
        t3 = self._clock()
        ms = detector.inference_ms
        return Result(fitted, self._out, (t1 - t0) * 1e3 + (t2 - t1) * 1e3 - ms, ms,
                      (t3 - t2) * 1e3)


# --- the engine's models -----------------------------------------------------------------------
def effect_model_path(kind: str, model: str | Path | None = None) -> Path:
    """The ``.tflite`` file of ``kind`` ("segmenter" or "faces"): ``model``, else the zoo's."""
    from mobile_engine import zoo
    if kind not in MODEL_NAMES:
        raise DemoError(f"unknown effect model {kind!r}")
    try:
        path = Path(model) if model is not None else zoo.model_path(MODEL_NAMES[kind])
    except zoo.ZooError as exc:
        raise DemoError(f"{exc} (`mobile-engine zoo fetch` fetches it)") from None
    if not path.is_file():
        raise DemoError(f"{path}: no such model file (`mobile-engine zoo fetch` fetches it)")
    return path


def effect_plan_key(kind: str, path: Path) -> tuple:
    """The plan cache's (model, size, precision) of an effect model, and how to compile it: the
    key ``load_effect_model`` and the video command (mobile_engine/video) share."""
    import mobile_engine as me
    return path, MODEL_INPUT[kind], "fp32", lambda: me.compile(str(path))


def wrap_effect_session(kind: str, session, size: tuple[int, int], description: str = ""):
    """A ``Segmenter`` or ``FaceDetector`` for frames of ``size`` around an engine Session of
    ``kind``'s model (its input shape checked)."""
    (inp,) = session.get_inputs()
    name = inp.name

    def run(x):
        return session.run(None, {name: x})

    if kind == "segmenter":
        if len(inp.shape) != 4 or inp.shape[-1] != 3:
            raise DemoError(f"{description}: input {list(inp.shape)}; expected [1, h, w, 3]")
        return Segmenter(run, tuple(inp.shape[1:3]), description)
    if tuple(inp.shape) != (1, faces.INPUT_SIZE, faces.INPUT_SIZE, 3):
        raise DemoError(f"{description}: input {list(inp.shape)}; expected "
                        f"[1, {faces.INPUT_SIZE}, {faces.INPUT_SIZE}, 3]")
    return faces.FaceDetector(run, size, description)


def load_effect_model(kind: str, size: tuple[int, int], threads: int | None = None,
                      cache=None, log: Callable[[str], None] = print,
                      model: str | Path | None = None):
    """``kind`` ("segmenter" or "faces") compiled with the engine from its zoo ``.tflite`` (or
    ``model``), cached like the style plan, wrapped for frames of ``size`` and run once (the first
    run loads or compiles its kernels). DemoError (one line) when it cannot be had."""
    from demo_style_transfer.pipeline import PlanCache, _session, describe_error
    path = effect_model_path(kind, model)
    cache = cache or PlanCache()
    path, input_size, precision, build = effect_plan_key(kind, path)
    try:
        session, cached = _session(cache, path, input_size, precision, threads, log, build=build)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise DemoError(f"the engine cannot compile {path.name}: {describe_error(exc)}") from None
    wrapped = wrap_effect_session(kind, session, size, f"{path.stem} ({cached.status})")
    grey = np.full((*size, 3), 128, np.uint8)
    t0 = time.perf_counter()
    if kind == "segmenter":
        wrapped.mask(grey)
    else:
        wrapped.detect(grey)
    ms = (time.perf_counter() - t0) * 1e3
    log(f"{path.stem}: {session.threads} threads, first run {ms:.0f} ms")
    return wrapped
