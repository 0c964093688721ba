"""demo_style_transfer's first minutes: options checked before any compile, --output by extension,
the loading screen and kernel progress while the engine starts, 'q' during the start.

The window here is a stand-in; tests/test_demo_window.py drives the real one under Xvfb.
"""
import threading
import time

import cv2
import numpy as np
import pytest

from demo_style_transfer import display, startup
from demo_style_transfer.app import main
from demo_style_transfer.pipeline import DemoError, PlanCache, load_engine_stylizer
from demo_style_transfer.sources import pattern_image
from tests.test_demo import (H, SIZE, W, NumpyStylizer, headless_env, no_camera,
                             reference_numpy_style)


def test_threads_beyond_the_cpus_is_a_usage_error_before_any_compile(tmp_path):
    made = []
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    env.make_stylizer = lambda cfg, log_fn, progress=None: made.append(cfg) or NumpyStylizer()
    assert main(["--headless", "--threads", "64", "--size", SIZE], env) == 2
    assert "--threads 64" in err[0] and "between 1 and" in err[0] and not made


def test_bad_threads_never_leave_a_failure_marker(tmp_path):
    """Before: Session(threads=64) failed inside the int8 path, which remembered it as an engine
    failure, so every later normal run silently fell back to fp32."""
    tried = []
    cache = PlanCache(tmp_path / "plans", lambda *a: tried.append(a))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not used")
    with pytest.raises(DemoError, match="--threads 64"):
        load_engine_stylizer((H, W), "int8", 64, model, cache, lambda m: None)
    assert not tried and not list((tmp_path / "plans").glob("*"))


@pytest.mark.parametrize("ext,kind", [(".png", "image"), (".JPG", "image"), (".mp4", "video"),
                                      (".avi", "video"), (".npy", None), ("", None)])
def test_output_kind_by_extension(ext, kind):
    assert display.output_kind(f"out{ext}") == kind


def test_output_picture_is_a_picture(tmp_path):
    """Before: --output pic.png wrote an MPEG video under a .png name."""
    pic = tmp_path / "in.png"
    cv2.imwrite(str(pic), pattern_image(H, W))
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer)
    out = tmp_path / "sub" / "pic.png"
    assert main(["--input", str(pic), "--headless", "--size", SIZE, "--frames", "2",
                 "--output", str(out)], env) == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(out))
    assert image.shape == (H, W, 3)
    x = cv2.imread(str(pic))[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255
    w = np.zeros(26, np.float32)
    w[0] = 1
    expected = np.clip(np.rint(reference_numpy_style(x, w)[0].transpose(1, 2, 0)[:, :, ::-1] * 255), 0, 255)
    assert np.abs(image.astype(int) - expected).max() <= 1


def test_unknown_output_extension_is_refused_before_the_run(tmp_path):
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer, open_camera=no_camera)
    assert main(["--headless", "--size", SIZE, "--output", str(tmp_path / "x.gif")], env) == 2
    assert "unknown extension '.gif'" in err[0] and ".png" in err[0] and not stylizer.calls
    assert len(err) == 1 and "\n" not in err[0]


def test_headless_run_without_output_says_nothing_was_written():
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    assert main(["--headless", "--frames", "2", "--size", SIZE], env) == 0, err
    assert "nothing was written" in log[-1] and "--output" in log[-1]


# --- progress while the engine starts ----------------------------------------------------------
class Lines:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_kernel_progress_names_kernels_and_what_is_left():
    log = []
    clock = iter(np.arange(0, 100, 2.0)).__next__     # 2 s per step: every new kernel is slow
    kernels = ["a_conv", "a_conv", "b_norm", "a_conv", "c_add"]
    p = startup.KernelProgress(log.append, clock=clock, stream=None)
    p.stream = type("NotTty", (), {"isatty": lambda self: False})()
    p.tty = False
    for done in range(len(kernels) + 1):
        p(done, kernels)
    assert log[0] == "  kernels: 0/3 ready, next a_conv (#1, step 1/5)"
    assert any("next b_norm" in m and "1/3 ready" in m for m in log)
    assert any("next c_add" in m and "2/3 ready" in m for m in log)
    assert log[-1].startswith("  kernels ready: 3 kernels, 5 steps") and p.fraction == 1.0
    assert not any("\r" in m for m in log)          # logs get lines, never in-place redraws


def test_kernel_progress_redraws_in_place_on_a_terminal_and_stops_when_cancelled():
    stream = Lines()
    log = []
    p = startup.KernelProgress(log.append, stream=stream)
    p(0, ["a", "b"])
    p(1, ["a", "b"])
    assert "\r" in stream.text and "kernels 1/2: b" in stream.text and not log
    p.cancel.set()
    with pytest.raises(startup.Cancelled):
        p(2, ["a", "b"])


class FakeWindow:
    def __init__(self, quit_after=None):
        self.shown, self.polls, self.quit_after = [], 0, quit_after

    def show(self, image):
        self.shown.append(image.copy())

    def poll(self, frame_number, wait_ms=1):
        self.polls += 1
        time.sleep(wait_ms / 1e3)
        return [ord("q")] if self.quit_after and self.polls >= self.quit_after else []

    def close(self):
        pass


