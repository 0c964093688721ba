"""`zoo fetch` for MediaPipe's .tflite models: the pinned wheel, the cached files' sizes and
sha256 (those of ../shared/DATA.md's wheel), and the errors naming what is missing."""
from __future__ import annotations

import subprocess

import pytest

from mobile_engine import zoo


def test_mediapipe_wheel_is_pinned_to_the_one_of_data_md(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, "", "offline")
    monkeypatch.setattr(zoo.subprocess, "run", fake_run)
    with pytest.raises(zoo.ZooError, match="could not download mediapipe==0.10.14"):
        zoo._download(zoo.MEDIAPIPE_WHEEL, tmp_path)
    cmd = seen["cmd"]
    assert "mediapipe==0.10.14" in cmd and "--no-deps" in cmd
    # the same wheel on every machine: cp311 manylinux x86_64 (the .tflite files are portable)
    assert cmd[cmd.index("--platform") + 1] == "manylinux2014_x86_64"
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    assert zoo.MEDIAPIPE_WHEEL.sha256 == \
        "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4"


@pytest.mark.parametrize("name", sorted(zoo.TFLITE_MODELS))
def test_cached_tflite_model_is_the_wheels(name):
    try:
        path = zoo.model_path(name)
    except zoo.ZooError as exc:
        pytest.skip(str(exc))
    _, size, digest = zoo.TFLITE_MODELS[name]
    assert path.suffix == ".tflite" and path.stat().st_size == size
    assert zoo.sha256(path) == digest
    assert path.read_bytes()[4:8] == b"TFL3"


def test_unknown_model_lists_the_tflite_ones_too():
    with pytest.raises(zoo.ZooError, match="selfie_segmentation"):
        zoo.model_path("no_such_model")


def test_missing_tflite_model_says_how_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBILE_ENGINE_HOME", str(tmp_path))
    with pytest.raises(zoo.ZooError, match="face_detection_short_range.tflite is missing.*zoo "
                                           "fetch"):
        zoo.model_path("face_detection_short_range")
