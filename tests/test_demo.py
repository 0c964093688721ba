"""demo_style_transfer: headless runs on generated clips, key handling from a scripted event source,
the no-camera and camera-lost paths, the capture thread, conversions, plan cache, stats and HUD.

The inference step is injected (``Env.make_stylizer``): onnxruntime on the real multistyle26 as an
independent oracle, or a small numpy function; one test runs the real engine end to end.
"""
import json
import time

import cv2
import numpy as np
import pytest

from demo_style_transfer import app, styles
from demo_style_transfer.app import Env, main
from demo_style_transfer.hud import HudInfo, HudRenderer
from demo_style_transfer.keys import Action, ScriptedKeys, handle_key, initial_state
from demo_style_transfer.pipeline import FrameConverter, PlanCache, Stats, Result
from demo_style_transfer.sources import (CameraSource, CaptureThread, PacedSource, SourceError,
                                         SourceLost, SyntheticCamera, pattern_image)

H, W = 64, 96
SIZE = f"{H}x{W}"
STATS_FIELDS = ("fps", "latency_ms", "inference_ms", "frames", "dropped", "size", "precision",
                "style")


# --- stand-ins and helpers -------------------------------------------------------------------
class NumpyStylizer:
    """A cheap, weight-dependent stand-in: channel 0 inverted, channel 1 pulled towards the mean
    style index / 25, channel 2 squared. Records the weights of every call."""
    precision, threads, description = "fp32", 1, "numpy stand-in"

    def __init__(self):
        self.calls = []

    def run(self, x, w):
        self.calls.append(w.copy())
        return reference_numpy_style(x, w)


def reference_numpy_style(x, w):
    s = np.float32(np.dot(w, np.arange(26, dtype=np.float32)) / 25)
    return np.stack([1 - x[0, 0], 0.5 * x[0, 1] + 0.5 * s, x[0, 2] ** 2])[None].astype(np.float32)


class OrtStylizer:
    precision, threads, description = "fp32", 2, "onnxruntime oracle"

    def __init__(self, ort, model):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def run(self, x, w):
        return self.sess.run(None, {"image": x, "style_weights": w})[0]


@pytest.fixture(scope="module")
def ort_stylizer(multistyle26_path, ort):
    return OrtStylizer(ort, multistyle26_path)


