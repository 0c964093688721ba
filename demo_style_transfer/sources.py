"""Frame sources (camera, video file, still image, a synthetic pan-zoom camera over a photo) and the
capture thread that keeps only the newest frame.

Source contract: ``read() -> u8[H, W, 3] BGR C-contiguous`` (a fresh array per call, never reused by
the source) or ``None``. ``None`` from a source with ``can_end`` is the normal end of the stream (end of
a file); from any other source (a camera) it means the source was lost. ``live`` sources deliver in
real time (a camera, the paced synthetic camera): the capture thread keeps only their newest frame and
counts the others as dropped. Other sources (files) are read in lock step, one frame per request, so a
video is processed frame by frame without drops.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif"}


class SourceError(Exception):
    """A source that cannot be opened (no camera at that index, unreadable file)."""


class SourceLost(Exception):
    """A source that stopped delivering frames in the middle of a run (camera unplugged)."""


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV prints warnings on stderr when probing a missing camera; we print our own message."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    old = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(old)


class CameraSource:
    """A camera through ``cv2.VideoCapture(index)``; opening checks that a first frame arrives."""
    live = True
    can_end = False

    def __init__(self, index: int = 0, capture_factory=cv2.VideoCapture) -> None:
        self.name = f"camera {index}"
        with _quiet_opencv():
            self._cap = capture_factory(index)
            ok = self._cap.isOpened()
            ok, frame = self._cap.read() if ok else (False, None)
        if not ok or frame is None:
            self._cap.release()
            raise SourceError(f"camera {index} could not be opened (no camera at that index, "
                              f"or it is in use by another program)")
        self._first = frame
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 1 <= fps <= 240 else 30.0

    def read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


class VideoSource:
    """A video file, frame by frame; ``None`` at its end."""
    live = False
    can_end = True

    def __init__(self, path: str | Path) -> None:
        self.name = str(path)
        if not Path(path).is_file():
            raise SourceError(f"{path}: no such file")
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"{path}: OpenCV cannot read this video file")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 1 <= fps <= 240 else 30.0

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        self._cap.release()


class ImageSource:
    """A still picture repeated ``count`` times (``None``: for ever)."""
    live = False
    can_end = True
    fps = 30.0

    def __init__(self, path: str | Path, count: int | None = None) -> None:
        self.name = str(path)
        self._image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if self._image is None:
            raise SourceError(f"{path}: no such file or not an image OpenCV can read")
        self._left = count

    def read(self) -> np.ndarray | None:
        if self._left is not None:
            if self._left <= 0:
                return None
            self._left -= 1
        return self._image.copy()

    def close(self) -> None:
        pass


def pattern_image(h: int, w: int) -> np.ndarray:
    """A colourful u8[h, w, 3] picture (gradients, circles, bars) for when no photo is available."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1),
                    127.5 + 127.5 * np.sin(x / 23.0) * np.cos(y / 17.0)], axis=-1).astype(np.uint8)
    for k in range(6):
        center = (int(w * (0.15 + 0.14 * k)), int(h * (0.3 + 0.4 * (k % 2))))
        cv2.circle(img, center, max(2, min(h, w) // 10), (40 * k, 255 - 40 * k, 128), -1)
    return img


class SyntheticCamera:
    """A camera-like stream: a slow pan and zoom over a photo, paced at ``fps`` (0: unpaced).

    Frames are u8[h, w, 3] BGR at the requested size; the view wanders over the photo on a Lissajous
    path and zooms between 1.1x and 1.5x, so consecutive frames differ like a hand-held camera's.
    """
    live = True
    can_end = False

    def __init__(self, size: tuple[int, int], photo: str | Path | None = None, fps: float = 30.0,
                 clock=time.perf_counter, sleep=time.sleep) -> None:
        self.size = size
        self.fps = float(fps)
        self._clock, self._sleep = clock, sleep
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR) if photo is not None else None
        if photo is not None and image is None:
            raise SourceError(f"{photo}: no such file or not an image OpenCV can read")
        self.name = f"synthetic camera over {Path(photo).name if photo else 'a test pattern'}"
        self._photo = image if image is not None else pattern_image(*size)
        self._k = 0
        self._next = None

    def _view(self, k: int) -> np.ndarray:
        h, w = self.size
        ph, pw = self._photo.shape[:2]
        t = k / 30.0  # NOTE: motion is defined per frame at 30 fps, independent of pacing
        zoom = 1.3 + 0.2 * math.sin(2 * math.pi * t / 7.0)
        # the output window shows a (h/s, w/s) region of the photo, s chosen to cover it at this zoom
        s = zoom * max(h / ph, w / pw)
        free_x, free_y = max(pw - w / s, 0.0), max(ph - h / s, 0.0)
        cx = pw / 2 + 0.5 * free_x * math.sin(2 * math.pi * t / 11.0)
        cy = ph / 2 + 0.5 * free_y * math.sin(2 * math.pi * t / 5.0 + 1.0)
        m = np.array([[s, 0, w / 2 - s * cx], [0, s, h / 2 - s * cy]], np.float64)
        return cv2.warpAffine(self._photo, m, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def read(self) -> np.ndarray | None:
        if self.fps > 0:
            now = self._clock()
            if self._next is None or now - self._next > 1.0:
                self._next = now  # first frame, or far behind: do not try to catch up
            elif self._next > now:
                self._sleep(self._next - now)
            self._next += 1.0 / self.fps
        frame = self._view(self._k)
        self._k += 1
        return frame

    def close(self) -> None:
        pass


class PacedSource:
    """Plays a file source in real time (at its own fps) like a camera: for ``--realtime``."""
    live = True
    can_end = True

    def __init__(self, source, clock=time.perf_counter, sleep=time.sleep) -> None:
        self.source, self.name, self.fps = source, source.name, source.fps
        self._clock, self._sleep, self._start, self._k = clock, sleep, None, 0

    def read(self) -> np.ndarray | None:
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._k / self.fps
        if due > now:
            self._sleep(due - now)
        self._k += 1
        return self.source.read()

    def close(self) -> None:
        self.source.close()


def open_input(path: str | Path, count: int | None = None):
    """A ``VideoSource`` or ``ImageSource`` for ``--input FILE`` (chosen by the file's suffix)."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path)
    if cv2.haveImageReader(str(path)):
        return ImageSource(path, count)
    return VideoSource(path)


@dataclass
class Frame:
    image: np.ndarray   # u8[H, W, 3] BGR, owned by the consumer once handed over
    index: int          # position in the source's stream (gaps = dropped frames)
    t_capture: float    # time.perf_counter() when the source delivered it


class CaptureThread:
    """Reads a source in a background thread and hands frames over through a one-frame slot.

    ``keep_latest`` (default: ``source.live``): a new frame replaces an unclaimed one (counted in
    ``dropped``): the consumer always gets the newest frame, nothing queues up. Otherwise the reader
    reads one frame per ``get`` (lock step: every frame of a file is processed, none waits ahead).
    """

    def __init__(self, source, keep_latest: bool | None = None, clock=time.perf_counter) -> None:
        self.source = source
        self.keep_latest = source.live if keep_latest is None else keep_latest
        self.dropped = 0
        self.captured = 0
        self._clock = clock
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._wanted = False          # lock step: the consumer asked for the next frame
        self._ended = False
        self._error: SourceLost | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="capture", daemon=True)

    def start(self) -> "CaptureThread":
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop:
                if not self.keep_latest:
                    with self._cond:
                        self._cond.wait_for(lambda: self._wanted or self._stop)
                        if self._stop:
                            break
                        self._wanted = False
                try:
                    image = self.source.read()
                except Exception as exc:  # any failure of a driver or decoder ends the stream cleanly
                    raise SourceLost(f"{self.source.name} failed: {exc}") from exc
                if image is None:
                    if not self.source.can_end:
                        raise SourceLost(f"{self.source.name} stopped delivering frames "
                                         f"(disconnected?)")
                    break
                frame = Frame(image, self.captured, self._clock())
                self.captured += 1
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = frame
                    self._cond.notify_all()
        except SourceLost as exc:
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            with contextlib.suppress(Exception):
                self.source.close()

    def get(self, timeout: float = 5.0) -> Frame | None:
        """The newest frame not yet taken; ``None`` at the normal end of the stream.

        Raises ``SourceLost`` when the source failed, or delivered nothing for ``timeout`` seconds.
        """
        with self._cond:
            if not self.keep_latest and self._slot is None:
                self._wanted = True
                self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._slot is not None or self._ended, timeout):
                raise SourceLost(f"{self.source.name} delivered no frame for {timeout:g} s")
            frame, self._slot = self._slot, None
            if frame is not None:
                return frame
            if self._error is not None:
                raise self._error
            return None

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