def test_start_shows_progress_in_the_window_and_q_quits_at_once():
    """The engine start blocks (a kernel compiling): the window keeps drawing the log and the
    progress bar, and 'q' returns at once without waiting for it."""
    release = threading.Event()

    def make(log, progress):
        log("compiling multistyle26 ...")
        progress(0, ["k1", "k2"])
        progress(1, ["k1", "k2"])
        release.wait(20)
        progress(2, ["k1", "k2"])     # the user quit meanwhile: Cancelled ends the thread
        return "never used"

    window = FakeWindow(quit_after=5)
    t0 = time.perf_counter()
    assert startup.start(make, window, lambda m: None, (2 * W, H)) is None
    assert time.perf_counter() - t0 < 5 and startup.pending()
    assert window.shown and window.shown[-1].shape == (H, 2 * W, 3)
    assert window.shown[-1].any()                   # text and a half-filled bar, not black
    bar_row = window.shown[-1][H - 10]
    assert (bar_row[:W] != 0).any()
    release.set()


def test_start_hands_back_errors_and_results():
    window = FakeWindow()
    assert startup.start(lambda log, p: 42, window, print, (2 * W, H)) == 42

    def fail(log, progress):
        raise DemoError("no model")
    with pytest.raises(DemoError, match="no model"):
        startup.start(fail, window, print, (2 * W, H))


def test_window_opens_at_the_view_size(monkeypatch):
    calls = []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(display.cv2, "namedWindow", lambda t, flags: calls.append(("named", flags)))
    monkeypatch.setattr(display.cv2, "resizeWindow", lambda t, w, h: calls.append(("size", w, h)))
    monkeypatch.setattr(display.cv2, "imshow", lambda t, img: calls.append(("show", img.shape)))
    monkeypatch.setattr(display.cv2, "waitKey", lambda ms: -1)
    window, why = display.open_window((1280, 480))
    assert window is not None, why
    flags = calls[0][1]
    # NOTE: WINDOW_NORMAL and WINDOW_KEEPRATIO are 0 bits: resizable means no AUTOSIZE bit,
    # aspect kept means no FREERATIO bit
    assert not flags & cv2.WINDOW_AUTOSIZE and not flags & cv2.WINDOW_FREERATIO
    assert ("size", 1280, 480) in calls and ("show", (480, 1280, 3)) in calls


def test_both_opencv_packages_installed_is_named(monkeypatch):
    from importlib import metadata
    versions = {"opencv-python": "4.10.0", "opencv-python-headless": "4.10.0"}

    def version(dist):
        if dist not in versions:
            raise metadata.PackageNotFoundError(dist)
        return versions[dist]
    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setenv("DISPLAY", ":99")

    def no_gui(*a):
        raise cv2.error("The function is not implemented (test)")
    monkeypatch.setattr(display.cv2, "namedWindow", no_gui)
    assert "pip uninstall -y opencv-python-headless" in display.opencv_conflict()
    window, why = display.open_window((320, 120))
    assert window is None and "share the cv2 folder" in why
    del versions["opencv-python-headless"]
    assert display.opencv_conflict() == ""


def test_pyproject_asks_for_the_gui_opencv_only():
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"opencv-python>=' in deps and "headless" not in deps
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "pip uninstall -q -y opencv-python-headless" in makefile


def test_a_session_error_is_not_remembered_but_a_compile_error_is(tmp_path, multistyle26_path,
                                                                 monkeypatch):
    """The int8 plan compiles but its Session cannot be made (as with a bad thread count before
    the up-front check): fp32 runs, no failure marker, and the next start tries int8 again.
    A compile error, on the contrary, is remembered."""
    import mobile_engine as me
    tried = []

    def compile_fn(model, size, precision):
        tried.append(precision)
        return me.compile(str(model), input_shapes={"image": (1, 3, *size)})

    real = me.Session
    calls = []

    def session(plan, threads=None, **kw):
        calls.append(threads)
        if len(calls) == 1:
            raise me.EngineError("threads=64: must be between 1 and 2 (test)")
        return real(plan, threads=threads, **kw)
    monkeypatch.setattr(me, "Session", session)
    cache = PlanCache(tmp_path / "plans", compile_fn)
    stylizer = load_engine_stylizer((H, W), "int8", 1, multistyle26_path, cache, lambda m: None)
    assert stylizer.precision == "fp32" and "threads=64" in stylizer.int8_problem
    failed = cache.failure_path(multistyle26_path, (H, W), "int8")
    assert not failed.exists()
    stylizer = load_engine_stylizer((H, W), "int8", 1, multistyle26_path, cache, lambda m: None)
    assert stylizer.precision == "int8" and tried == ["int8", "fp32"]    # int8 from the cache

    def broken(model, size, precision):
        raise me.EngineError("node 'conv7': no int8 kernel (test)")
    cache = PlanCache(tmp_path / "plans2", broken)
    stylizer = load_engine_stylizer((H, W), "int8", 1, multistyle26_path, PlanCache(
        tmp_path / "plans2", lambda m, s, p: broken(m, s, p) if p == "int8" else
        compile_fn(m, s, p)), lambda m: None)
    assert stylizer.int8_problem.startswith("the int8 plan could not be made (EngineError: node")
    assert cache.failure_path(multistyle26_path, (H, W), "int8").is_file()
