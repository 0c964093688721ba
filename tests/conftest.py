"""Shared fixtures: the real models and photos of ../shared/DATA.md (fetched by `make models`)."""
import numpy as np
import pytest

from mobile_engine import zoo


def _require(path_fn, name):
    try:
        return path_fn(name)
    except zoo.ZooError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def multistyle26_path():
    return str(_require(zoo.model_path, "multistyle26"))


@pytest.fixture(scope="session")
def photo():
    """photo(name, h, w) -> float32 [1, 3, h, w] in 0..1, a real picture resized."""
    from PIL import Image

    def load(name: str, h: int, w: int) -> np.ndarray:
        img = Image.open(_require(zoo.image_path, name)).convert("RGB").resize((w, h),
                                                                               Image.BILINEAR)
        return (np.asarray(img, np.float32) / 255).transpose(2, 0, 1)[None].copy()
    return load


@pytest.fixture(scope="session")
def ort():
    return pytest.importorskip("onnxruntime")


def ort_run(ort, model, feeds, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    model = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, feeds)
