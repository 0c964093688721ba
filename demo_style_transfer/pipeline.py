"""The per-frame work: fit a camera frame to the working size, convert it to the model's input, stylize,
convert back; the on-disk plan cache; frame statistics.

Layout contract:
    camera frame  u8[h0, w0, 3] BGR (any size)
    -> fitted     u8[H, W, 3] BGR        (centre crop to the aspect ratio, resize; reused buffer)
    -> model in   f32[1, 3, H, W] RGB 0..1 (reused buffer)
    -> model out  f32[1, 3, H, W] RGB 0..1 (the stylizer's array)
    -> stylized   u8[H, W, 3] BGR        (rounded, clamped to 0..255; reused buffer)
The reused buffers are overwritten by the next frame: copy what must outlive it.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from demo_style_transfer.styles import NUM_STYLES

MODEL_NAME = "multistyle26"


class DemoError(Exception):
    """An error the demo reports as a message, never a traceback (``exit_code`` for the shell)."""
    exit_code = 1


class PrecisionUnavailable(DemoError):
    """A precision the engine cannot produce yet (int8)."""
    exit_code = 2


INT8_UNAVAILABLE = ("int8 is not available yet: the engine cannot quantize multistyle26 yet "
                    "(compile(quantize='int8') is not implemented); use --fp32")


class Stylizer(Protocol):
    """The inference step: ``run(x: f32[1, 3, H, W] RGB 0..1, w: f32[26]) -> f32[1, 3, H, W] 0..1``.

    ``x`` is a reused buffer (do not keep it); the returned array is only read until the next call.
    """
    precision: str
    threads: int | None
    description: str

    def run(self, frame_nchw: np.ndarray, style_weights: np.ndarray) -> np.ndarray: ...


class EngineStylizer:
    """multistyle26 through a ``mobile_engine.Session``."""

    def __init__(self, session, precision: str = "fp32", description: str = "") -> None:
        self.session = session
        self.precision = precision
        self.threads = session.threads
        self.description = description
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != ["image", "style_weights"]:
            raise DemoError(f"the plan's inputs are {names}; expected image and style_weights")
        self.shape = tuple(next(i.shape for i in session.get_inputs() if i.name == "image"))

    def run(self, frame_nchw: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"image": frame_nchw, "style_weights": style_weights})
        return out


# --- plan cache ------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$MOBILE_ENGINE_HOME/plans``, else ``~/.cache/mobile-engine/plans``."""
    from mobile_engine import zoo
    return zoo.home() / "plans"


@dataclass
class CachedPlan:
    plan: object
    path: Path
    status: str      # "cached" (loaded from disk) or "compiled" (and saved)
    seconds: float   # time to load or to compile and save


