"""Face boxes from MediaPipe's short-range face detector (``face_detection_short_range.tflite``),
and hiding them (pixelate or blur each box). Tracking-free: every frame is detected on its own.

The model (BlazeFace): ``f32[1, 128, 128, 3] RGB in -1..1 -> regressors f32[1, 896, 16],
classificators f32[1, 896, 1]``. Each of the 896 rows belongs to an SSD anchor; MediaPipe's
face_detection_short_range graph defines them (``SsdAnchorsCalculator``: 4 layers, strides 8, 16,
16, 16, scales 0.1484375 to 0.75, aspect ratio 1 plus one interpolated scale, offset 0.5, fixed
anchor size) and decodes them (``TensorsToDetectionsCalculator``: box centre = raw / 128 + anchor
centre, size = raw / 128, score = sigmoid(clip(raw, -100, 100)) >= 0.5), then merges overlapping
boxes by weighted non-maximum suppression (IoU 0.3). The frame goes in letterboxed (aspect kept,
black bars), as MediaPipe's ``ImageToTensorCalculator`` with ``keep_aspect_ratio`` does, and the
boxes are mapped back to the frame's pixels.

Layout: frame u8[H, W, 3] BGR -> letterboxed f32[1, 128, 128, 3] RGB -1..1 -> boxes
f32[N, 4] (x0, y0, x1, y1) in frame pixels and scores f32[N], best first.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from demo_style_transfer.errors import DemoError

MODEL_NAME = "face_detection_short_range"
INPUT_SIZE = 128
NUM_ANCHORS = 896
SCORE_THRESHOLD = 0.5       # MediaPipe's min_score_thresh for this model
NMS_IOU = 0.3               # ... and its min_suppression_threshold
SCORE_CLIP = 100.0


@dataclass(frozen=True)
class AnchorOptions:
    """``SsdAnchorsCalculatorOptions`` of MediaPipe's face_detection_short_range graph."""
    input_size: tuple = (128, 128)        # (h, w)
    num_layers: int = 4
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    strides: tuple = (8, 16, 16, 16)
    aspect_ratios: tuple = (1.0,)
    anchor_offset: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


def _scale(opts: AnchorOptions, layer: int) -> float:
    if opts.num_layers == 1:
        return (opts.min_scale + opts.max_scale) / 2
    return opts.min_scale + (opts.max_scale - opts.min_scale) * layer / (opts.num_layers - 1)


def ssd_anchors(opts: AnchorOptions = AnchorOptions()) -> np.ndarray:
    """f32[N, 4] anchors (x_centre, y_centre, w, h), normalised, in MediaPipe's order: layers
    of the same stride share a feature map, cells row by row, that map's anchors per cell."""
    out = []
    layer = 0
    while layer < opts.num_layers:
        sizes = []                           # (w, h) of each anchor of a cell
        last = layer
        while last < opts.num_layers and opts.strides[last] == opts.strides[layer]:
            scale = _scale(opts, last)
            pairs = [(scale, ar) for ar in opts.aspect_ratios]
            if opts.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == opts.num_layers - 1 else _scale(opts, last + 1)
                pairs.append((math.sqrt(scale * nxt), opts.interpolated_scale_aspect_ratio))
            sizes += [(s * math.sqrt(ar), s / math.sqrt(ar)) for s, ar in pairs]
            last += 1
        stride = opts.strides[layer]
        fh = math.ceil(opts.input_size[0] / stride)
        fw = math.ceil(opts.input_size[1] / stride)
        for y in range(fh):
            for x in range(fw):
                for w, h in sizes:
                    if opts.fixed_anchor_size:
                        w = h = 1.0
                    out.append(((x + opts.anchor_offset) / fw, (y + opts.anchor_offset) / fh, w, h))
        layer = last
    return np.asarray(out, np.float32)


