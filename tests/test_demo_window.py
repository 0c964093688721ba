"""The demo's real window, under Xvfb: it opens at the view's size, shows a stylized picture on the
right (not black, different from the original on the left), answers keys sent to the window
('n' changes the style, 'q' quits), keeps the picture's aspect when resized, and 'q' works while
the kernels still compile.

Needs ``xvfb-run``, ``xdotool`` and ``xwd`` (installed here with apt-get when missing and running
as root) and an OpenCV with GUI support (``opencv-python``, not ``-headless``); skipped with the
reason otherwise. tests/xvfb_driver.py runs under the X server and does the driving.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"xvfb-run": "xvfb", "xdotool": "xdotool", "xwd": "x11-apps"}
H, W = 240, 320


@pytest.fixture(scope="module")
def xvfb():
    """Installs the X tools with apt-get if they are missing (root only), else skips."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        if not sys.platform.startswith("linux") or os.geteuid() != 0 \
                or shutil.which("apt-get") is None:
            pytest.skip(f"{', '.join(missing)} missing and cannot be installed here (needs "
                        f"apt-get as root): `apt-get install {' '.join(missing)}`")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if done.returncode:
                pytest.skip(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}")
    probe = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.getBuildInformation())"],
                           capture_output=True, text=True, timeout=60)
    gui = [ln.split(":", 1)[1].strip() for ln in probe.stdout.splitlines()
           if ln.strip().startswith("GUI:")]
    if not gui or gui[0] == "NONE":
        pytest.skip("this OpenCV has no GUI (opencv-python-headless is installed; `make install` "
                    "replaces it with opencv-python)")
    return True


def drive(tmp_path, scenario, demo_args, env=None, timeout=900):
    out = tmp_path / scenario
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x900x24", sys.executable,
           str(ROOT / "tests" / "xvfb_driver.py"), str(out), scenario, "--", *demo_args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    log = (out / "demo.log").read_text() if (out / "demo.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\ndemo log:\n{log}"
    return json.loads((out / "result.json").read_text()), out, log


def picture(tmp_path) -> Path:
    from mobile_engine import zoo
    try:
        return zoo.image_path("chelsea.png")
    except zoo.ZooError:
        from demo_style_transfer.sources import pattern_image
        path = tmp_path / "pattern.png"
        cv2.imwrite(str(path), pattern_image(H, W))
        return path


def test_window_is_live_at_the_frame_size(xvfb, tmp_path):
    stats = tmp_path / "stats.json"
    result, out, log = drive(tmp_path, "live", [                  # as `make demo` runs it
        "--auto", "--input", str(picture(tmp_path)), "--size", f"{H}x{W}", "--fp32", "--style", "3",
        "--plan-cache", str(tmp_path / "plans"), "--stats", str(stats)])
    assert result["exit_code"] == 0, log
    assert tuple(result["first_geometry"]) == (2 * W, H), "opened at the side-by-side size"
    assert tuple(result["geometry"]) == (2 * W, H)
    live = np.load(out / "live.npy")
    assert live.shape == (H, 2 * W, 3)
    left, right = live[:, :W].astype(int), live[:, W:].astype(int)
    assert right.mean() > 20, "the stylized half is black"
    assert np.abs(right - left).mean() > 20, "the right half is not stylized"
    # the same picture stylized by the engine, as the window shows it (below the HUD's text)
    nxt = np.load(out / "next_style.npy")
    below_hud = slice(H // 2, H)
    assert np.abs(nxt[below_hud, :W].astype(int) - left[below_hud]).max() <= 2, \
        "the original half stays"
    assert np.abs(nxt[below_hud, W:].astype(int) - right[below_hud]).mean() > 5, \
        "'n' through the window changed the style"
    # resized to 1.5x the width and 2.5x the height: the picture keeps its aspect (bars above
    # and below, in the window's background colour)
    resized = np.load(out / "resized.npy")
    rw, rh = result["resized_geometry"]
    assert resized.shape == (rh, rw, 3) and (rw, rh) != (2 * W, H)
    background = resized[0, 0].astype(int)
    differs = (np.abs(resized.astype(int) - background).sum(axis=2) > 30)
    rows = np.where(differs.mean(axis=1) > 0.5)[0]
    cols = np.where(differs.mean(axis=0) > 0.5)[0]
    shown_h, shown_w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert shown_w == rw and abs(shown_w / shown_h - 2 * W / H) < 0.05 * (2 * W / H), \
        (shown_w, shown_h)
    summary = json.loads(stats.read_text())
    assert summary["stopped"] == "quit" and summary["style"] != "3"
    assert result["quit_seconds"] < 30


def test_q_quits_while_the_kernels_compile(xvfb, tmp_path):
    """A cold kernel cache: the window shows the loading screen at once and 'q' ends the demo
    within seconds, while a kernel is still compiling."""
    result, out, log = drive(tmp_path, "quit-early", [
        "--synthetic", "--size", f"{H}x{W}", "--fp32", "--plan-cache", str(tmp_path / "plans")],
        env={"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")})
    assert result["exit_code"] == 0, log
    assert tuple(result["first_geometry"]) == (2 * W, H)
    loading = np.load(out / "loading.npy")
    assert loading.shape == (H, 2 * W, 3) and loading.any(), "the loading screen shows text"
    assert result["quit_seconds"] < 15, log
    assert "kernels: 0/" in log and "kernels ready" not in log, "quit while kernels compiled"
    assert "quit while the engine was starting" in log
