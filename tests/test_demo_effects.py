"""demo_style_transfer's video effects on real photos with people (the zoo's astronaut and
cameraman): MediaPipe's face detection and selfie segmentation compiled by the engine from their
.tflite files, checked against LiteRT (``ai_edge_litert``'s Interpreter, XNNPACK) running the same
files; the SSD anchors and box decoding against hand-derived values and the face's known place;
each effect end to end headless on a clip generated from the astronaut photo; 'e' switching
effects live.
"""
import json

import cv2
import numpy as np
import pytest

from demo_style_transfer import app, effects, faces
from demo_style_transfer.app import main
from demo_style_transfer.frames import FrameConverter
from demo_style_transfer.hud import HudInfo
from demo_style_transfer.keys import Action, ScriptedKeys, handle_key, initial_state
from mobile_engine import zoo
from tests.test_demo import NumpyStylizer, headless_env, ort_stylizer, write_clip  # noqa: F401

H, W = 240, 320
SIZE = f"{H}x{W}"
# NOTE: the astronaut's face in astronaut.png (512 x 512), read off the picture by eye
ASTRONAUT_FACE = (190, 85, 265, 175)       # x0, y0, x1, y1: eyes to chin


def zoo_or_skip(fn, name):
    try:
        return fn(name)
    except zoo.ZooError as exc:
        pytest.skip(str(exc))


def litert_run(model_name):
    """``run(x) -> [outputs]`` of LiteRT's Interpreter on the zoo's .tflite (the oracle)."""
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    it = interpreter_mod.Interpreter(model_path=str(zoo_or_skip(zoo.model_path, model_name)),
                                     num_threads=2)
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    outs = [o["index"] for o in it.get_output_details()]

    def run(x):
        it.set_tensor(inp["index"], x)
        it.invoke()
        return [it.get_tensor(i).copy() for i in outs]
    return run


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plans")


@pytest.fixture(scope="module")
def engine_models(plan_dir):
    """The engine's face detector (for 480x640 frames) and segmenter, as the demo loads them."""
    from demo_style_transfer.pipeline import PlanCache
    cache = PlanCache(plan_dir)
    zoo_or_skip(zoo.model_path, effects.SEGMENTATION_MODEL)
    zoo_or_skip(zoo.model_path, faces.MODEL_NAME)
    return {kind: effects.load_effect_model(kind, (480, 640), 2, cache, lambda m: None)
            for kind in ("segmenter", "faces")}


def photo(name):
    image = cv2.imread(str(zoo_or_skip(zoo.image_path, name)), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def astronaut_frames(n, h=H, w=W):
    """n frames of a slow vertical pan over astronaut.png (a 384 x 512 window: the face stays
    in)."""
    image = photo("astronaut.png")
    out = []
    for k in range(n):
        y0 = round(64 * k / max(n - 1, 1))
        out.append(cv2.resize(image[y0:y0 + 384, :512], (w, h), interpolation=cv2.INTER_AREA))
    return out


def reference_mask(run, fitted):
    """LiteRT's person probability for a fitted frame, preprocessed here independently
    (stretch to 256 x 256, RGB, 0..1)."""
    small = cv2.resize(fitted, (256, 256), interpolation=cv2.INTER_LINEAR)
    x = (small[:, :, ::-1].astype(np.float32) / 255)[None]
    return run(np.ascontiguousarray(x))[0][0, :, :, 0]


# --- faces: anchors, decoding, suppression (hand-derived) ---------------------------------------
def test_ssd_anchors_are_mediapipes_short_range_layout():
    a = faces.ssd_anchors()
    assert a.shape == (896, 4) and np.all(a[:, 2:] == 1)      # fixed anchor size
    # stride 8: a 16 x 16 map, 2 anchors per cell; strides 16 (3 layers): 8 x 8, 6 per cell
    first = a[:512].reshape(16, 16, 2, 4)
    assert np.all(first[:, :, 0] == first[:, :, 1])
    np.testing.assert_allclose(first[3, 5, 0, :2], [(5 + 0.5) / 16, (3 + 0.5) / 16])
    rest = a[512:].reshape(8, 8, 6, 4)
    np.testing.assert_allclose(rest[7, 2, 4, :2], [(2 + 0.5) / 8, (7 + 0.5) / 8])


def test_decode_by_hand():
    anchors = np.array([[0.25, 0.5, 1, 1], [0.75, 0.75, 1, 1]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[0, :4] = [12.8, -6.4, 32, 64]          # centre +0.1, -0.05; size 0.25 x 0.5 (of 128)
    logits = np.array([2.0, -1.0], np.float32)  # sigmoid 0.881 passes 0.5, 0.269 does not
    boxes, scores = faces.decode(reg, logits, anchors)
    np.testing.assert_allclose(boxes, [[0.35 - 0.125, 0.45 - 0.25, 0.35 + 0.125, 0.45 + 0.25]],
                               atol=1e-6)
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2.0))], rtol=1e-6)
    big = faces.decode(reg, np.array([1e4, -1e4], np.float32), anchors)[1]   # clipped: no overflow
    np.testing.assert_allclose(big, [1.0])