def to_model_ref(bgr):
    """u8[H, W, 3] BGR -> f32[1, 3, H, W] RGB 0..1, written independently of FrameConverter."""
    return (bgr[:, :, ::-1].astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()


def to_bgr_ref(y):
    return np.clip(np.rint(y[0].transpose(1, 2, 0)[:, :, ::-1] * 255), 0, 255).astype(np.uint8)


def clip_frames(n, h, w):
    """n moving, textured BGR frames (a photo-like test pattern rolled a little each frame)."""
    base = pattern_image(h, w)
    return [np.roll(base, 3 * k, axis=1) for k in range(n)]


def write_clip(path, frames, fps=30):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def stand_in_effect_model(kind, cfg, log):
    """Instant effect models (not the engine; tests/test_demo_effects.py runs the real ones): a
    segmenter that finds a person in the middle half of the frame, a face detector that finds
    nothing."""
    from demo_style_transfer import effects, faces
    if kind == "segmenter":
        mask = np.zeros((1, 256, 256, 1), np.float32)
        mask[0, 64:192, 64:192] = 1
        return effects.Segmenter(lambda x: [mask], (256, 256))
    none = [np.zeros((1, 896, 16), np.float32), np.full((1, 896, 1), -10, np.float32)]
    return faces.FaceDetector(lambda x: none, cfg.size)


def headless_env(stylizer, **kw):
    log, err = [], []
    kw.setdefault("make_effect_model", stand_in_effect_model)
    env = Env(make_stylizer=lambda cfg, log_fn, progress=None: stylizer, open_window=lambda size=None: (None, "test"),
              log=log.append, err=err.append, **kw)
    return env, log, err


class FakeCamera:
    """A live source that delivers ``good`` frames, then fails (``mode``: 'raise' or 'none')."""
    live, can_end, fps = True, False, 30.0

    def __init__(self, good=3, mode="raise", h=H, w=W, delay=0.005):
        self.name, self.good, self.mode, self.delay = "camera 0", good, mode, delay
        self.frames = clip_frames(good, h, w)
        self.closed = False

    def read(self):
        time.sleep(self.delay)
        if self.frames:
            return self.frames.pop(0)
        if self.mode == "raise":
            raise RuntimeError("USB device disconnected")
        return None

    def close(self):
        self.closed = True


def no_camera(index):
    raise SourceError(f"camera {index} could not be opened (test: no camera)")


# --- headless runs on a generated clip -------------------------------------------------------
def test_headless_clip_is_stylized_frame_by_frame(tmp_path, ort_stylizer):
    inputs = clip_frames(8, H, W)
    clip = write_clip(tmp_path / "clip.mp4", inputs)
    decoded_inputs = read_video(clip)   # what the demo sees (mp4 is lossy)
    seen = []
    env, log, err = headless_env(ort_stylizer,
                                 on_frame=lambda f, r: seen.append((f.index, f.image.copy(),
                                                                    r.stylized.copy())))
    out, stats_path = tmp_path / "out.mp4", tmp_path / "stats.json"
    code = main(["--input", str(clip), "--headless", "--frames", "6", "--size", SIZE, "--style", "7",
                 "--output", str(out), "--stats", str(stats_path), "--threads", "2"], env)
    assert code == 0, err
    written = read_video(out)
    assert len(written) == 6 and written[0].shape == (H, W, 3)
    stats = json.loads(stats_path.read_text())
    for key in STATS_FIELDS:
        assert key in stats, key
    assert stats["frames"] == 6 and stats["dropped"] == 0 and stats["size"] == [H, W]
    assert stats["style"] == "style 7" and stats["precision"] == "fp32"
    assert stats["fps"] > 0 and 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p90"]
    assert stats["inference_ms"]["p50"] > 0
    w7 = np.zeros(26, np.float32)
    w7[7] = 1
    assert [i for i, _, _ in seen] == list(range(6))   # a file is read in lock step: no drops
    for i, image, stylized in seen:
        np.testing.assert_array_equal(image, decoded_inputs[i])
        expected = to_bgr_ref(ort_stylizer.run(to_model_ref(image), w7))
        assert np.abs(stylized.astype(int) - expected).max() <= 1
        assert np.abs(stylized.astype(int) - image).mean() > 20       # really stylized
        assert np.abs(written[i].astype(int) - stylized).mean() < 8    # mp4 keeps it (lossy)


def test_headless_whole_clip_and_blend(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", clip_frames(5, 72, 128))  # another aspect: cropped
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer)
    stats_path = tmp_path / "s.json"
    code = main(["--input", str(clip), "--headless", "--size", SIZE, "--blend", "3:1,19:3",
                 "--output", str(tmp_path / "o.avi"), "--stats", str(stats_path)], env)
    assert code == 0, err
    assert len(read_video(tmp_path / "o.avi")) == 5   # no --frames: the whole clip
    stats = json.loads(stats_path.read_text())
    assert stats["style"] == "blend 3:0.25 + 19:0.75" and stats["stopped"] == "end of input"
    expected = np.zeros(26, np.float32)
    expected[[3, 19]] = [0.25, 0.75]
    for w in stylizer.calls:
        np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_picture_input(tmp_path):
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), pattern_image(100, 150))
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer)
    code = main(["--input", str(pic), "--headless", "--size", SIZE, "--frames", "2",
                 "--output", str(tmp_path / "o.mp4")], env)
    assert code == 0, err
    assert len(read_video(tmp_path / "o.mp4")) == 2


def test_auto_without_display_is_a_short_headless_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "HEADLESS_FRAMES", 4)
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    env.open_window = lambda size=None: (None, "no display ($DISPLAY is not set)")
    assert main(["--auto", "--size", SIZE], env) == 0, err
    assert len(read_video(tmp_path / "out.mp4")) == 4
    text = "\n".join(log)
    assert "running headless" in text and "fps end to end" in text


# --- sources: no camera, camera lost ---------------------------------------------------------
def test_no_camera_falls_back_to_synthetic_with_a_note(tmp_path):
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    stats_path = tmp_path / "s.json"
    assert main(["--headless", "--frames", "3", "--size", SIZE, "--stats", str(stats_path)], env) == 0
    assert any("could not be opened" in m and "synthetic camera" in m for m in log), log
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 3 and stats["source"].startswith("synthetic camera")