def decode(regressors: np.ndarray, scores: np.ndarray, anchors: np.ndarray,
           input_size: int = INPUT_SIZE, threshold: float = SCORE_THRESHOLD):
    """(boxes f32[K, 4] x0, y0, x1, y1 normalised to the model input, scores f32[K]) of the anchors
    whose score passes ``threshold`` (before suppression)."""
    raw = regressors.reshape(-1, regressors.shape[-1])
    logits = np.clip(scores.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
    prob = 1.0 / (1.0 + np.exp(-logits))   # NOTE: float64: exp(100) overflows float32
    keep = np.flatnonzero(prob >= threshold)
    if raw.shape[0] != anchors.shape[0]:
        raise DemoError(f"the face detector returned {raw.shape[0]} boxes; its anchors are "
                        f"{anchors.shape[0]}")
    r, a = raw[keep, :4] / np.float32(input_size), anchors[keep]
    cx = r[:, 0] * a[:, 2] + a[:, 0]
    cy = r[:, 1] * a[:, 3] + a[:, 1]
    w, h = r[:, 2] * a[:, 2], r[:, 3] * a[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes.astype(np.float32), prob[keep].astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU):
    """MediaPipe's WEIGHTED non-maximum suppression: the best box and every box overlapping it
    by more than ``iou`` become one box (their score-weighted mean) with the best score."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    out_b, out_s = [], []
    while len(scores):
        group = _iou(boxes[0], boxes) > iou
        group[0] = True
        w = scores[group]
        out_b.append((boxes[group] * w[:, None]).sum(0) / w.sum())
        out_s.append(scores[0])
        boxes, scores = boxes[~group], scores[~group]
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.asarray(out_b, np.float32), np.asarray(out_s, np.float32)


class Letterbox:
    """A frame of (h, w) into the model's square input, aspect kept and centred on black bars
    (reused buffers), and boxes back to the frame's pixels."""

    def __init__(self, frame_size: tuple[int, int], input_size: int = INPUT_SIZE) -> None:
        h, w = frame_size
        self.scale = input_size / max(h, w)
        self.inner = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        self.top = (input_size - self.inner[0]) // 2
        self.left = (input_size - self.inner[1]) // 2
        self.input_size = input_size
        self._small = np.empty((*self.inner, 3), np.uint8)
        self._x = np.full((1, input_size, input_size, 3), -1.0, np.float32)

    def to_model(self, frame_bgr: np.ndarray) -> np.ndarray:
        """u8[h, w, 3] BGR -> f32[1, S, S, 3] RGB in -1..1 (the reused input buffer)."""
        ih, iw = self.inner
        # NOTE: bilinear: INTER_AREA costs 10x more here (2.4 against 0.25 ms at 480x640)
        cv2.resize(frame_bgr, (iw, ih), dst=self._small, interpolation=cv2.INTER_LINEAR)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2RGB, dst=self._small)
        dst = self._x[0, self.top:self.top + ih, self.left:self.left + iw]
        np.multiply(self._small, np.float32(2 / 255), out=dst)
        dst -= 1
        return self._x

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes normalised to the model input -> the frame's pixels (not clipped)."""
        s = self.input_size
        out = boxes * np.float32(s)
        out[:, [0, 2]] -= self.left
        out[:, [1, 3]] -= self.top
        return out / np.float32(self.scale)


class FaceDetector:
    """Face boxes on frames of ``frame_size``: ``run(x) -> outputs`` is the model (the engine's
    Session, or LiteRT in the tests); its outputs are told apart by their last dimension (16 box
    and keypoint values, 1 score)."""

    def __init__(self, run: Callable[[np.ndarray], list], frame_size: tuple[int, int],
                 description: str = "", threshold: float = SCORE_THRESHOLD) -> None:
        self._run = run
        self.letterbox = Letterbox(frame_size)
        self.anchors = ssd_anchors()
        self.threshold = threshold
        self.description = description
        self.inference_ms = 0.0

    def raw(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(regressors f32[896, 16], score logits f32[896]) for one frame."""
        x = self.letterbox.to_model(frame_bgr)
        t0 = time.perf_counter()
        outs = self._run(x)
        self.inference_ms = (time.perf_counter() - t0) * 1e3
        by_last = {o.shape[-1]: o for o in outs}
        if set(by_last) != {16, 1}:
            raise DemoError(f"the face detector's outputs are {[o.shape for o in outs]}; "
                            f"expected [1, 896, 16] and [1, 896, 1]")
        return by_last[16].reshape(-1, 16), by_last[1].reshape(-1)

    def detect(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes f32[N, 4] x0, y0, x1, y1 in the frame's pixels, scores f32[N]), best first."""
        regressors, logits = self.raw(frame_bgr)
        boxes, scores = decode(regressors, logits, self.anchors, self.letterbox.input_size,
                               self.threshold)
        boxes, scores = weighted_nms(boxes, scores)
        return self.letterbox.to_frame(boxes), scores


def face_regions(boxes: np.ndarray, frame_size: tuple[int, int], grow: float = 0.25):
    """Integer (x0, y0, x1, y1) regions to hide: each box grown by ``grow`` of its size on every
    side (the detector's box is tight around eyes, nose and mouth), clipped to the frame; empty
    ones dropped."""
    h, w = frame_size
    out = []
    for x0, y0, x1, y1 in boxes:
        dx, dy = (x1 - x0) * grow, (y1 - y0) * grow
        r = (max(0, int(x0 - dx)), max(0, int(y0 - dy * 1.4)),   # more above: forehead, hair
             min(w, int(math.ceil(x1 + dx))), min(h, int(math.ceil(y1 + dy))))
        if r[2] > r[0] and r[3] > r[1]:
            out.append(r)
    return out


def pixelate(image: np.ndarray, regions, blocks: int = 10) -> None:
    """Each region of ``image`` (in place) as about ``blocks`` coarse squares across."""
    for x0, y0, x1, y1 in regions:
        roi = image[y0:y1, x0:x1]
        rh, rw = roi.shape[:2]
        cell = max(1, max(rh, rw) // blocks)
        small = cv2.resize(roi, (max(1, rw // cell), max(1, rh // cell)),
                           interpolation=cv2.INTER_AREA)
        cv2.resize(small, (rw, rh), dst=roi, interpolation=cv2.INTER_NEAREST)


def blur(image: np.ndarray, regions) -> None:
    """Each region of ``image`` (in place) blurred beyond recognition."""
    for x0, y0, x1, y1 in regions:
        roi = image[y0:y1, x0:x1]
        sigma = max(2.0, max(roi.shape[:2]) / 6)
        cv2.GaussianBlur(roi, (0, 0), sigma, dst=roi)
