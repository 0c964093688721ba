"""The demo's command line: options, their checks, and the run's ``Config``.

Every option is checked here, before any model is compiled: a bad value is a one-line usage error
(exit code 2), never a traceback.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from demo_style_transfer import effects, styles
from demo_style_transfer.display import output_kind, output_kinds_help
from demo_style_transfer.pipeline import DemoError, check_threads


EXIT_OK, EXIT_ENGINE, EXIT_USAGE, EXIT_SOURCE = 0, 1, 2, 3
HEADLESS_FRAMES = 60          # a headless run over an endless source (camera, synthetic) stops here
AUTO_OUTPUT = "out.mp4"
AUTO_SECONDS = 60.0           # ... and `--auto` headless also stops after this long, whatever the speed
SYNTHETIC_PHOTO = "chelsea.png"
STYLE_IMAGE_INT8_ONLY = "the --style-image models are int8 only (pre-quantized QDQ)"


class UsageError(DemoError):
    exit_code = EXIT_USAGE


@dataclass
class Config:
    camera: int | None = None
    input: str | None = None
    synthetic: bool = False
    photo: str | None = None              # the synthetic camera's photo (default: zoo chelsea.png)
    fallback_synthetic: bool = False
    realtime: bool = False
    style: int = 0
    blend: dict | None = None
    style_image: str | None = None        # any picture as the style (the arbitrary-style models)
    size: tuple = (480, 640)
    precision: str = "int8"               # falls back to fp32 when no int8 plan can be made
    threads: int | None = None
    headless: bool = False
    frames: int | None = None
    seconds: float | None = None
    output: str | None = None
    output_view: str = "stylized"         # or "side-by-side" (with the HUD)
    stats: str | None = None
    save_dir: str = "."
    model: str | None = None
    plan_cache: str | None = None
    auto: bool = False
    frame_timeout: float = 5.0
    effect: str = "style"                 # effects.EFFECTS; 'e' cycles through them live
    background: str | None = None         # the background effect's picture (default: a zoo photo)
    face_style: str = "pixelate"          # blur-faces: "pixelate" or "blur"


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: use HxW, e.g. 480x640") from None
    if h < 32 or w < 32 or h > 4096 or w > 4096:
        raise UsageError(f"--size {text!r}: height and width must be 32 to 4096")
    return h, w


def parse_effect(values: list[str]) -> tuple[str, str | None]:
    """``--effect NAME [IMAGE]`` -> (effect, background picture or None)."""
    effect, *rest = values
    if effect not in effects.EFFECTS:
        raise UsageError(f"--effect {effect}: use one of {', '.join(effects.EFFECTS)}")
    if rest and effect != "background" or len(rest) > 1:
        raise UsageError(f"--effect {' '.join(values)}: only background takes an IMAGE "
                         f"(--effect background IMAGE)")
    background = rest[0] if rest else None
    if background is not None and not Path(background).is_file():
        raise UsageError(f"--effect background {background}: no such file")
    return effect, background


def build_parser() -> argparse.ArgumentParser:
    from mobile_engine import __version__
    p = argparse.ArgumentParser(
        prog="python -m demo_style_transfer",
        description="Real-time video effects on a camera, a video or a picture with mobile-engine: "
                    "style transfer (multistyle26: 26 painting styles and their blends), portrait "
                    "blur, background replacement, stylized background (MediaPipe's selfie "
                    "segmentation) and face blurring (MediaPipe's face detection).",
        epilog="keys in the window: e next effect, n/p next/previous style, 0-9 pick a style "
               "(two digits quickly for 10-25), b blend, s screenshot, r record on/off, "
               "f fp32/int8, q or Esc quit (also while the engine starts)")
    p.add_argument("--version", action="version",
                   version=f"demo_style_transfer (mobile-engine {__version__})",
                   help="print the version and exit")
    src = p.add_argument_group("source (default: camera 0 if one opens, else a synthetic camera)")
    one = src.add_mutually_exclusive_group()
    one.add_argument("--camera", type=int, metavar="N", help="camera index")
    one.add_argument("--input", metavar="FILE", help="a video file or a picture")
    one.add_argument("--synthetic", nargs="?", const="", metavar="PHOTO",
                     help="a synthetic camera: pan and zoom over PHOTO (default: chelsea.png)")
    src.add_argument("--fallback-synthetic", action="store_true",
                     help="if the camera fails or is lost, go on with the synthetic camera")
    src.add_argument("--realtime", action="store_true",
                     help="play --input at its own frame rate, dropping frames like a camera")
    eff = p.add_argument_group("effect ('e' in the window switches live)")
    eff.add_argument("--effect", nargs="+", metavar=("NAME", "IMAGE"), default=["style"],
                     help="style (default: the whole frame stylized), portrait-blur (the "
                          "background blurred), background IMAGE (the background replaced by "
                          f"IMAGE; without IMAGE the zoo's {effects.DEFAULT_BACKGROUND}), "
                          "style-background (the background stylized, the person kept), "
                          "blur-faces (every face found pixelated)")
    eff.add_argument("--face-style", choices=effects.FACE_STYLES, default="pixelate",
                     help="how blur-faces hides a face (default: pixelate)")
    sty = p.add_argument_group("style")
    sty.add_argument("--style", default="0", metavar="N", help="style index 0-25 (default 0)")
    sty.add_argument("--blend", metavar="SPEC", help="a mix of styles, e.g. 3:0.5,19:0.5")
    sty.add_argument("--style-image", metavar="FILE",
                     help="any picture as the style (Magenta's arbitrary-style int8 models; the "
                          "frames run at their 384x384 and are resized back)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--size", default="480x640", metavar="HxW",
                     help="working resolution (default 480x640)")
    prec = eng.add_mutually_exclusive_group()
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8",
                      help="int8 plan, calibrated on 8 zoo photos at the first start (default; "
                           "fp32 if no int8 plan can be made)")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                      help="float32 plan")
    eng.add_argument("--threads", type=int, metavar="N", help="engine threads (default: all)")
    eng.add_argument("--model", metavar="ONNX", help="multistyle26.onnx (default: from the zoo)")
    eng.add_argument("--plan-cache", metavar="DIR",
                     help="compiled plans (default: $MOBILE_ENGINE_HOME/plans or "
                          "~/.cache/mobile-engine/plans)")
    out = p.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="no window")
    out.add_argument("--frames", type=int, metavar="N",
                     help=f"stop after N frames (headless default for a camera: {HEADLESS_FRAMES})")
    out.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    out.add_argument("--output", metavar="FILE",
                     help=f"write the stylized frames: {output_kinds_help()}")
    out.add_argument("--output-view", choices=("stylized", "side-by-side"), default="stylized",
                     help="what --output holds (default: the stylized frames)")
    out.add_argument("--stats", metavar="FILE.json", help="write fps and latency statistics")
    out.add_argument("--save-dir", default=".", metavar="DIR",
                     help="where screenshots (s) and recordings (r) go")
    p.add_argument("--auto", action="store_true",
                   help="a window when there is a display, else a short headless run "
                        f"({HEADLESS_FRAMES} frames or {AUTO_SECONDS:g} s -> {AUTO_OUTPUT}); "
                        "used by `make demo`")
    return p


def parse_args(argv=None) -> Config:
    """A ``Config`` from the command line; ``UsageError`` (or argparse's exit) on bad values."""
    a = build_parser().parse_args(argv)
    if a.style_image is not None:
        if not Path(a.style_image).is_file():
            raise UsageError(f"--style-image {a.style_image}: no such file")
        if a.blend:
            raise UsageError("--style-image and --blend do not go together: pick one")
    try:
        style = styles.parse_style(a.style)
        blend = styles.parse_blend(a.blend) if a.blend else None
    except styles.StyleError as exc:
        raise UsageError(str(exc)) from None
    effect, background = parse_effect(a.effect)
    if a.frames is not None and a.frames < 1:
        raise UsageError(f"--frames {a.frames}: must be at least 1")
    if a.seconds is not None and not a.seconds > 0:
        raise UsageError(f"--seconds {a.seconds}: must be positive")
    try:
        check_threads(a.threads)      # NOTE: before any compile (a bad count is not the plan's fault)
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    if a.output and output_kind(a.output) is None:
        raise UsageError(f"--output {a.output}: unknown extension {Path(a.output).suffix!r}; "
                         f"give {output_kinds_help()}")
    return Config(camera=a.camera, input=a.input, synthetic=a.synthetic is not None,
                  photo=a.synthetic or None, fallback_synthetic=a.fallback_synthetic,
                  realtime=a.realtime, style=style, blend=blend, style_image=a.style_image,
                  size=parse_size(a.size), precision=a.precision or "int8", threads=a.threads,
                  headless=a.headless,
                  frames=a.frames, seconds=a.seconds, output=a.output,
                  output_view=a.output_view, stats=a.stats,
                  save_dir=a.save_dir, model=a.model, plan_cache=a.plan_cache, auto=a.auto,
                  effect=effect, background=background, face_style=a.face_style)