def test_camera_source_reports_a_missing_camera():
    class Closed:
        released = False

        def isOpened(self):
            return False

        def release(self):
            Closed.released = True

    with pytest.raises(SourceError, match="camera 5 could not be opened"):
        CameraSource(5, capture_factory=lambda i: Closed())
    assert Closed.released


def test_explicit_camera_missing_is_a_clean_error(capsys):
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    assert main(["--camera", "1", "--headless", "--size", SIZE], env) == 3
    assert "camera 1 could not be opened" in err[0] and "--fallback-synthetic" in err[0]


@pytest.mark.parametrize("mode", ["raise", "none"])
def test_camera_lost_mid_run_exits_cleanly(tmp_path, mode, capsys):
    camera = FakeCamera(good=3, mode=mode)
    env, log, err = headless_env(NumpyStylizer(), open_camera=lambda i: camera)
    stats_path = tmp_path / "s.json"
    code = main(["--headless", "--frames", "50", "--size", SIZE, "--stats", str(stats_path),
                 "--output", str(tmp_path / "o.mp4")], env)
    assert code == 3
    message = "\n".join(err)
    expected = "USB device disconnected" if mode == "raise" else "stopped delivering frames"
    assert expected in message and "camera 0" in message and "Traceback" not in message
    assert "Traceback" not in capsys.readouterr().err
    stats = json.loads(stats_path.read_text())   # what was done is still reported and written
    assert 1 <= stats["frames"] <= 3 and stats["exit_code"] == 3
    assert len(read_video(tmp_path / "o.mp4")) == stats["frames"]
    assert camera.closed


def test_camera_lost_with_fallback_goes_on(tmp_path):
    env, log, err = headless_env(NumpyStylizer(), open_camera=lambda i: FakeCamera(good=2))
    stats_path = tmp_path / "s.json"
    assert main(["--headless", "--frames", "5", "--size", SIZE, "--fallback-synthetic",
                 "--stats", str(stats_path)], env) == 0, err
    assert any("USB device disconnected" in m and "synthetic camera" in m for m in log), log
    assert json.loads(stats_path.read_text())["frames"] == 5


def test_missing_input_file_is_a_clean_error(tmp_path):
    env, log, err = headless_env(NumpyStylizer())
    assert main(["--input", str(tmp_path / "nope.mp4"), "--headless"], env) == 3
    assert "no such file" in err[0]


# --- capture thread --------------------------------------------------------------------------
class CountingSource:
    name, fps = "counter", 100.0

    def __init__(self, n, live, delay=0.0):
        self.live, self.can_end, self.n, self.k, self.delay = live, True, n, 0, delay

    def read(self):
        if self.k >= self.n:
            return None
        time.sleep(self.delay)
        self.k += 1
        return np.full((2, 2, 3), self.k - 1, np.uint8)

    def close(self):
        pass


def test_capture_keeps_only_the_newest_frame():
    cap = CaptureThread(CountingSource(40, live=True, delay=0.002)).start()
    first = cap.get()
    time.sleep(0.05)            # a slow consumer: the source moves on
    second = cap.get()
    assert second.index > first.index + 1, "a live source must skip, not queue"
    time.sleep(0.3)
    rest = []
    while (f := cap.get()) is not None:
        rest.append(f.index)
    cap.stop()
    assert rest[-1] == 39 if rest else second.index == 39
    assert cap.dropped == 40 - 2 - len(rest)
    assert int(second.image[0, 0, 0]) == second.index


def test_capture_lock_step_for_files():
    source = CountingSource(10, live=False)
    cap = CaptureThread(source).start()
    got = []
    while (f := cap.get()) is not None:
        got.append(f.index)
        time.sleep(0.002)
        assert source.k == f.index + 1, "a file is read on request, not ahead"
    cap.stop()
    assert got == list(range(10)) and cap.dropped == 0


def test_capture_reports_a_lost_source_after_its_last_frame():
    cap = CaptureThread(FakeCamera(good=1, mode="raise", delay=0)).start()
    assert cap.get() is not None
    with pytest.raises(SourceLost, match="USB device disconnected"):
        cap.get()
    cap.stop()