class PlanCache:
    """Compiled plans on disk, keyed by the model's sha256, the input size, the precision and the
    engine version (a new engine may change the plan format): a cached start only maps the file.

    ``compile_fn(model_path, (h, w), precision) -> plan`` (with ``plan.save(path)``) and
    ``load_fn(path) -> plan`` default to ``mobile_engine``'s.
    """

    def __init__(self, root: str | Path | None = None, compile_fn: Callable | None = None,
                 load_fn: Callable | None = None, version: str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._compile, self._load, self._version = compile_fn, load_fn, version

    def _engine(self):
        import mobile_engine as me
        if self._compile is None:
            self._compile = lambda model, size, precision: me.compile(
                str(model), input_shapes={"image": (1, 3, *size)},
                quantize=None if precision == "fp32" else precision)
        if self._load is None:
            self._load = me.Plan.load
        if self._version is None:
            self._version = me.__version__

    def path_for(self, model: str | Path, size: tuple[int, int], precision: str) -> Path:
        self._engine()
        digest = file_sha256(model)
        h, w = size
        return self.root / f"{Path(model).stem}-{digest[:16]}-{h}x{w}-{precision}-v{self._version}.mplan"

    def get(self, model: str | Path, size: tuple[int, int], precision: str = "fp32",
            log: Callable[[str], None] = print, force: bool = False) -> CachedPlan:
        """The cached plan, else a compiled and saved one (``force``: compile even if cached)."""
        path = self.path_for(model, size, precision)
        t0 = time.perf_counter()
        if path.is_file() and not force:
            try:
                plan = self._load(path)
                return CachedPlan(plan, path, "cached", time.perf_counter() - t0)
            except Exception as exc:  # stale or damaged file: compile it again
                log(f"cached plan {path} cannot be used ({exc}); compiling again")
        log(f"compiling {Path(model).name} for {size[0]}x{size[1]} {precision} "
            f"(once; cached in {self.root}) ...")
        plan = self._compile(model, size, precision)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            plan.save(tmp)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
        return CachedPlan(plan, path, "compiled", time.perf_counter() - t0)


def load_engine_stylizer(size: tuple[int, int], precision: str = "fp32", threads: int | None = None,
                         model: str | Path | None = None, cache: PlanCache | None = None,
                         log: Callable[[str], None] = print) -> EngineStylizer:
    """multistyle26 compiled (or loaded from the plan cache) for ``size`` and wrapped in a Session."""
    if precision != "fp32":
        raise PrecisionUnavailable(INT8_UNAVAILABLE)
    import mobile_engine as me
    from mobile_engine import zoo
    model = Path(model) if model is not None else zoo.model_path(MODEL_NAME)
    if not model.is_file():
        raise DemoError(f"{model}: no such model file")
    cache = cache or PlanCache()
    cached = cache.get(model, size, precision, log)
    verb = "loaded cached plan" if cached.status == "cached" else "compiled plan"
    log(f"{verb} {cached.path.name} in {cached.seconds * 1000:.0f} ms")
    try:
        session = me.Session(cached.plan, threads=threads)
    except me.EngineError as exc:
        if cached.status != "cached":
            raise
        # NOTE: a plan from an older build of the same engine version may no longer bind
        log(f"the cached plan cannot be used ({exc}); compiling again")
        cached = cache.get(model, size, precision, log, force=True)
        session = me.Session(cached.plan, threads=threads)
    return EngineStylizer(session, precision, f"mobile_engine {me.__version__} ({cached.status})")


# --- per-frame conversions -------------------------------------------------------------------
class FrameConverter:
    """Camera frames to model input and model output to displayable frames, in reused buffers."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = h, w = size
        self._fitted = np.empty((h, w, 3), np.uint8)
        self._x = np.empty((1, 3, h, w), np.float32)
        self._chan_f32 = [np.empty((h, w), np.float32) for _ in range(3)]
        self._chan_u8 = [np.empty((h, w), np.uint8) for _ in range(3)]
        self._bgr = np.empty((h, w, 3), np.uint8)

    def fit(self, frame: np.ndarray) -> np.ndarray:
        """u8[h0, w0, 3] -> u8[H, W, 3]: centre crop to the working aspect ratio, then resize.

        Returns ``frame`` itself when it already has the working size.
        """
        h, w = self.size
        fh, fw = frame.shape[:2]
        if (fh, fw) == (h, w):
            return frame
        if fw * h > fh * w:   # too wide: crop the sides
            cw = max(1, round(fh * w / h))
            x0 = (fw - cw) // 2
            frame = frame[:, x0:x0 + cw]
        elif fw * h < fh * w:  # too tall: crop top and bottom
            ch = max(1, round(fw * h / w))
            y0 = (fh - ch) // 2
            frame = frame[y0:y0 + ch]
        shrink = frame.shape[0] > h
        cv2.resize(frame, (w, h), dst=self._fitted,
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return self._fitted

    def to_model(self, fitted: np.ndarray) -> np.ndarray:
        """u8[H, W, 3] BGR -> f32[1, 3, H, W] RGB in 0..1 (the reused input buffer)."""
        for c in range(3):
            np.multiply(fitted[:, :, 2 - c], np.float32(1 / 255), out=self._x[0, c])
        return self._x

    def to_bgr(self, out: np.ndarray) -> np.ndarray:
        """f32[1, 3, H, W] RGB 0..1 -> u8[H, W, 3] BGR, rounded and clamped (the reused buffer)."""
        if out.shape != self._x.shape:
            raise DemoError(f"the stylizer returned shape {out.shape}; expected {self._x.shape}")
        for c in range(3):
            src = out[0, 2 - c]
            if src.dtype != np.float32 or not src.flags.c_contiguous:
                src = np.ascontiguousarray(src, np.float32)
            cv2.threshold(src, 0, 0, cv2.THRESH_TOZERO, dst=self._chan_f32[c])  # negatives -> 0
            cv2.convertScaleAbs(self._chan_f32[c], dst=self._chan_u8[c], alpha=255)  # round, clamp
        cv2.merge(self._chan_u8, dst=self._bgr)
        return self._bgr


@dataclass
class Result:
    original: np.ndarray   # u8[H, W, 3] BGR, the fitted input frame
    stylized: np.ndarray   # u8[H, W, 3] BGR
    pre_ms: float
    inference_ms: float
    post_ms: float


class StylePipeline:
    """One frame through fit -> to_model -> stylizer -> to_bgr, timed."""

    def __init__(self, stylizer: Stylizer, size: tuple[int, int], clock=time.perf_counter) -> None:
        self.stylizer = stylizer
        self.converter = FrameConverter(size)
        self.size = size
        self._clock = clock

    def process(self, frame: np.ndarray, style_weights: np.ndarray) -> Result:
        if style_weights.shape != (NUM_STYLES,):
            raise DemoError(f"style_weights must have shape ({NUM_STYLES},), got {style_weights.shape}")
        t0 = self._clock()
        fitted = self.converter.fit(frame)
        x = self.converter.to_model(fitted)
        t1 = self._clock()
        y = self.stylizer.run(x, style_weights)
        t2 = self._clock()
        stylized = self.converter.to_bgr(y)
        t3 = self._clock()
        return Result(fitted, stylized, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)

    def warm_up(self, style_weights: np.ndarray, runs: int = 2) -> list[float]:
        """Run on a grey frame (first run: kernel compile or cache load); the ms of each run."""
        grey = np.full((*self.size, 3), 128, np.uint8)
        out = []
        for _ in range(runs):
            t0 = self._clock()
            self.process(grey, style_weights)
            out.append((self._clock() - t0) * 1e3)
        return out


# --- statistics ------------------------------------------------------------------------------
def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None}
    p50, p90 = np.percentile(np.asarray(values, np.float64), [50, 90])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3)}


@dataclass
class Stats:
    """Per-frame timings. ``fps`` is end to end: frames out / (last output - first capture)."""
    latency_ms: list = field(default_factory=list)     # capture -> frame written/shown
    inference_ms: list = field(default_factory=list)
    pre_ms: list = field(default_factory=list)
    post_ms: list = field(default_factory=list)
    t_first_capture: float | None = None
    t_last_output: float | None = None
    _recent: list = field(default_factory=list)         # output times for the HUD's fps

    def add(self, t_capture: float, t_output: float, result: Result) -> None:
        if self.t_first_capture is None:
            self.t_first_capture = t_capture
        self.t_last_output = t_output
        self.latency_ms.append((t_output - t_capture) * 1e3)
        self.inference_ms.append(result.inference_ms)
        self.pre_ms.append(result.pre_ms)
        self.post_ms.append(result.post_ms)
        self._recent.append(t_output)
        del self._recent[:-31]

    @property
    def frames(self) -> int:
        return len(self.latency_ms)

    def fps(self) -> float:
        if self.frames == 0 or self.t_last_output <= self.t_first_capture:
            return 0.0
        return self.frames / (self.t_last_output - self.t_first_capture)

    def recent_fps(self) -> float:
        """Over the last 30 frames (the HUD's number)."""
        if len(self._recent) < 2:
            return 0.0
        return (len(self._recent) - 1) / max(self._recent[-1] - self._recent[0], 1e-9)

    def summary(self, **extra) -> dict:
        return {"fps": round(self.fps(), 3), "frames": self.frames,
                "latency_ms": _percentiles(self.latency_ms),
                "inference_ms": _percentiles(self.inference_ms),
                "preprocess_ms": _percentiles(self.pre_ms),
                "postprocess_ms": _percentiles(self.post_ms), **extra}
