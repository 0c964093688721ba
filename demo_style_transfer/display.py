"""The demo's window and output files.

The window opens at the view's size (original | stylized: u8[H, 2W, 3] BGR) and keeps its aspect
ratio when resized; while the engine starts it shows a loading screen (what is happening, the
kernels compiled so far). ``--output`` is chosen by its extension: a video (.mp4, .mov, .avi) of
every frame, or a picture (.png, .jpg, ...) of the last one; any other extension is refused
before the run.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from demo_style_transfer.hud import FONT
from demo_style_transfer.pipeline import DemoError

WINDOW_TITLE = ("mobile-engine style transfer (e effect, n/p style, 0-9 pick, b blend, s shot, "
                "r rec, f int8, q quit)")
VIDEO_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def output_kind(path: str | Path) -> str | None:
    """"video", "image" or None (an extension the demo cannot write) for ``--output``."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_FOURCC:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def output_kinds_help() -> str:
    return (f"a video ({', '.join(VIDEO_FOURCC)}) or a picture of the last frame "
            f"({', '.join(IMAGE_EXTENSIONS)})")


# --- window ----------------------------------------------------------------------------------
class Window:
    """An OpenCV window of ``size_wh`` (keeps its aspect when resized, no toolbar); ``poll``
    returns the keys pressed (a closed window reads as 'q')."""

    def __init__(self, title: str, size_wh: tuple[int, int]) -> None:
        self.title = title
        self.size_wh = size_wh
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        cv2.resizeWindow(title, *size_wh)

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.title, image)

    def poll(self, frame_number: int, wait_ms: int = 1) -> list[int]:
        key = cv2.waitKey(wait_ms)
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return [ord("q")]
        return [key & 0xFF] if key >= 0 else []

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def has_display() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY")
                                                        or os.environ.get("WAYLAND_DISPLAY"))


def opencv_conflict() -> str:
    """Why the installed OpenCV is unreliable ("" when it is fine): opencv-python and
    opencv-python-headless both installed write the same cv2 folder, and whichever came last
    decides whether there is a GUI."""
    from importlib import metadata
    found = []
    for dist in ("opencv-python", "opencv-python-headless"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if len(found) < 2:
        return ""
    return (f"both {' and '.join(found)} are installed and share the cv2 folder: `pip uninstall "
            f"-y opencv-python-headless opencv-python && pip install opencv-python` (or `make "
            f"install`)")


def open_window(size_wh: tuple[int, int] = (1280, 480), title: str = WINDOW_TITLE):
    """``(Window, "")`` or ``(None, why not)``: no display, or an OpenCV built without GUI."""
    if not has_display():
        return None, "no display ($DISPLAY is not set)"
    try:
        window = Window(title, size_wh)
        window.show(loading_screen(size_wh, ["starting ..."]))
        cv2.waitKey(1)
        return window, ""
    except cv2.error:
        conflict = opencv_conflict()
        if conflict:
            return None, f"no window: {conflict}"
        return None, ("this OpenCV has no GUI support (opencv-python-headless cannot open windows; "
                      "`pip uninstall opencv-python-headless && pip install opencv-python`, or "
                      "`make install`)")


def loading_screen(size_wh: tuple[int, int], lines: list[str],
                   fraction: float | None = None) -> np.ndarray:
    """u8[h, w, 3]: the title, the last log ``lines`` and a progress bar at ``fraction``."""
    w, h = size_wh
    img = np.zeros((h, w, 3), np.uint8)
    scale = max(0.35, min(h, w / 2) / 900)
    line_h = max(12, round(34 * scale))
    thick = max(1, round(scale * 2))
    y = line_h + 8
    cv2.putText(img, "mobile-engine: starting (q quits)", (12, y), FONT, scale * 1.2,
                (255, 255, 255), thick, cv2.LINE_AA)
    fit = max(1, (h - 3 * line_h - 20) // line_h)
    wrapped = [part for text in lines for part in _wrap(text.strip(), w - 24, scale)]
    for text in wrapped[-fit:]:
        y += line_h
        cv2.putText(img, text, (12, y), FONT, scale, (200, 200, 200), 1, cv2.LINE_AA)
    if fraction is not None:
        x0, x1, y0 = 12, w - 12, h - line_h - 8
        cv2.rectangle(img, (x0, y0), (x1, y0 + line_h), (90, 90, 90), 1)
        fill = x0 + round((x1 - x0) * min(max(fraction, 0.0), 1.0))
        cv2.rectangle(img, (x0, y0), (fill, y0 + line_h), (80, 180, 80), -1)
    return img


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels (split at spaces)."""
    out, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and cv2.getTextSize(trial, FONT, scale, 1)[0][0] > width:
            out.append(line)
            line = f"  {word}"
        else:
            line = trial
    return out + [line] if line else out


# --- files -----------------------------------------------------------------------------------
class VideoOut:
    """cv2.VideoWriter that checks it opened (mp4v for .mp4/.mov, MJPG for .avi)."""

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        check_writable(self.path)
        fourcc = VIDEO_FOURCC.get(self.path.suffix.lower(), "mp4v")
        self._w = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
        if not self._w.isOpened():
            raise DemoError(f"{self.path}: OpenCV cannot write a video there (use .mp4 or .avi)")
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        self._w.write(image)
        self.frames += 1

    def close(self) -> None:
        self._w.release()


def write_picture(path: str | Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise DemoError(f"{path}: OpenCV could not write the picture")


def check_writable(path: Path) -> None:
    """Fail before the run, not after it: the folder exists (made if needed) and takes a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise DemoError(f"{path}: cannot write there ({exc.strerror or exc})") from None