def test_synthetic_camera_moves_and_paces():
    t = [0.0]
    sleeps = []
    cam = SyntheticCamera((H, W), None, fps=10, clock=lambda: t[0], sleep=sleeps.append)
    a, b = cam.read(), cam.read()
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 0.5, "consecutive frames should differ"
    assert sleeps == [pytest.approx(0.1)]


def test_paced_source_plays_a_file_in_real_time():
    t = [0.0]
    sleeps = []

    def sleep(dt):
        sleeps.append(dt)
        t[0] += dt

    paced = PacedSource(CountingSource(3, live=False), clock=lambda: t[0], sleep=sleep)
    assert paced.live and paced.can_end
    frames = [paced.read() for _ in range(4)]
    assert frames[-1] is None and [int(f[0, 0, 0]) for f in frames[:3]] == [0, 1, 2]
    assert sleeps == [pytest.approx(0.01)] * 3   # 100 fps


# --- keys ------------------------------------------------------------------------------------
def press(state, keys, t0=0.0, dt=2.0):
    actions = []
    for i, k in enumerate(keys):
        state, acts = handle_key(state, ord(k) if isinstance(k, str) else k, t0 + i * dt)
        actions += acts
    return state, actions


KEY_CASES = [  # (keys, expected style, expected blend, expected actions)
    ("n", 1, None, []),
    ("nnp", 1, None, []),
    ("p", 25, None, []),
    ("7", 7, None, []),
    ("n" * 26, 0, None, []),
    ("3n", 4, None, []),
    ("5b", 5, ((0, 0.5), (5, 0.5)), []),
    ("5bb", 5, None, []),
    ("b", 0, ((0, 0.5), (1, 0.5)), []),
    ("s", 0, None, [Action.SCREENSHOT]),
    ("rr", 0, None, [Action.START_RECORDING, Action.STOP_RECORDING]),
    ("q", 0, None, [Action.QUIT]),
    ("x", 0, None, []),
]


@pytest.mark.parametrize("keys,style,blend,actions", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_keys(keys, style, blend, actions):
    state, acts = press(initial_state(), keys)
    assert state.style == style and state.blend == blend and acts == actions
    assert state.quit == (Action.QUIT in actions)


def test_two_digits_pick_styles_above_9_only_when_quick():
    s, _ = handle_key(initial_state(), ord("1"), 0.0)
    s, _ = handle_key(s, ord("9"), 0.5)
    assert s.style == 19
    s, _ = handle_key(initial_state(), ord("1"), 0.0)
    s, _ = handle_key(s, ord("9"), 1.5)
    assert s.style == 9
    s, _ = handle_key(initial_state(), ord("2"), 0.0)
    s, _ = handle_key(s, ord("7"), 0.1)   # 27 is not a style: 7
    assert s.style == 7


def test_blend_from_command_line_comes_back_with_b():
    s = initial_state(blend={3: 0.5, 19: 0.5})
    assert s.style_label() == "blend 3:0.50 + 19:0.50"
    s, _ = press(s, "bb")
    assert s.blend == ((3, 0.5), (19, 0.5))
    s, _ = press(s, "n")
    assert s.blend is None and s.style == 4


def test_int8_toggle():
    s, acts = handle_key(initial_state(int8_note="int8 unavailable (see the console)"),
                         ord("f"), 10.0)
    assert s.precision == "fp32" and acts == ()
    assert "int8 unavailable" in s.note_at(11.0) and s.note_at(14.0) == ""
    s, acts = handle_key(initial_state(int8_available=True), ord("f"), 0.0)
    assert s.precision == "int8" and acts == (Action.RELOAD,)
    s, acts = handle_key(s, ord("f"), 1.0)
    assert s.precision == "fp32" and acts == (Action.RELOAD,)


def test_style_keys_are_off_with_a_style_image():
    s0 = initial_state(style_image="image starry.jpg")
    s, acts = press(s0, "n7bp")
    assert (s.style, s.blend, acts) == (0, None, [])
    assert s.style_label() == "image starry.jpg" and "--style-image" in s.note_at(6.5)
    assert press(s0, "q")[0].quit


class PrecisionStylizer(NumpyStylizer):
    """A stand-in per precision: int8 rounds the numpy style to 1/16 steps, so frames show which
    one ran; ``int8_problem`` makes int8 fall back to fp32 as the engine's loader does."""

    def __init__(self, precision, int8_problem=""):
        super().__init__()
        self.precision, self.int8_problem = precision, int8_problem

    def run(self, x, w):
        y = super().run(x, w)
        return np.round(y * 16) / 16 if self.precision == "int8" else y


def test_f_key_switches_precision_live(tmp_path):
    """int8 at start, 'f' after frame 2 -> fp32, 'f' after frame 4 -> int8 again (the loaded
    stylizer is kept, not made again); HUD info, stats and frames follow the switches."""
    made, seen = [], []

    def make_stylizer(cfg, log, progress=None):
        made.append(cfg.precision)
        return PrecisionStylizer(cfg.precision)

    env, log, err = headless_env(None, keys=ScriptedKeys({2: "f", 4: "f"}),
                                 on_frame=lambda f, r: seen.append((r.original.copy(),
                                                                    r.stylized.copy())))
    env.make_stylizer = make_stylizer
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), pattern_image(H, W))
    stats_path = tmp_path / "s.json"
    assert main(["--input", str(pic), "--headless", "--frames", "6", "--size", SIZE,
                 "--stats", str(stats_path)], env) == 0, err
    assert made == ["int8", "fp32"]
    w0 = np.zeros(26, np.float32)
    w0[0] = 1
    ref = reference_numpy_style(to_model_ref(seen[0][0]), w0)
    expected = {"fp32": to_bgr_ref(ref), "int8": to_bgr_ref(np.round(ref * 16) / 16)}
    other = {"fp32": "int8", "int8": "fp32"}
    for (_, stylized), precision in zip(seen, ["int8"] * 2 + ["fp32"] * 2 + ["int8"] * 2):
        diff = {p: np.abs(stylized.astype(int) - e).max() for p, e in expected.items()}
        assert diff[precision] <= 1 < diff[other[precision]], (precision, diff)  # 1: rounding
    stats = json.loads(stats_path.read_text())
    assert stats["precision"] == "int8" and stats["frames_by_precision"] == {"int8": 4, "fp32": 2}
    assert any("now running fp32" in m for m in log)


