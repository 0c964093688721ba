"""Image files as model inputs and outputs (the CLI's ``--input``, ``--output`` and ``--calib``).

A model's image input is its first 4-D input of 3 channels, planar ``[N, 3, H, W]`` or
interleaved ``[N, H, W, 3]`` (TensorFlow-exported models), float32 (RGB scaled to 0..1) or uint8
(0..255). Images are converted to RGB and resized (bilinear) to the input's H x W.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_engine.errors import InputError

DTYPES = ("float32", "uint8")


@dataclass(frozen=True)
class ImageInput:
    name: str
    shape: tuple[int, ...]
    dtype: str             # "float32" (0..1) or "uint8" (0..255)
    layout: str            # "nchw" or "nhwc"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.shape[2], self.shape[3]) if self.layout == "nchw" else self.shape[1:3]

    def describe(self) -> str:
        scale = "0..1" if self.dtype == "float32" else "0..255"
        return f"resized to {self.size[0]}x{self.size[1]}, RGB {scale}, {self.layout.upper()}"


def _layout(shape) -> str | None:
    if len(shape) != 4:
        return None
    return "nchw" if shape[1] == 3 else "nhwc" if shape[3] == 3 else None


def image_input(inputs) -> ImageInput | None:
    """The image input among ``inputs`` ((name, shape, dtype name) triples), or None."""
    for name, shape, dtype in inputs:
        layout = _layout(shape)
        if layout and dtype in DTYPES:
            return ImageInput(name, tuple(int(d) for d in shape), dtype, layout)
    return None


def require_image_input(inputs, what: str) -> ImageInput:
    found = image_input(inputs)
    if found is None:
        listed = ", ".join(f"{n} {d} {list(s)}" for n, s, d in inputs)
        raise InputError(f"{what} needs an image input ([N, 3, H, W] or [N, H, W, 3], float32 or "
                         f"uint8); the model's inputs: {listed}")
    return found


def load_image(path: str, spec: ImageInput) -> np.ndarray:
    """The image at ``path`` as a batch of one for ``spec``."""
    from PIL import Image
    height, width = spec.size
    try:
        img = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
    except OSError as exc:
        raise InputError(f"{path}: cannot read image: {exc}") from None
    return rgb_to_input(np.asarray(img, np.uint8), spec)


def rgb_to_input(hwc: np.ndarray, spec: ImageInput) -> np.ndarray:
    """u8[H, W, 3] RGB already of ``spec``'s size -> a new batch of one for ``spec``."""
    x = hwc.astype(np.float32) / np.float32(255) if spec.dtype == "float32" else hwc
    x = x.transpose(2, 0, 1) if spec.layout == "nchw" else x
    return np.broadcast_to(x[None], spec.shape).copy()


def output_to_rgb(x: np.ndarray) -> np.ndarray | None:
    """The first image of a 3-channel 4-D output (float 0..1 or uint8; NCHW or NHWC) as
    u8[H, W, 3] RGB (contiguous); None when ``x`` is not one."""
    layout = _layout(x.shape)
    if layout is None:
        return None
    hwc = x[0].transpose(1, 2, 0) if layout == "nchw" else x[0]
    if hwc.dtype != np.uint8:
        hwc = (np.clip(hwc, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(hwc)


def save_image(x: np.ndarray, path: str) -> bool:
    """Write the first image of a 3-channel 4-D output (float 0..1 or uint8; NCHW or NHWC);
    False when ``x`` is not one."""
    from PIL import Image
    hwc = output_to_rgb(x)
    if hwc is None:
        return False
    Image.fromarray(hwc).save(path)
    return True