def test_weighted_nms_merges_overlaps_and_keeps_the_rest():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    out, s = faces.weighted_nms(boxes, scores)
    np.testing.assert_allclose(s, [0.9, 0.7])
    np.testing.assert_allclose(out[0], (0.9 * boxes[1] + 0.6 * boxes[0]) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(out[1], boxes[2])


def test_letterbox_maps_boxes_back():
    lb = faces.Letterbox((480, 640))                 # 96 x 128 inside, 16 rows of bars above
    assert lb.inner == (96, 128) and lb.top == 16 and lb.left == 0
    x = lb.to_model(np.full((480, 640, 3), 255, np.uint8))
    assert x[0, :16].max() == -1 and x[0, 16:112].min() == 1 and x[0, 112:].max() == -1
    box = np.array([[0.5, 16 / 128, 1.0, 0.5]], np.float32)
    np.testing.assert_allclose(lb.to_frame(box), [[320, 0, 640, 240]], atol=1e-4)


# --- the engine against LiteRT on real photos ---------------------------------------------------
@pytest.mark.parametrize("name,size", [("astronaut.png", (480, 640)), ("astronaut.png", None),
                                       ("camera.png", (480, 640)), ("coffee.png", (480, 640))])
def test_face_boxes_match_litert(engine_models, name, size):
    """The faces LiteRT's run of the same model finds (decoded the same way), the engine finds:
    same count, boxes within 1 pixel, scores within 1e-3."""
    image = photo(name)
    frame = FrameConverter(size).fit(image).copy() if size else image
    ours = engine_models["faces"]
    if size is None:
        ours = faces.FaceDetector(ours._run, image.shape[:2])
    oracle = faces.FaceDetector(litert_run(faces.MODEL_NAME), frame.shape[:2])
    b_ref, s_ref = oracle.detect(frame)
    b, s = ours.detect(frame)
    assert len(b) == len(b_ref), (b, b_ref)
    np.testing.assert_allclose(b, b_ref, atol=1.0)
    np.testing.assert_allclose(s, s_ref, atol=1e-3)
    if name in ("astronaut.png", "camera.png"):
        assert len(b_ref) == 1, b_ref            # one person, one face
    if name == "coffee.png":
        assert len(b_ref) == 0
    if name == "astronaut.png" and size is None:   # the decoding puts the box on the face
        x0, y0, x1, y1 = b[0]
        fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
        assert x0 < (fx0 + fx1) / 2 < x1 and y0 < (fy0 + fy1) / 2 < y1, b[0]
        inter = max(0, min(x1, fx1) - max(x0, fx0)) * max(0, min(y1, fy1) - max(y0, fy0))
        assert inter / ((fx1 - fx0) * (fy1 - fy0)) > 0.8, b[0]


@pytest.mark.parametrize("name", ["astronaut.png", "camera.png"])
def test_person_mask_matches_litert(engine_models, name):
    frame = FrameConverter((480, 640)).fit(photo(name)).copy()
    ours = engine_models["segmenter"].mask(frame).copy()
    ref = reference_mask(litert_run(effects.SEGMENTATION_MODEL), frame)
    assert np.abs(ours - ref).max() <= 1e-3
    person = ref > 0.5
    assert 0.2 < person.mean() < 0.8          # a person, and a background


def test_mask_smoother_is_an_exponential_moving_average():
    sm = effects.MaskSmoother(0.25)
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    np.testing.assert_allclose(sm.update(a), 0)
    np.testing.assert_allclose(sm.update(b), 0.25)
    np.testing.assert_allclose(sm.update(b), 0.25 + 0.75 * 0.25)
    sm.reset()
    np.testing.assert_allclose(sm.update(b), 1)


# --- each effect end to end, headless -----------------------------------------------------------
def run_effect(tmp_path, plan_dir, effect_args, stylizer=None, keys=None, frames=4):
    clip = write_clip(tmp_path / "astronaut.mp4", astronaut_frames(frames))
    seen = []
    env, log, err = headless_env(stylizer or NumpyStylizer(), keys=keys,
                                 make_effect_model=app.default_make_effect_model,
                                 on_frame=lambda f, r: seen.append((r.original.copy(),
                                                                    r.stylized.copy())))
    stats_path = tmp_path / "stats.json"
    code = main(["--input", str(clip), "--headless", "--size", SIZE, "--threads", "2",
                 "--plan-cache", str(plan_dir), "--stats", str(stats_path),
                 "--output", str(tmp_path / "out.mp4"), "--effect", *effect_args], env)
    assert code == 0, err
    return seen, json.loads(stats_path.read_text()), log


def expected_blend(seen, background_of, run):
    """The composite rebuilt independently: LiteRT's masks, the moving average, the blend."""
    m, out = None, []
    for original, _ in seen:
        new = reference_mask(run, original)
        m = new if m is None else effects.MASK_ALPHA * new + (1 - effects.MASK_ALPHA) * m
        big = cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
        out.append((big, original * big + background_of(original) * (1 - big)))
    return out


def test_background_effect_end_to_end(tmp_path, plan_dir):
    picture = tmp_path / "coffee.png"
    cv2.imwrite(str(picture), photo("coffee.png"))
    seen, stats, log = run_effect(tmp_path, plan_dir, ["background", str(picture)])
    assert stats["effect"] == "background" and stats["frames_by_effect"] == {"background": 4}
    assert stats["inference_ms"]["p50"] > 0
    bg = FrameConverter((H, W)).fit(photo("coffee.png")).astype(np.float32)
    ref = expected_blend(seen, lambda _: bg, litert_run(effects.SEGMENTATION_MODEL))
    for (original, out), (mask, expected) in zip(seen, ref):
        assert np.abs(out.astype(np.float32) - expected).max() <= 2.5
        assert (mask > 0.9).mean() > 0.1 and (mask < 0.1).mean() > 0.2   # person and background


def test_portrait_blur_end_to_end(tmp_path, plan_dir):
    seen, stats, log = run_effect(tmp_path, plan_dir, ["portrait-blur"])
    assert stats["effect"] == "portrait-blur"
    run = litert_run(effects.SEGMENTATION_MODEL)
    for (original, out), (mask, _) in zip(seen, expected_blend(seen, lambda o: o, run)):
        person, back = mask[..., 0] > 0.99, mask[..., 0] < 0.01
        diff = np.abs(out.astype(int) - original)
        assert diff[person].max() <= 3                       # the person kept sharp
        sharp = np.abs(cv2.Laplacian(original, cv2.CV_32F))[back].mean()
        blurred = np.abs(cv2.Laplacian(out, cv2.CV_32F))[back].mean()
        assert blurred < 0.3 * sharp, (blurred, sharp)       # the background blurred


def test_style_background_end_to_end(tmp_path, plan_dir, ort_stylizer):
    """multistyle26 (onnxruntime, the oracle) behind the person: the background is the stylized
    frame, the person the original."""
    seen, stats, log = run_effect(tmp_path, plan_dir, ["style-background"], ort_stylizer,
                                  frames=3)
    assert stats["effect"] == "style-background" and stats["style"] == "style 0"
    w0 = np.zeros(26, np.float32)
    w0[0] = 1

    def stylized(original):
        x = (original[:, :, ::-1].astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()
        y = ort_stylizer.run(x, w0)[0].transpose(1, 2, 0)[:, :, ::-1]
        return np.clip(np.rint(y * 255), 0, 255)

    ref = expected_blend(seen, stylized, litert_run(effects.SEGMENTATION_MODEL))
    for (original, out), (mask, expected) in zip(seen, ref):
        assert np.abs(out.astype(np.float32) - expected).max() <= 3
        back = mask[..., 0] < 0.01
        assert np.abs(out.astype(int) - original)[back].mean() > 20     # really stylized


@pytest.mark.parametrize("face_style", ["pixelate", "blur"])
def test_blur_faces_end_to_end(tmp_path, plan_dir, face_style):
    seen, stats, log = run_effect(tmp_path, plan_dir, ["blur-faces", "--face-style", face_style])
    assert stats["effect"] == "blur-faces"
    oracle = faces.FaceDetector(litert_run(faces.MODEL_NAME), (H, W))
    for original, out in seen:
        boxes, _ = oracle.detect(original)
        assert len(boxes) == 1                      # the astronaut's face, every frame
        regions = faces.face_regions(boxes, (H, W))
        inside = np.zeros((H, W), bool)
        for x0, y0, x1, y1 in regions:
            inside[y0:y1, x0:x1] = True
            bx0, by0, bx1, by1 = np.clip(boxes[0], 0, [W, H, W, H]).astype(int)
            face = np.abs(out[by0:by1, bx0:bx1].astype(int) - original[by0:by1, bx0:bx1])
            assert face.mean() > 4, face.mean()     # the face is hidden
        np.testing.assert_array_equal(out[~inside], original[~inside])   # nothing else touched


# --- switching effects ----------------------------------------------------------------------------
def test_e_cycles_the_effects():
    state = initial_state(effect="style", effects=effects.EFFECTS)
    seen = [state.effect]
    for k in range(len(effects.EFFECTS)):
        state, actions = handle_key(state, ord("e"), float(k))
        assert actions == (Action.EFFECT,) and state.note == f"effect {state.effect}"
        seen.append(state.effect)
    assert seen == list(effects.EFFECTS) + ["style"]
    assert "effect blur-faces" in HudInfo(30, 5, "", "int8", 2, effect="effect blur-faces").lines()


def test_keys_switch_effects_live(tmp_path, plan_dir):
    keys = ScriptedKeys({k: "e" for k in range(1, 6)})
    seen, stats, log = run_effect(tmp_path, plan_dir, ["style"], keys=keys, frames=6)
    assert stats["frames_by_effect"] == {e: 1 for e in effects.EFFECTS[1:]} | {"style": 2}
    assert stats["effect"] == "style" and stats["frames"] == 6
    outs = [out for _, out in seen]
    for k in range(1, 5):       # each effect changes the picture its own way
        assert np.abs(outs[k].astype(int) - outs[k + 1]).mean() > 1, k
    assert any("loading its model" in m for m in log)


def test_an_effect_whose_model_fails_leaves_the_cycle(tmp_path):
    from demo_style_transfer.errors import DemoError

    def no_model(kind, cfg, log):
        raise DemoError(f"{kind}: not in the zoo (test)")

    clip = write_clip(tmp_path / "a.mp4", astronaut_frames(3))
    env, log, err = headless_env(NumpyStylizer(), keys=ScriptedKeys({1: "e"}))
    env.make_effect_model = no_model
    stats_path = tmp_path / "s.json"
    assert main(["--input", str(clip), "--headless", "--size", SIZE, "--stats",
                 str(stats_path)], env) == 0, err
    assert any("portrait-blur cannot run" in m and "not in the zoo" in m for m in err), err
    assert json.loads(stats_path.read_text())["frames_by_effect"] == {"style": 3}
    err.clear()
    assert main(["--input", str(clip), "--headless", "--size", SIZE, "--effect", "blur-faces"],
                env) == 1
    assert len(err) == 1 and "faces: not in the zoo" in err[0]


@pytest.mark.parametrize("args,message", [
    (["--effect", "sparkle"], "use one of style, portrait-blur"),
    (["--effect", "style", "x.png"], "only background takes an IMAGE"),
    (["--effect", "background", "missing.png"], "no such file"),
])
def test_bad_effect_options_are_usage_errors(args, message):
    made = []
    env, log, err = headless_env(NumpyStylizer())
    env.make_stylizer = lambda *a, **k: made.append(a)
    assert main(["--headless", *args], env) == 2
    assert len(err) == 1 and message in err[0] and not made


def test_a_window_loads_every_effect_at_start(tmp_path):
    """With a window the effects' models load behind the loading screen ('e' never waits for a
    compile); one that cannot be had leaves the cycle with a note, the others stay."""
    from demo_style_transfer.errors import DemoError
    from tests.test_demo_start import FakeWindow
    loaded = []

    def make_model(kind, cfg, log):
        loaded.append(kind)
        if kind == "faces":
            raise DemoError("faces: not in the zoo (test)")
        return effects.Segmenter(lambda x: [np.full((1, 256, 256, 1), 0.5, np.float32)],
                                 (256, 256))

    clip = write_clip(tmp_path / "a.mp4", astronaut_frames(6))
    window = FakeWindow()
    env, log, err = headless_env(NumpyStylizer(), keys=ScriptedKeys({k: "e" for k in range(1, 6)}))
    env.open_window = lambda size=None: (window, "")
    env.make_effect_model = make_model
    stats_path = tmp_path / "s.json"
    assert main(["--input", str(clip), "--size", SIZE, "--stats", str(stats_path)], env) == 0, err
    assert loaded == ["segmenter", "faces"] and not err
    assert any("effect blur-faces is not available" in m for m in log), log
    by_effect = json.loads(stats_path.read_text())["frames_by_effect"]
    assert by_effect == {"style": 2, "portrait-blur": 2, "background": 1, "style-background": 1}