def test_f_key_with_a_window_loads_the_plan_in_the_background(tmp_path):
    """With a window the loop goes on with the running plan while the other one loads (here the
    loader waits until frame 4 is shown), then swaps it in."""
    import threading
    release = threading.Event()
    made = []

    def make_stylizer(cfg, log, progress=None):
        made.append(cfg.precision)
        if cfg.precision == "int8":
            assert release.wait(10), "the loop waited for the loader"
        return PrecisionStylizer(cfg.precision)

    class FakeWindow:
        def __init__(self):
            self.shown = []

        def show(self, image):
            self.shown.append(image.copy())

        def poll(self, frame_number, wait_ms=1):
            if frame_number == 1:
                return [ord("f")]
            if frame_number == 4:
                release.set()
                time.sleep(0.1)          # the loader returns; the next frame swaps it in
            return [ord("q")] if frame_number == 8 else []

        def close(self):
            pass

    window = FakeWindow()
    seen = []
    env, log, err = headless_env(None, on_frame=lambda f, r: seen.append(r.stylized.copy()))
    env.make_stylizer, env.open_window = make_stylizer, lambda size=None: (window, "")
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), pattern_image(H, W))
    stats_path = tmp_path / "s.json"
    assert main(["--input", str(pic), "--frames", "20", "--size", SIZE, "--fp32",
                 "--stats", str(stats_path)], env) == 0, err
    assert made == ["fp32", "int8"]
    stats = json.loads(stats_path.read_text())
    assert stats["frames_by_precision"] == {"fp32": 4, "int8": 4}, stats
    assert (seen[4] != seen[3]).any()        # int8's rounding shows from frame 5 on
    assert len(window.shown) == 8 and any("now running int8" in m for m in log)


