"""The engine side of the demo: the stylizers (multistyle26 through a Session, Magenta's
arbitrary-style pair), the on-disk plan cache, and loading with the int8 -> fp32 fallback and the
first run's kernel progress. The per-frame work (conversions, timing, statistics) is frames.py.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from demo_style_transfer.errors import DemoError, MissingData
# NOTE: the per-frame work lives in frames.py; imported here for the users of this module
from demo_style_transfer.frames import (FrameConverter, ResizingConverter, Result,  # noqa: F401
                                        Stats, StylePipeline)
from demo_style_transfer.styles import NUM_STYLES

MODEL_NAME = "multistyle26"
PREDICT_MODEL, TRANSFORM_MODEL = "arbitrary_predict", "arbitrary_transform"
# NOTE: the 8 calibration photos of tests/test_quantize_multistyle26.py (README's int8 section);
# rocket, coffee, chelsea (the synthetic camera's photo) and grass stay out for evaluation
CALIBRATION_PHOTOS = ("astronaut.png", "camera.png", "horse.png", "brick.png", "gravel.png",
                      "retina.jpg", "cell.png", "hubble_deep_field.jpg")


class EngineBuildError(DemoError):
    """The engine could not compile a plan, or the plan fails its first run: the same engine
    build fails the same way, so the int8 path remembers it (a failure caused by a run's
    options, e.g. ``threads`` when the Session is made, never is)."""


class StyleImageUnavailable(DemoError):
    """``--style-image``: the engine cannot compile or run the arbitrary-style models."""
    exit_code = 1


class Stylizer(Protocol):
    """The inference step: ``run(x: f32[1, 3, H, W] RGB 0..1, w: f32[26]) -> f32[1, 3, H, W] 0..1``.

    ``x`` is a reused buffer (do not keep it); the returned array is only read until the next call.
    """
    precision: str
    threads: int | None
    description: str

    def run(self, frame_nchw: np.ndarray, style_weights: np.ndarray) -> np.ndarray: ...


class EngineStylizer:
    """multistyle26 through a ``mobile_engine.Session``."""

    def __init__(self, session, precision: str = "fp32", description: str = "",
                 int8_problem: str = "") -> None:
        self.session = session
        self.precision = precision
        self.int8_problem = int8_problem   # why int8 was asked for but is not running ("": it is)
        self.threads = session.threads
        self.description = description
        names = [i.name for i in session.get_inputs()]
        if sorted(names) != ["image", "style_weights"]:
            raise DemoError(f"the plan's inputs are {names}; expected image and style_weights")
        self.shape = tuple(next(i.shape for i in session.get_inputs() if i.name == "image"))

    def run(self, frame_nchw: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"image": frame_nchw, "style_weights": style_weights})
        return out

    def first_run(self, frame_nchw: np.ndarray, style_weights: np.ndarray,
                  progress: Callable | None = None) -> np.ndarray:
        """``run``, reporting ``progress(steps done, kernel ids)`` after each step (the first
        run compiles each kernel or loads it from Numba's cache)."""
        if progress is not None:
            observed_run(self.session, {"image": frame_nchw, "style_weights": style_weights},
                         progress)
        return self.run(frame_nchw, style_weights)


def observed_run(session, feeds: dict, progress: Callable) -> None:
    """One run of ``session`` step by step: ``progress(done, kernels)`` before the first step
    and after each (``kernels``: every step's kernel id); progress may raise to stop."""
    kernels = [s["kernel"] for s in session.plan.steps]
    progress(0, kernels)
    session.run_observed(feeds, lambda i, _outs: progress(i + 1, kernels))


def check_threads(threads: int | None) -> None:
    """``DemoError`` unless ``threads`` is None or 1..NUMBA_NUM_THREADS (before any compile)."""
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= top):
        raise DemoError(f"--threads {threads}: must be between 1 and {top} (the CPUs Numba "
                        f"may use; NUMBA_NUM_THREADS raises it)")


