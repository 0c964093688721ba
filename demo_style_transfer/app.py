"""The demo's main loop: source -> capture thread -> effect (style pipeline, segmentation, face
detection: effects.py) -> window / video file / stats, with keyboard control in the window (or from
a script in tests). The command line is options.py.

Precision: int8 by default (multistyle26 calibrated on 8 zoo photos at the first start, the plan
cached on disk), fp32 when no int8 plan can be made (one note says why) or with ``--fp32``; 'f'
switches live (each precision's plan is loaded once and kept). ``--style-image`` runs the two
pre-quantized Magenta models instead (int8 only).

Exit codes: 0 done, 1 engine or model failure (also: the engine cannot compile the --style-image
models), 2 bad usage, 3 the source could not be opened or was lost during the run.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from demo_style_transfer import effects, startup, styles
from demo_style_transfer.display import (VideoOut, check_writable, open_window, output_kind,
                                         write_picture)
from demo_style_transfer.hud import HudInfo, HudRenderer
from demo_style_transfer.keys import Action, DemoState, handle_key, initial_state
from demo_style_transfer.pipeline import (DemoError, Stats, StylePipeline, describe_error,
                                          load_engine_stylizer, load_style_image_stylizer)
from demo_style_transfer.sources import (CameraSource, CaptureThread, PacedSource, SourceError,
                                         SourceLost, SyntheticCamera, open_input)
from demo_style_transfer.options import (  # noqa: F401  (re-exported)
    AUTO_OUTPUT, AUTO_SECONDS, EXIT_ENGINE, EXIT_OK, EXIT_SOURCE, EXIT_USAGE, HEADLESS_FRAMES,
    STYLE_IMAGE_INT8_ONLY, SYNTHETIC_PHOTO, Config, UsageError, build_parser, parse_args,
    parse_size)


# --- wiring ----------------------------------------------------------------------------------
def default_make_stylizer(cfg: Config, log: Callable[[str], None], progress=None):
    """The engine's stylizer for ``cfg``: multistyle26 in ``cfg.precision`` (int8 falls back to
    fp32 with a note), or the arbitrary-style pair for ``cfg.style_image``; ``progress``
    follows the kernels of the first run (``startup.KernelProgress``)."""
    from demo_style_transfer.pipeline import PlanCache
    if cfg.style_image:
        if cfg.precision == "fp32":
            log(f"note: {STYLE_IMAGE_INT8_ONLY}: --fp32 does not apply")
        return load_style_image_stylizer(cfg.style_image, cfg.threads, PlanCache(cfg.plan_cache),
                                         log)
    return load_engine_stylizer(cfg.size, cfg.precision, cfg.threads, cfg.model,
                                PlanCache(cfg.plan_cache), log, progress)


def default_make_effect_model(kind: str, cfg: Config, log: Callable[[str], None]):
    """An effect's model ("segmenter" or "faces") compiled with the engine from the zoo's
    .tflite (cached next to the style plans) for frames of ``cfg.size``."""
    from demo_style_transfer.pipeline import PlanCache
    return effects.load_effect_model(kind, cfg.size, cfg.threads, PlanCache(cfg.plan_cache), log)


def int8_switch(stylizer) -> tuple[bool, str]:
    """(can 'f' switch to int8, the note when it cannot) for a stylizer."""
    if getattr(stylizer, "style_vector", None) is not None:
        return False, STYLE_IMAGE_INT8_ONLY
    problem = getattr(stylizer, "int8_problem", "")
    if problem:
        return False, "int8 unavailable (see the console)"
    return True, ""


def style_image_label(stylizer) -> str | None:
    name = getattr(stylizer, "style_vector", None) is not None and getattr(stylizer, "name", "")
    return f"image {name}" if name else None


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _stdout(text: str) -> None:
    print(text, flush=True)


@dataclass
class Env:
    """What the app reaches outside itself; tests replace parts (a stand-in stylizer, a fake camera,
    scripted keys, a frame callback)."""
    make_stylizer: Callable = default_make_stylizer     # (cfg, log[, progress]) -> Stylizer
    make_effect_model: Callable = default_make_effect_model   # (kind, cfg, log) -> model
    open_camera: Callable = CameraSource                  # (index) -> source, or SourceError
    open_window: Callable = open_window                   # ((w, h)) -> (Window | None, why)
    keys: object | None = None                            # .poll(frame_number) -> [key codes]
    on_frame: Callable | None = None                      # (frame, result) after each frame
    log: Callable = _stdout
    err: Callable = _stderr
    clock: Callable = time.perf_counter


def synthetic_source(cfg: Config):
    photo = cfg.photo
    if photo is None:
        from mobile_engine import zoo
        try:
            photo = zoo.image_path(SYNTHETIC_PHOTO)
        except zoo.ZooError:
            photo = None   # a drawn test pattern; `make models` fetches the photos
    return SyntheticCamera(cfg.size, photo)


def open_source(cfg: Config, env: Env, headless: bool):
    """The source the options ask for; with none, camera 0 and else the synthetic camera."""
    if cfg.input:
        count = (cfg.frames or 1) if headless else None   # a still picture: how many times
        source = open_input(cfg.input, count)
        return PacedSource(source) if cfg.realtime else source
    if cfg.synthetic:
        return synthetic_source(cfg)
    index = 0 if cfg.camera is None else cfg.camera
    try:
        return env.open_camera(index)
    except SourceError as exc:
        if cfg.camera is not None and not cfg.fallback_synthetic:
            raise SourceError(f"{exc}; use --synthetic or --input FILE, or --fallback-synthetic")
        source = synthetic_source(cfg)
        env.log(f"note: {exc}; using the {source.name} instead")
        return source


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


@dataclass
class _Run:
    """The mutable parts of one run (the loop's bookkeeping)."""
    cfg: Config
    env: Env
    stylizer: object
    pipeline: StylePipeline
    state: DemoState
    writer_fps: float
    renderer: HudRenderer
    effects: effects.EffectRunner
    stats: Stats = field(default_factory=Stats)
    stylizers: dict = field(default_factory=dict)        # precision -> loaded stylizer ('f')
    frames_by_precision: dict = field(default_factory=dict)
    frames_by_effect: dict = field(default_factory=dict)
    background: bool = False        # load another precision's plan in a thread (a window)
    loading: tuple | None = None    # (precision, thread, [stylizer, exception]) while loading
    loading_step: str = ""          # the loader's latest line (compile, calibration, kernels)
    dropped: int = 0
    recorder: VideoOut | None = None
    writer: VideoOut | None = None

    def hud(self, result) -> HudInfo:
        now = self.env.clock()
        note = self.state.note_at(now) or (
            f"loading the {self.loading[0]} plan: {self.loading_step or '...'}"
            if self.loading is not None else "")
        effect = self.state.effect
        style = self.state.style_label() if effect in ("style", "style-background") else ""
        return HudInfo(self.stats.recent_fps(), result.inference_ms, style,
                       self.stylizer.precision, self.stylizer.threads, note, self.state.recording,
                       self.effects.label(effect))

    def apply(self, action: Action, view_fn) -> None:
        now = self.env.clock()
        save_dir = Path(self.cfg.save_dir)
        if action is Action.SCREENSHOT:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"screenshot-{_stamp()}-{self.stats.frames:05d}.png"
            cv2.imwrite(str(path), view_fn())
            self.state = self.state.with_note(f"saved {path.name}", now)
        elif action is Action.START_RECORDING:
            path = save_dir / f"record-{_stamp()}.mp4"
            h, w = self.cfg.size
            self.recorder = VideoOut(path, self.writer_fps, (2 * w, h))
            self.state = self.state.with_note(f"recording to {path.name}", now)
        elif action is Action.STOP_RECORDING and self.recorder is not None:
            self.recorder.close()
            self.state = self.state.with_note(f"saved {self.recorder.path.name} "
                                              f"({self.recorder.frames} frames)", now)
            self.recorder = None
        elif action is Action.RELOAD:
            self.switch_precision(self.state.precision, now)
        elif action is Action.EFFECT:
            self.switch_effect(self.state.effect, now)

    def switch_effect(self, want: str, now: float) -> None:
        """Run ``want`` from the next frame on, loading its models the first time (a model that
        cannot be had: a note, the effect leaves the cycle and the previous one goes on)."""
        try:
            if effects.needs(want) and not all(k in self.effects.models.loaded()
                                               for k in effects.needs(want)):
                self.env.log(f"effect {want}: loading its model ...")
            self.effects.prepare(want)
        except DemoError as exc:
            self.env.err(f"error: effect {want} cannot run: {exc}")
            previous = self.effects.last_effect or "style"
            left = tuple(e for e in self.state.effects if e != want)
            self.state = replace(self.state, effect=previous, effects=left) \
                .with_note(f"{want} cannot run (see the console)", now)
            return
        self.env.log(f"effect: {want}")

    def switch_precision(self, want: str, now: float) -> None:
        """Run ``want`` from the next frame on. A stylizer loaded before is reused at once; a new
        one is loaded (compiled the first time): with a window in a background thread while the
        current plan goes on (``poll_loading`` swaps it in), headless right here."""
        self.stylizers.setdefault(self.stylizer.precision, self.stylizer)
        if want == self.stylizer.precision:   # e.g. 'f' twice while a plan was loading
            return
        stylizer = self.stylizers.get(want)
        if stylizer is not None:
            self._use(stylizer)
            return
        if self.loading is not None:
            return
        self.env.log(f"switching to {want}: loading its plan ...")
        if not self.background:
            self._loaded(want, *self._load(want), now)
            return
        box: list = []
        thread = threading.Thread(target=lambda: box.extend(self._load(want)),
                                  name=f"load-{want}", daemon=True)
        self.loading = (want, thread, box)
        thread.start()

    def poll_loading(self, now: float, wait: float | None = 0.0) -> None:
        """Swap in a plan loaded in the background once it is ready (``wait``: seconds to wait
        for it; None: until it is done)."""
        if self.loading is None:
            return
        want, thread, box = self.loading
        thread.join(wait)
        if thread.is_alive():
            return
        self.loading = None
        self._loaded(want, *(box or (None, RuntimeError("the loader thread ended early"))), now)

    def _load(self, want: str) -> tuple:
        """(stylizer, None) or (None, the exception). Its log lines and kernel progress also
        go to the HUD's note (``loading_step``)."""
        def log(text: str) -> None:
            self.loading_step = text.strip()[:70]
            self.env.log(text)

        progress = startup.KernelProgress(log)
        try:
            return self.env.make_stylizer(replace(self.cfg, precision=want), log, progress), None
        except Exception as exc:   # NOTE: reported by _loaded; the running plan goes on
            return None, exc

    def _loaded(self, want: str, stylizer, exc, now: float) -> None:
        if exc is not None:
            self.env.err(f"error: cannot switch to {want}: {describe_error(exc)}")
            self.state = replace(self.state, precision=self.stylizer.precision) \
                .with_note(f"cannot switch to {want} (see the console)", now)
            return
        if stylizer.precision != want:   # int8 fell back to fp32: keep what runs
            ok, note = int8_switch(stylizer)
            self.state = replace(self.state, precision=self.stylizer.precision,
                                 int8_available=ok, int8_note=note or self.state.int8_note) \
                .with_note(note or f"{want} is not available", now)
            return
        self.stylizers[want] = stylizer
        if self.state.precision == want:  # not toggled back while it loaded
            self._use(stylizer)
            self.state = self.state.with_note(f"now {want}", now)

    def _use(self, stylizer) -> None:
        self.stylizer = stylizer
        self.pipeline = StylePipeline(stylizer, self.cfg.size, self.env.clock)
        self.env.log(f"now running {stylizer.precision}")


def _start_engine(cfg: Config, env: Env, log, progress, preload: bool = False):
    """(stylizer, pipeline, key state, style weights, warm-up ms, effect runner): made in
    ``startup.start``'s thread when there is a window. ``preload`` (a window): every effect's
    models load now, behind the loading screen, so 'e' never freezes the window; an effect whose
    model cannot be had leaves the cycle with a note (headless: each loads on first use)."""
    log("starting the engine (the first start of a new engine build compiles its kernels, "
        "with progress below; later starts load them from Numba's cache) ...")
    stylizer = env.make_stylizer(cfg, log, progress)
    pipeline = StylePipeline(stylizer, cfg.size, env.clock)
    int8_ok, int8_note = int8_switch(stylizer)
    runner = effects.EffectRunner(
        cfg.size, effects.EffectModels(lambda kind: env.make_effect_model(kind, cfg, log)),
        cfg.background, cfg.face_style, env.clock)
    runner.prepare(cfg.effect)        # NOTE: the effect asked for must run: its failure ends here
    cycle = list(effects.EFFECTS)
    for effect in cycle[:] if preload else ():
        try:
            runner.prepare(effect)
        except DemoError as exc:
            log(f"note: effect {effect} is not available: {exc}")
            cycle.remove(effect)
    state = initial_state(cfg.style, cfg.blend, stylizer.precision, int8_ok, int8_note,
                          style_image_label(stylizer), cfg.effect, tuple(cycle))
    weights = styles.weights(state.mix())
    return stylizer, pipeline, state, weights, pipeline.warm_up(weights), runner


def run(cfg: Config, env: Env | None = None) -> int:
    """One demo run; returns the exit code. Ends at the end of the input, after ``frames``, on 'q',
    or when the source is lost (exit code 3, unless ``fallback_synthetic``)."""
    env = env or Env()
    log, err = env.log, env.err
    window = None
    h, w = cfg.size
    if not cfg.headless:
        window, why = env.open_window((2 * w, h))   # the side-by-side view's size
        if window is None:
            log(f"note: {why}: running headless")
    headless = window is None
    if headless and cfg.auto:
        cfg = replace(cfg, output=cfg.output or AUTO_OUTPUT, frames=cfg.frames or HEADLESS_FRAMES,
                      seconds=cfg.seconds or AUTO_SECONDS)

    for path in (cfg.output, cfg.stats):
        if path:
            check_writable(Path(path))
    try:
        source = open_source(cfg, env, headless)   # first: a missing file or camera fails fast
    except BaseException:
        if window is not None:
            window.close()
        raise
    try:
        started = startup.start(lambda log_fn, progress: _start_engine(cfg, env, log_fn, progress,
                                                                       window is not None),
                                window, log, (2 * w, h))
    except BaseException:
        source.close()
        if window is not None:
            window.close()
        raise
    if started is None:
        source.close()
        window.close()
        log("quit while the engine was starting")
        return EXIT_OK
    stylizer, pipeline, state, weights, warm, runner = started
    log(f"effect: {cfg.effect}; engine: "
        f"{getattr(stylizer, 'description', type(stylizer).__name__)}, "
        f"{stylizer.precision}, {stylizer.threads} threads, {cfg.size[0]}x{cfg.size[1]}; "
        f"first run {warm[0]:.0f} ms, then {warm[-1]:.0f} ms")
    max_frames = cfg.frames
    if headless and max_frames is None and cfg.seconds is None and not source.can_end:
        max_frames = HEADLESS_FRAMES
    limits = []
    if max_frames:
        limits.append(f"{max_frames} frames")
    if cfg.seconds:
        limits.append(f"{cfg.seconds:g} s")
    log(f"source: {source.name}" + (f"; stopping after {' or '.join(limits)}" if limits else ""))
    # NOTE: a live source is processed at the engine's pace, so its video is written at that rate
    writer_fps = source.fps if not source.live else \
        float(np.clip(1000.0 / max(warm[-1], 1e-3), 1.0, source.fps))
    r = _Run(cfg, env, stylizer, pipeline, state, writer_fps, HudRenderer(cfg.size), runner,
             background=window is not None)
    capture = CaptureThread(source).start()
    exit_code, reason = EXIT_OK, "end of input"
    last_image = None
    t_start = last_report = env.clock()
    try:
        while True:
            if max_frames is not None and r.stats.frames >= max_frames:
                reason = f"{max_frames} frames"
                break
            if cfg.seconds is not None and env.clock() - t_start >= cfg.seconds:
                reason = f"{cfg.seconds:g} s"
                break
            try:
                frame = capture.get(cfg.frame_timeout)
            except SourceLost as exc:
                if cfg.fallback_synthetic and not isinstance(capture.source, SyntheticCamera):
                    capture.stop()
                    r.dropped += capture.dropped
                    capture = CaptureThread(synthetic_source(cfg)).start()
                    log(f"note: {exc}; going on with the {capture.source.name}")
                    continue
                err(f"error: {exc}; stopping after {r.stats.frames} frames"
                    + ("" if cfg.input else " (--fallback-synthetic goes on with a synthetic camera)"))
                exit_code, reason = EXIT_SOURCE, f"source lost: {exc}"
                break
            if frame is None:
                break
            r.poll_loading(env.clock())
            weights = styles.weights(r.state.mix(), out=weights)
            effect = r.state.effect
            result = r.effects.process(effect, r.pipeline, frame.image, weights)
            view = None

            def view_fn():
                nonlocal view
                if view is None:
                    view = r.renderer.compose(result.original, result.stylized, r.hud(result))
                return view

            if cfg.output:
                out_image = view_fn() if cfg.output_view == "side-by-side" else result.stylized
                if output_kind(cfg.output) == "image":
                    last_image = out_image       # written once the run ends
                else:
                    if r.writer is None:
                        r.writer = VideoOut(cfg.output, writer_fps, out_image.shape[1::-1])
                    r.writer.write(out_image)
            if r.recorder is not None:
                r.recorder.write(view_fn())
            if window is not None:
                window.show(view_fn())
            r.stats.add(frame.t_capture, env.clock(), result)
            p = r.stylizer.precision
            r.frames_by_precision[p] = r.frames_by_precision.get(p, 0) + 1
            r.frames_by_effect[effect] = r.frames_by_effect.get(effect, 0) + 1
            if env.on_frame is not None:
                env.on_frame(frame, result)
            keys = (window.poll(r.stats.frames) if window is not None else []) + \
                   (env.keys.poll(r.stats.frames) if env.keys is not None else [])
            for key in keys:
                r.state, actions = handle_key(r.state, key, env.clock())
                for action in actions:
                    r.apply(action, view_fn)
            if r.state.quit:
                reason = "quit"
                break
            if headless and env.clock() - last_report > 5.0:
                last_report = env.clock()
                log(f"  {r.stats.frames} frames, {r.stats.recent_fps():.1f} fps")
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        capture.stop()
        r.dropped += capture.dropped
        if r.loading is not None:
            log(f"note: the {r.loading[0]} plan was still loading; it is not used")
        for w in (r.writer, r.recorder):
            if w is not None:
                w.close()
        if window is not None:
            window.close()
    if last_image is not None:
        write_picture(cfg.output, last_image)

    summary = r.stats.summary(
        dropped=r.dropped, size=list(cfg.size), precision=r.stylizer.precision,
        frames_by_precision=r.frames_by_precision, effect=r.state.effect,
        frames_by_effect=r.frames_by_effect,
        style=r.state.style_label(), threads=r.stylizer.threads, source=capture.source.name,
        engine=getattr(r.stylizer, "description", type(r.stylizer).__name__),
        warmup_ms=[round(v, 1) for v in warm], output=cfg.output, stopped=reason,
        exit_code=exit_code)
    if cfg.stats:
        Path(cfg.stats).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.stats).write_text(json.dumps(summary, indent=2) + "\n")
    lat, inf = summary["latency_ms"], summary["inference_ms"]
    log(f"{summary['frames']} frames of {r.state.effect} at {cfg.size[0]}x{cfg.size[1]} "
        f"{r.stylizer.precision}, "
        f"{r.stylizer.threads} threads: {summary['fps']:.1f} fps end to end "
        f"(inference p50 {inf['p50']} ms, latency p50 {lat['p50']} ms, dropped {r.dropped})"
        + (f" -> {cfg.output}" if cfg.output and (r.writer or last_image is not None) else "")
        + (f", stats in {cfg.stats}" if cfg.stats else ""))
    if headless and not cfg.output:
        log("nothing was written (no --output: --output out.mp4 writes the video, --output "
            "out.png the last frame)")
    return exit_code


def main(argv=None, env: Env | None = None) -> int:
    """The command line; returns the exit code (never raises for user-visible problems)."""
    env = env or Env()
    cv2.setNumThreads(1)   # NOTE: OpenCV's own pool would compete with the engine's threads
    try:
        cfg = parse_args(argv)
        return run(cfg, env)
    except SystemExit as exc:            # argparse: usage already printed
        return int(exc.code or 0)
    except DemoError as exc:
        env.err(f"error: {exc}")
        return exc.exit_code
    except SourceError as exc:
        env.err(f"error: {exc}")
        return EXIT_SOURCE
    except KeyboardInterrupt:
        env.err("interrupted")
        return 130
    except OSError as exc:               # a file that cannot be read or written
        env.err(f"error: {exc}")
        return EXIT_ENGINE
    except Exception as exc:
        from mobile_engine.errors import EngineError
        if isinstance(exc, EngineError):
            env.err(f"error: {exc}")
            return EXIT_ENGINE
        raise