def test_f_key_when_int8_falls_back_keeps_fp32(tmp_path):
    """Started with --fp32; 'f' asks for int8, the loader falls back: fp32 goes on, with a note,
    and a second 'f' does not try again."""
    made = []

    def make_stylizer(cfg, log, progress=None):
        made.append(cfg.precision)
        return PrecisionStylizer("fp32", "" if cfg.precision == "fp32" else "no photos")

    env, log, err = headless_env(None, keys=ScriptedKeys({1: "f", 2: "f"}))
    env.make_stylizer = make_stylizer
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), pattern_image(H, W))
    stats_path = tmp_path / "s.json"
    assert main(["--input", str(pic), "--headless", "--frames", "3", "--size", SIZE, "--fp32",
                 "--stats", str(stats_path)], env) == 0, err
    assert made == ["fp32", "int8"]
    assert json.loads(stats_path.read_text())["frames_by_precision"] == {"fp32": 3}


def test_scripted_keys_drive_the_app(tmp_path):
    stylizer = NumpyStylizer()
    keys = ScriptedKeys({1: "r", 2: "nf", 3: "b", 4: "s", 5: "r", 6: "q"})
    env, log, err = headless_env(stylizer, keys=keys)
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), pattern_image(H, W))
    code = main(["--input", str(pic), "--headless", "--frames", "20", "--size", SIZE,
                 "--save-dir", str(tmp_path / "shots"), "--stats", str(tmp_path / "s.json")], env)
    assert code == 0, err
    frames = stylizer.calls[2:]   # after the two warm-up runs
    assert len(frames) == 6, "q after frame 6 ends the run"
    assert [int(np.argmax(w)) for w in frames[:3]] == [0, 0, 1]   # 'n' after frame 2
    blend = np.zeros(26, np.float32)
    blend[[0, 1]] = 0.5
    np.testing.assert_allclose(frames[3], blend)                  # 'b' after frame 3
    shots = list((tmp_path / "shots").glob("screenshot-*.png"))
    records = list((tmp_path / "shots").glob("record-*.mp4"))
    assert len(shots) == 1 and cv2.imread(str(shots[0])).shape == (H, 2 * W, 3)
    assert len(records) == 1 and len(read_video(records[0])) == 4   # frames 2..5
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["stopped"] == "quit" and stats["frames"] == 6


# --- command line ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv,code,message", [
    (["--style", "26"], 2, "style index must be 0 to 25"),
    (["--style", "abc"], 2, "give a style index"),
    (["--blend", "3:x"], 2, "INDEX:WEIGHT"),
    (["--blend", "3:0"], 2, "positive weight"),
    (["--size", "480by640"], 2, "use HxW"),
    (["--size", "16x16"], 2, "32 to 4096"),
    (["--frames", "0"], 2, "at least 1"),
])
def test_bad_options_are_clear_errors(argv, code, message):
    env, log, err = headless_env(NumpyStylizer())
    assert main(argv + ["--headless"], env) == code
    assert message in err[0]


def test_style_image_options(tmp_path):
    env, log, err = headless_env(NumpyStylizer())
    assert main(["--style-image", str(tmp_path / "nope.jpg"), "--headless"], env) == 2
    assert "no such file" in err[0]
    pic = tmp_path / "starry.jpg"
    cv2.imwrite(str(pic), pattern_image(40, 40))
    assert main(["--style-image", str(pic), "--blend", "3:1,4:1", "--headless"], env) == 2
    assert "--blend" in err[1]


@pytest.mark.parametrize("text,expected", [
    ("7", {7: 1.0}), ("3:0.5,19:0.5", {3: 0.5, 19: 0.5}), ("3:1, 3:1", {3: 2.0}),
    ("0:2,25", {0: 2.0, 25: 1.0}),
])
def test_parse_blend(text, expected):
    mix = styles.parse_blend(text)
    assert mix == expected
    w = styles.weights(mix)
    assert w.dtype == np.float32 and w.shape == (26,) and abs(float(w.sum()) - 1) < 1e-6


def test_style_names():
    assert len(styles.STYLE_NAMES) == 26 and styles.label({4: 1.0}) == "style 4"


# --- conversions, stats, cache, HUD ----------------------------------------------------------
@pytest.mark.parametrize("h,w", [(32, 32), (33, 47), (H, W), (65, 1)])
def test_frame_conversions_match_numpy(h, w):
    rng = np.random.default_rng(h * 100 + w)
    conv = FrameConverter((h, w))
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert conv.fit(frame) is frame
    np.testing.assert_allclose(conv.to_model(frame), to_model_ref(frame), rtol=1e-6)
    y = rng.uniform(-0.2, 1.2, (1, 3, h, w)).astype(np.float32)
    np.testing.assert_array_equal(conv.to_bgr(y), to_bgr_ref(y))
    x_id = id(conv.to_model(frame))
    assert id(conv.to_model(frame)) == x_id, "the input buffer is reused"


