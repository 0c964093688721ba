"""The per-frame work: fit a camera frame to the working size, convert it to the model's input and
the model's output back to a displayable frame, one frame through the stylizer, timed, and the
run's statistics.

Layout contract:
    camera frame  u8[h0, w0, 3] BGR (any size)
    -> fitted     u8[H, W, 3] BGR        (centre crop to the aspect ratio, resize; reused buffer)
    -> model in   f32[1, 3, H, W] RGB 0..1 (reused buffer)
    -> model out  f32[1, 3, H, W] RGB 0..1 (the stylizer's array)
    -> stylized   u8[H, W, 3] BGR        (rounded, clamped to 0..255; reused buffer)
With ``--style-image`` (the Magenta arbitrary-style models, fixed input size th x tw):
    fitted u8[H, W, 3] BGR -> model in f32[1, th, tw, 3] RGB 0..1 (resized; NHWC)
    -> model out f32[1, th, tw, 3] RGB 0..1 -> stylized u8[H, W, 3] BGR (resized back)
The reused buffers are overwritten by the next frame: copy what must outlive it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from demo_style_transfer.errors import DemoError
from demo_style_transfer.styles import NUM_STYLES


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


class ResizingConverter(FrameConverter):
    """Like ``FrameConverter`` for an NHWC model with its own fixed input size ``model_size``
    (th, tw): ``to_model`` u8[H, W, 3] BGR -> f32[1, th, tw, 3] RGB 0..1 (resized),
    ``to_bgr`` f32[1, th, tw, 3] RGB 0..1 -> u8[H, W, 3] BGR (resized back, rounded, clamped).
    Reused buffers, as ``FrameConverter``."""

    def __init__(self, size: tuple[int, int], model_size: tuple[int, int]) -> None:
        super().__init__(size)
        h, w = size
        self.model_size = th, tw = model_size
        self._small = np.empty((th, tw, 3), np.uint8)
        self._small_rgb = np.empty((th, tw, 3), np.uint8)
        self._xm = np.empty((1, th, tw, 3), np.float32)
        self._big = np.empty((h, w, 3), np.float32)
        self._big_u8 = np.empty((h, w, 3), np.uint8)

    def to_model(self, fitted: np.ndarray) -> np.ndarray:
        th, tw = self.model_size
        small = fitted
        if fitted.shape[:2] != (th, tw):
            shrink = fitted.shape[0] > th or fitted.shape[1] > tw
            cv2.resize(fitted, (tw, th), dst=self._small,
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            small = self._small
        cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=self._small_rgb)
        np.multiply(self._small_rgb, np.float32(1 / 255), out=self._xm[0])
        return self._xm

    def to_bgr(self, out: np.ndarray) -> np.ndarray:
        if out.shape != self._xm.shape:
            raise DemoError(f"the stylizer returned shape {out.shape}; expected {self._xm.shape}")
        h, w = self.size
        src = out[0]
        if src.dtype != np.float32 or not src.flags.c_contiguous:
            src = np.ascontiguousarray(src, np.float32)
        if src.shape[:2] != (h, w):
            cv2.resize(src, (w, h), dst=self._big, interpolation=cv2.INTER_LINEAR)
            src = self._big
        cv2.threshold(src, 0, 0, cv2.THRESH_TOZERO, dst=self._big)              # negatives -> 0
        cv2.convertScaleAbs(self._big, dst=self._big_u8, alpha=255)             # round, clamp
        cv2.cvtColor(self._big_u8, cv2.COLOR_RGB2BGR, dst=self._bgr)
        return self._bgr


@dataclass
class Result:
    original: np.ndarray   # u8[H, W, 3] BGR, the fitted input frame
    stylized: np.ndarray   # u8[H, W, 3] BGR
    pre_ms: float
    inference_ms: float
    post_ms: float


class StylePipeline:
    """One frame through fit -> to_model -> stylizer -> to_bgr, timed (the stylizer's
    ``make_converter(size)`` if it has one, else ``FrameConverter``)."""

    def __init__(self, stylizer: Stylizer, size: tuple[int, int], clock=time.perf_counter) -> None:
        self.stylizer = stylizer
        make_converter = getattr(stylizer, "make_converter", FrameConverter)
        self.converter = make_converter(size)
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
