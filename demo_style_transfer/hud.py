"""The side-by-side view (input | stylized) and the HUD text drawn on it with OpenCV.

``HudRenderer(size).compose(original, stylized, info) -> u8[H, 2W, 3] BGR`` (one reused canvas);
both panes are u8[H, W, 3] BGR.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class HudInfo:
    fps: float
    inference_ms: float
    style: str
    precision: str
    threads: int | None
    note: str = ""
    recording: bool = False
    effect: str = ""       # e.g. "effect portrait-blur" (the first line under the fps)

    def lines(self) -> list[str]:
        threads = "? threads" if self.threads is None else \
            f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        fps = f"{self.fps:5.1f}" if self.fps > 0 else "   --"
        out = [f"{fps} fps   inference {self.inference_ms:6.1f} ms"]
        if self.effect:
            out.append(self.effect)
        out += [self.style] if self.style else []
        out.append(f"{self.precision}   {threads}")
        if self.note:
            out.append(self.note)
        return out


def _text_block(img: np.ndarray, lines: list[str], x: int, y: int, scale: float) -> None:
    """White text on a darkened box, top-left corner at (x, y)."""
    thickness = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(t, FONT, scale, thickness) for t in lines]
    line_h = max(s[0][1] + s[1] for s in sizes) + max(2, round(6 * scale))
    width = max(s[0][0] for s in sizes) + 2 * max(2, round(8 * scale))
    height = line_h * len(lines) + max(2, round(6 * scale))
    box = img[y:y + height, x:x + width]
    box >>= 1  # darken in place: readable on any picture
    for i, text in enumerate(lines):
        baseline_y = y + (i + 1) * line_h - max(1, round(3 * scale))
        cv2.putText(img, text, (x + max(2, round(8 * scale)), baseline_y), FONT, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)


class HudRenderer:
    """Draws into one reused canvas u8[H, 2W, 3]."""

    def __init__(self, size: tuple[int, int]) -> None:
        h, w = size
        self.canvas = np.empty((h, 2 * w, 3), np.uint8)
        self.scale = max(0.3, min(h, w) / 900)

    def compose(self, original: np.ndarray, stylized: np.ndarray, info: HudInfo) -> np.ndarray:
        h, w = original.shape[:2]
        c = self.canvas
        c[:, :w] = original
        c[:, w:] = stylized
        margin = max(2, round(10 * self.scale))
        _text_block(c, ["input"], margin, margin, self.scale)
        _text_block(c, info.lines(), w + margin, margin, self.scale)
        if info.recording:
            r = max(3, round(10 * self.scale))
            cv2.circle(c, (2 * w - margin - r, margin + r), r, (0, 0, 255), -1, cv2.LINE_AA)
            cv2.putText(c, "REC", (2 * w - margin - 2 * r - round(60 * self.scale), margin + 2 * r),
                        FONT, self.scale, (0, 0, 255), max(1, round(self.scale * 2)), cv2.LINE_AA)
        return c