def test_fit_crops_to_aspect_then_resizes():
    frame = np.zeros((72, 128, 3), np.uint8)
    frame[:, :10] = 255          # the left and right strips fall outside a 64x96 (3:2) view
    frame[:, -10:] = 255
    frame[30:40, 60:68] = 100    # the centre stays
    fitted = FrameConverter((H, W)).fit(frame)
    assert fitted.shape == (H, W, 3)
    assert fitted[:, :3].max() == 0 and fitted[:, -3:].max() == 0
    assert fitted[H // 2, W // 2, 0] > 50


def test_stats_summary():
    stats = Stats()
    lat = [10, 20, 30, 40, 100]
    for i, l in enumerate(lat):
        stats.add(float(i), i + l / 1000, Result(None, None, 1.0, float(l - 5), 2.0))
    s = stats.summary(dropped=3)
    assert s["frames"] == 5 and s["dropped"] == 3
    assert s["latency_ms"]["p50"] == pytest.approx(30) and s["latency_ms"]["p90"] == pytest.approx(76)
    assert s["inference_ms"]["p50"] == pytest.approx(25)
    assert s["fps"] == pytest.approx(5 / 4.1, rel=1e-3)


class FakePlan:
    def __init__(self, tag):
        self.tag = tag

    def save(self, path):
        path.write_text(self.tag)


def test_plan_cache_compiles_once_per_key(tmp_path):
    compiled = []

    def compile_fn(model, size, precision):
        compiled.append((size, precision))
        return FakePlan(f"{size}-{precision}")

    def load_fn(path):
        text = path.read_text()
        if not text:
            raise ValueError("empty plan file")
        return FakePlan(text)

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model-a")
    cache = PlanCache(tmp_path / "plans", compile_fn, load_fn, version="9")
    first = cache.get(model, (H, W), "fp32", log=lambda m: None)
    again = cache.get(model, (H, W), "fp32", log=lambda m: None)
    assert (first.status, again.status) == ("compiled", "cached") and again.plan.tag == first.plan.tag
    cache.get(model, (32, 32), "fp32", log=lambda m: None)
    model.write_bytes(b"model-b")               # a changed model is a new key
    cache.get(model, (H, W), "fp32", log=lambda m: None)
    assert len(compiled) == 3
    damaged = cache.path_for(model, (H, W), "fp32")
    damaged.write_text("")                      # a damaged file is compiled again
    assert cache.get(model, (H, W), "fp32", log=lambda m: None).status == "compiled"
    assert cache.get(model, (H, W), "fp32", log=lambda m: None, force=True).status == "compiled"
    assert not list((tmp_path / "plans").glob(".*tmp")), "no temporary files left"


def test_plan_cache_default_dir_follows_mobile_engine_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILE_ENGINE_HOME", str(tmp_path))
    assert PlanCache().root == tmp_path / "plans"


def test_hud_side_by_side():
    rng = np.random.default_rng(0)
    left = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    right = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    info = HudInfo(12.3, 68.4, "style 7", "fp32", 2, note="int8 unavailable (see the console)",
                   recording=True)
    view = HudRenderer((120, 160)).compose(left, right, info)
    assert view.shape == (120, 320, 3)
    np.testing.assert_array_equal(view[80:, :160], left[80:])      # below the text: untouched
    np.testing.assert_array_equal(view[80:, 160:], right[80:])
    assert (view[:40, 160:300] != right[:40, :140]).any()          # the HUD text is drawn
    assert "12.3 fps" in info.lines()[0] and "2 threads" in info.lines()[2]


def test_open_window_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    window, why = app.open_window()
    assert window is None and "DISPLAY" in why


def test_open_window_with_headless_opencv(monkeypatch):
    """A headless OpenCV raises cv2.error from namedWindow (simulated where OpenCV has a GUI)."""
    from demo_style_transfer import display
    if "GUI:                           NONE" not in cv2.getBuildInformation():
        def no_gui(*a):
            raise cv2.error("The function is not implemented (test: a headless OpenCV)")
        monkeypatch.setattr(display.cv2, "namedWindow", no_gui)
        monkeypatch.setattr(display, "opencv_conflict", lambda: "")
    monkeypatch.setenv("DISPLAY", ":0")
    window, why = app.open_window()
    assert window is None and "no GUI support" in why and "pip install opencv-python" in why


# --- the real engine -------------------------------------------------------------------------
def test_real_engine_with_plan_cache(tmp_path, multistyle26_path, ort_stylizer, monkeypatch):
    """The demo's default path: mobile_engine compiles once into the cache, the next start loads it;
    frames match onnxruntime."""
    from tests.tolerances import MODEL_ATOL
    seen = []
    log = []
    env = Env(open_window=lambda size=None: (None, "test"), open_camera=no_camera, log=log.append,
              on_frame=lambda f, r: seen.append((f.image.copy(), r.stylized.copy())))
    argv = ["--headless", "--frames", "2", "--size", SIZE, "--threads", "2", "--style", "7", "--fp32",
            "--plan-cache", str(tmp_path / "plans"), "--stats", str(tmp_path / "s.json")]
    assert main(argv, env) == 0
    assert any("compiled plan" in m for m in log), log
    log.clear()
    assert main(argv, env) == 0
    assert any("loaded cached plan" in m for m in log), log
    assert len(list((tmp_path / "plans").glob("*.mplan"))) == 1
    w7 = np.zeros(26, np.float32)
    w7[7] = 1
    tol = int(np.ceil(MODEL_ATOL * 255)) + 1
    for image, stylized in seen:
        expected = to_bgr_ref(ort_stylizer.run(to_model_ref(image), w7))
        assert np.abs(stylized.astype(int) - expected).max() <= tol
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["engine"].startswith("mobile_engine") and stats["threads"] == 2


def test_seconds_limit_ends_a_live_run(tmp_path):
    env, log, err = headless_env(NumpyStylizer(), open_camera=no_camera)
    stats_path = tmp_path / "s.json"
    t0 = time.perf_counter()
    assert main(["--headless", "--seconds", "0.3", "--size", SIZE, "--stats", str(stats_path)],
                env) == 0
    assert time.perf_counter() - t0 < 5
    stats = json.loads(stats_path.read_text())
    assert stats["stopped"] == "0.3 s" and stats["frames"] >= 1


@pytest.mark.parametrize("option", ["--output", "--stats"])
def test_unwritable_output_fails_before_the_run(tmp_path, option):
    blocker = tmp_path / "file"
    blocker.write_text("")
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer, open_camera=no_camera)
    assert main(["--headless", "--frames", "1", "--size", SIZE, option, str(blocker / "x.mp4")], env) == 1
    assert "cannot write there" in err[0] and not stylizer.calls