# --- plan cache ------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$MOBILE_ENGINE_HOME/plans``, else ``~/.cache/mobile-engine/plans``."""
    from mobile_engine import zoo
    return zoo.home() / "plans"


_BUILD: str | None = None


def engine_build() -> str:
    """The engine build that compiled a cached plan (``mobile_engine.build_id``): a plan from an
    older build may bind but run older (slower) steps, so the cache keys on it."""
    import mobile_engine
    return mobile_engine.build_id()


@dataclass
class CachedPlan:
    plan: object
    path: Path
    status: str      # "cached" (loaded from disk) or "compiled" (and saved)
    seconds: float   # time to load or to compile and save


def _progress_logger(log: Callable[[str], None], what: str, every: float = 0.25):
    """``progress(done, total)`` that logs ``what: k/n`` about every quarter of the way."""
    shown = [-1.0]

    def progress(done: int, total: int) -> None:
        if total and (done == total or done / total - shown[0] >= every):
            shown[0] = done / total
            log(f"  {what}: {done}/{total}")
    return progress


def calibration_feeds(size: tuple[int, int], photos=CALIBRATION_PHOTOS,
                      image_dir: str | Path | None = None) -> list[dict]:
    """multistyle26's int8 calibration set: ``photos`` fitted to ``size`` the way camera frames
    are (centre crop, resize, RGB 0..1 NCHW), and ``style_weights`` one-hot with the hot index
    spread over the 26 styles (photo k: style k * 26 // n), as
    ``mobile-engine compile --int8 --calib DIR --set style_weights=onehot`` builds them."""
    from mobile_engine import zoo
    root = Path(image_dir) if image_dir is not None else zoo.home() / "images"
    conv = FrameConverter(size)
    feeds = []
    for k, name in enumerate(photos):
        path = root / name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if image is None:
            raise MissingData(f"calibration photo {root / name} is missing or unreadable "
                            f"(`mobile-engine zoo fetch` fetches the photos)")
        w = np.zeros(NUM_STYLES, np.float32)
        w[(k * NUM_STYLES // len(photos)) % NUM_STYLES] = 1
        feeds.append({"image": conv.to_model(conv.fit(image)).copy(), "style_weights": w})
    return feeds


class PlanCache:
    """Compiled plans on disk, keyed by the model's sha256, the input size, the precision and the
    engine build (a new engine may change the plan format or its steps): a cached start only
    maps the file. Saving a plan removes the plans of older builds for the same key.

    ``compile_fn(model_path, (h, w), precision) -> plan`` (with ``plan.save(path)``) and
    ``load_fn(path) -> plan`` default to ``mobile_engine``'s: fp32, or int8 calibrated on
    ``calibration_feeds(size)``; ``get(..., build=...)`` compiles one entry its own way.
    """

    def __init__(self, root: str | Path | None = None, compile_fn: Callable | None = None,
                 load_fn: Callable | None = None, version: str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._compile, self._load, self._version = compile_fn, load_fn, version

    def _engine(self):
        if self._load is None:
            import mobile_engine as me
            self._load = me.Plan.load
        if self._version is None:
            self._version = engine_build()

    def _default_compile(self, model, size, precision, log):
        import mobile_engine as me
        shapes = {"image": (1, 3, *size)}
        if precision == "fp32":
            return me.compile(str(model), input_shapes=shapes)
        feeds = calibration_feeds(size)
        log(f"  calibrating on {len(feeds)} photos at {size[0]}x{size[1]}, then quantizing "
            f"(first run only) ...")
        plan = me.compile(str(model), input_shapes=shapes, quantize=precision, calibration=feeds,
                          progress=_progress_logger(log, "calibration steps"))
        quant = plan.manifest["provenance"].get("quantization", {})
        report = quant.get("report") or {}
        psnr = report.get("psnr_db")
        log(f"  int8: {quant.get('summary', '')}" + (
            f"; PSNR against fp32 on the calibration photos min {min(psnr):.1f} / median "
            f"{float(np.median(psnr)):.1f} dB" if psnr else ""))
        return plan

    def _key(self, model: str | Path, size, precision: str) -> str:
        h, w = size
        return f"{Path(model).stem}-{file_sha256(model)[:16]}-{h}x{w}-{precision}-v"

    def path_for(self, model: str | Path, size: tuple[int, int], precision: str) -> Path:
        self._engine()
        return self.root / f"{self._key(model, size, precision)}{self._version}.mplan"

    def failure_path(self, model: str | Path, size: tuple[int, int], precision: str) -> Path:
        """Where a failed compile of this key (this engine build) is remembered."""
        return self.path_for(model, size, precision).with_suffix(".failed")

    def get(self, model: str | Path, size: tuple[int, int], precision: str = "fp32",
            log: Callable[[str], None] = print, force: bool = False,
            build: Callable[[], object] | None = None) -> CachedPlan:
        """The cached plan, else a compiled and saved one (``force``: compile even if cached;
        ``build() -> plan``: how to compile this entry, instead of the cache's compile_fn)."""
        path = self.path_for(model, size, precision)
        t0 = time.perf_counter()
        if path.is_file() and not force:
            try:
                plan = self._load(path)
                return CachedPlan(plan, path, "cached", time.perf_counter() - t0)
            except Exception as exc:  # stale or damaged file: compile it again
                log(f"cached plan {path} cannot be used ({exc}); compiling again")
        log(f"compiling {Path(model).name} for {size[0]}x{size[1]} {precision} "
            f"(once; cached in {self.root}) ...")
        if build is not None:
            plan = build()
        elif self._compile is not None:
            plan = self._compile(model, size, precision)
        else:
            plan = self._default_compile(model, size, precision, log)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            plan.save(tmp)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
        for old in self.root.glob(f"{self._key(model, size, precision)}*.mplan"):
            if old != path:      # an older build's plan for the same key
                old.unlink(missing_ok=True)
        return CachedPlan(plan, path, "compiled", time.perf_counter() - t0)


def _cached(cache: PlanCache, model: Path, size, precision: str, log, build=None,
            force: bool = False):
    """cache.get, with an engine failure to compile as ``EngineBuildError``."""
    try:
        return cache.get(model, size, precision, log, force=force, build=build)
    except (KeyboardInterrupt, DemoError):
        raise
    except Exception as exc:
        raise EngineBuildError(describe_error(exc)) from exc


def _session(cache: PlanCache, model: Path, size, precision: str, threads, log, build=None):
    """(Session, CachedPlan): the cached plan, compiled again once if it no longer binds."""
    import mobile_engine as me
    cached = _cached(cache, model, size, precision, log, build)
    verb = "loaded cached plan" if cached.status == "cached" else "compiled plan"
    log(f"{verb} {cached.path.name} in {cached.seconds * 1000:.0f} ms")
    try:
        return me.Session(cached.plan, threads=threads), cached
    except me.EngineError as exc:
        if cached.status != "cached":
            raise
        # NOTE: a plan from an older build of the same engine version may no longer bind
        log(f"the cached plan cannot be used ({exc}); compiling again")
        cached = _cached(cache, model, size, precision, log, build, force=True)
        return me.Session(cached.plan, threads=threads), cached


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``: one line for a console note."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_engine_stylizer(size: tuple[int, int], precision: str = "int8", threads: int | None = None,
                         model: str | Path | None = None, cache: PlanCache | None = None,
                         log: Callable[[str], None] = print,
                         progress: Callable | None = None) -> EngineStylizer:
    """multistyle26 compiled (or loaded from the plan cache) for ``size`` and wrapped in a Session.

    ``precision="int8"`` falls back to fp32 with one message when the int8 plan cannot be made
    (no calibration photos, a compile error); the stylizer's ``precision`` says what runs and
    ``int8_problem`` why int8 does not. An engine failure is remembered next to the plans (for
    this engine build), so later starts fall back at once; a failure of this run's options
    (``threads``) never is. ``progress(done, kernels)`` follows the first run (``observed_run``).
    """
    import mobile_engine as me
    from mobile_engine import zoo
    if precision not in ("fp32", "int8"):
        raise DemoError(f"precision {precision!r}: use fp32 or int8")
    check_threads(threads)
    model = Path(model) if model is not None else zoo.model_path(MODEL_NAME)
    if not model.is_file():
        raise DemoError(f"{model}: no such model file")
    cache = cache or PlanCache()
    problem = ""
    failed = cache.failure_path(model, size, "int8") if precision == "int8" else None
    if failed is not None and failed.is_file():
        # NOTE: the same engine build would fail the same way: do not spend the compile again
        problem = failed.read_text().strip()
        log(f"note: {problem}; running fp32 instead (delete {failed} to try again)")
    elif failed is not None:
        try:
            session, cached = _session(cache, model, size, "int8", threads, log)
            stylizer = EngineStylizer(session, "int8",
                                      f"mobile_engine {me.__version__} ({cached.status})")
            try:
                _check_runs(stylizer, size, progress)
            except Exception as exc:
                raise EngineBuildError(describe_error(exc)) from exc
            return stylizer
        except KeyboardInterrupt:
            raise
        except Exception as exc:   # NOTE: any failure of the int8 path: fp32 still works
            cause = exc.__cause__ if isinstance(exc, EngineBuildError) and exc.__cause__ else exc
            problem = f"the int8 plan could not be made ({describe_error(cause)})"
            log(f"note: {problem}; running fp32 instead")
            # NOTE: the engine failing to compile or run the plan fails the same way next time;
            # missing photos or an error of this run's options (a Session's threads) may not
            if isinstance(exc, EngineBuildError):
                try:
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    failed.write_text(problem + "\n")
                except OSError:
                    pass
    session, cached = _session(cache, model, size, "fp32", threads, log)
    stylizer = EngineStylizer(session, "fp32", f"mobile_engine {me.__version__} ({cached.status})",
                              int8_problem=problem)
    if progress is not None:
        _check_runs(stylizer, size, progress)
    return stylizer


def _check_runs(stylizer: EngineStylizer, size: tuple[int, int],
                progress: Callable | None = None) -> None:
    """One run on a grey frame (also the kernels' first load, followed by ``progress``): a plan
    that binds but returns non-finite values or a wrong shape counts as not made."""
    w = np.zeros(NUM_STYLES, np.float32)
    w[0] = 1
    x = np.full((1, 3, *size), 0.5, np.float32)
    first_run = getattr(stylizer, "first_run", None)
    out = first_run(x, w, progress) if first_run is not None else stylizer.run(x, w)
    if out.shape != (1, 3, *size) or not np.isfinite(out).all():
        raise DemoError(f"the plan returned {out.shape} with non-finite values"
                        if out.shape == (1, 3, *size) else f"the plan returned shape {out.shape}")


# --- any picture as the style ------------------------------------------------------------------
class StyleImageStylizer:
    """The Magenta arbitrary-style pair (pre-quantized QDQ int8 models): ``arbitrary_predict``
    turns the style picture into a style vector once, ``arbitrary_transform`` stylizes each frame.

    Contracts (checked at load): predict ``f32[1, sh, sw, 3] RGB 0..1 -> f32[1, 1, 1, 100]``;
    transform ``(content f32[1, th, tw, 3] RGB 0..1, style f32[1, 1, 1, 100]) ->
    f32[1, th, tw, 3] 0..1``. Frames are resized to th x tw and back (``make_converter``);
    ``run`` ignores ``style_weights``.
    """
    precision = "int8"
    int8_problem = ""

    def __init__(self, predict, transform, style_bgr: np.ndarray, name: str = "style image",
                 description: str = "") -> None:
        self.threads = transform.threads
        self.description = description
        self.name = name
        (p_in,) = predict.get_inputs()
        p_out = predict.get_outputs()[0]
        content = [i for i in transform.get_inputs() if len(i.shape) == 4 and i.shape[-1] == 3
                   and i.shape[1] > 1]
        others = [i for i in transform.get_inputs() if i not in content]
        if len(p_in.shape) != 4 or p_in.shape[-1] != 3 or len(content) != 1 \
                or len(others) != 1 or tuple(others[0].shape) != tuple(p_out.shape):
            raise StyleImageUnavailable(
                f"unexpected arbitrary-style models: predict {p_in.name}{list(p_in.shape)} -> "
                f"{p_out.name}{list(p_out.shape)}, transform inputs "
                f"{[(i.name, list(i.shape)) for i in transform.get_inputs()]}")
        self.style_size = tuple(p_in.shape[1:3])
        self.model_size = tuple(content[0].shape[1:3])
        self._content, self._style = content[0].name, others[0].name
        style_in = ResizingConverter(self.style_size, self.style_size)
        x = style_in.to_model(style_in.fit(style_bgr))
        (vec,) = predict.run([p_out.name], {p_in.name: x})
        self.style_vector = np.ascontiguousarray(vec, np.float32)
        self.transform = transform
        self._feeds = {self._style: self.style_vector}

    def make_converter(self, size: tuple[int, int]) -> "ResizingConverter":
        return ResizingConverter(size, self.model_size)

    def run(self, frame_nhwc: np.ndarray, style_weights: np.ndarray) -> np.ndarray:
        self._feeds[self._content] = frame_nhwc
        (out,) = self.transform.run(None, self._feeds)
        return out


def load_style_image_stylizer(style_image: str | Path, threads: int | None = None,
                              cache: PlanCache | None = None,
                              log: Callable[[str], None] = print,
                              models: tuple | None = None) -> StyleImageStylizer:
    """Both arbitrary-style models compiled with the engine (cached like multistyle26's plans,
    at the models' own input sizes) and the style vector of ``style_image`` predicted.
    ``StyleImageUnavailable`` (a message, no traceback) when the engine cannot do it."""
    import mobile_engine as me
    from mobile_engine import zoo
    image = cv2.imread(str(style_image), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError(f"--style-image {style_image}: not a picture OpenCV can read")
    cache = cache or PlanCache()
    paths = models or (zoo.model_path(PREDICT_MODEL), zoo.model_path(TRANSFORM_MODEL))
    sessions, status = [], []
    for path in map(Path, paths):
        try:
            graph_input = _fixed_input_size(path)
            session, cached = _session(cache, path, graph_input, "qdq", threads, log,
                                       build=lambda p=path: me.compile(str(p)))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise StyleImageUnavailable(
                f"--style-image: the engine cannot compile {path.name} ({describe_error(exc)}); "
                f"use one of the 26 built-in styles: --style N or --blend 3:0.5,19:0.5") from None
        sessions.append(session)
        status.append(cached.status)
    try:
        return StyleImageStylizer(*sessions, image, Path(style_image).name,
                                  f"mobile_engine {me.__version__} arbitrary-style "
                                  f"({'/'.join(status)})")
    except DemoError:
        raise
    except Exception as exc:
        raise StyleImageUnavailable(f"--style-image: the engine failed to run "
                                    f"{Path(paths[0]).name} ({describe_error(exc)})") from None


def _fixed_input_size(model: Path) -> tuple[int, int]:
    """(h, w) of the model's first NHWC image input (the arbitrary models fix it: 256 / 384)."""
    import onnx
    m = onnx.load(str(model), load_external_data=False)
    for vi in m.graph.input:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[3] == 3:
            return dims[1], dims[2]
    raise DemoError(f"{model.name}: no [1, H, W, 3] image input")