def test_window_path_shows_the_side_by_side_view_until_q(tmp_path):
    class FakeWindow:
        def __init__(self):
            self.shown, self.closed = [], False

        def show(self, image):
            self.shown.append(image.copy())

        def poll(self, frame_number, wait_ms=1):
            return [ord("q")] if frame_number == 3 else []

        def close(self):
            self.closed = True

    window = FakeWindow()
    stylizer = NumpyStylizer()
    env, log, err = headless_env(stylizer, open_camera=no_camera)
    env.open_window = lambda size=None: (window, "")
    assert main(["--size", SIZE, "--stats", str(tmp_path / "s.json")], env) == 0, err
    assert len(window.shown) == 3 and window.shown[0].shape == (H, 2 * W, 3) and window.closed
    assert json.loads((tmp_path / "s.json").read_text())["stopped"] == "quit"


def test_a_plan_that_runs_to_nan_counts_as_not_made():
    from demo_style_transfer.pipeline import DemoError, _check_runs

    class Returns:
        def __init__(self, out):
            self.out = out

        def run(self, x, w):
            return self.out

    good = np.zeros((1, 3, H, W), np.float32)
    _check_runs(Returns(good), (H, W))
    bad = good.copy()
    bad[0, 1, 5, 7] = np.nan
    with pytest.raises(DemoError, match="non-finite"):
        _check_runs(Returns(bad), (H, W))
    with pytest.raises(DemoError, match="shape"):
        _check_runs(Returns(good[:, :, :32]), (H, W))
