"""The ``mobile-engine video`` command line: its arguments and their checks (the demo's
``--effect``/``--style``/``--blend``/``--size`` rules, demo_style_transfer/options.py), then
``job.run_video``. Nothing here imports PyAV or Dask until the command runs.
"""
from __future__ import annotations

import argparse
import os

from mobile_engine.errors import InputError

EFFECT_HELP = ("style (default: multistyle26 on the whole frame), portrait-blur, background "
               "[IMAGE], style-background, blur-faces (the demo's effects), or plan (--plan)")


def parse_option(text: str) -> tuple[str, str]:
    """``crf=20`` -> ("crf", "20")."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--encoder-option {text!r}: expected KEY=VALUE, "
                                         f"e.g. crf=20")
    return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="the video file (any container and codec PyAV decodes)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the video to write (.mp4, .mkv, .mov; its folder must exist); the "
                        "input's audio is copied unchanged")
    e = p.add_argument_group("what is done to every frame")
    e.add_argument("--effect", nargs="+", metavar=("NAME", "IMAGE"), default=None,
                   help=EFFECT_HELP)
    e.add_argument("--style", default="0", metavar="N", help="style index 0-25 (default 0)")
    e.add_argument("--blend", metavar="SPEC", help="a mix of styles, e.g. 3:0.5,19:0.5")
    e.add_argument("--face-style", choices=("pixelate", "blur"), default="pixelate",
                   help="blur-faces: pixelate (default) or blur each face")
    e.add_argument("--int8", action="store_true",
                   help="the int8 style plan (calibrated on the zoo photos the first time)")
    e.add_argument("--plan", metavar="FILE.mplan",
                   help="any plan with one image input and a 3-channel image output "
                        "(--effect plan is implied)")
    e.add_argument("--size", metavar="HxW",
                   help="the frames' size (default: the file's; frames are centre-cropped to "
                        "its aspect ratio)")
    e.add_argument("--plan-cache", metavar="DIR",
                   help="where compiled plans are kept (default ~/.cache/mobile-engine/plans)")
    c = p.add_argument_group("where it runs")
    c.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes on 127.0.0.1 (default: one per CPU; 1: a thread "
                        "of this process)")
    c.add_argument("--cluster", metavar="tcp://HOST:8786",
                   help="an existing Dask scheduler instead of local workers")
    c.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads of each worker's Sessions (default 1; all the CPUs with "
                        "--workers 1)")
    c.add_argument("--segment-seconds", type=float, default=2.0, metavar="S",
                   help="the least length of a segment (a task), cut at keyframes (default 2)")
    o = p.add_argument_group("output codec")
    o.add_argument("--codec", metavar="NAME",
                   help="the video encoder (default libx264; e.g. libx264rgb, mpeg4, libvpx)")
    o.add_argument("--encoder-option", action="append", type=parse_option, default=[],
                   metavar="KEY=VALUE", help="an encoder option, e.g. crf=20 or preset=medium "
                                             "(repeatable; libx264's defaults: crf=18, "
                                             "preset=veryfast)")


def run(args) -> int:
    from demo_style_transfer import styles
    from demo_style_transfer.errors import DemoError
    from demo_style_transfer.options import parse_effect, parse_size

    from mobile_engine.video.effect import EffectChoice
    from mobile_engine.video.job import run_video
    try:
        effect, background = _effect(args, parse_effect)
        size = parse_size(args.size) if args.size else None
        mix = styles.parse_blend(args.blend) if args.blend else {styles.parse_style(args.style): 1}
    except (DemoError, styles.StyleError) as exc:
        raise InputError(str(exc)) from None
    if args.cluster and args.workers is not None:
        raise InputError(f"--workers {args.workers}: with --cluster the cluster's workers run "
                         f"the segments (start more with `dask worker`)")
    choice = EffectChoice(effect, size, styles.weights(mix), args.face_style,
                          "int8" if args.int8 else "fp32", args.plan, background, args.plan_cache)
    workers = args.workers if args.workers is not None else os.cpu_count() or 1
    report = run_video(args.input, args.output, choice, workers=workers,
                       cluster=args.cluster, threads=args.threads, codec=args.codec,
                       encoder_options=dict(args.encoder_option),
                       segment_s=args.segment_seconds, progress=args.progress)
    print(report.text())
    return 0


def _effect(args, parse_effect) -> tuple[str, str | None]:
    from mobile_engine.video.effect import PLAN_EFFECT
    if args.plan:
        if args.effect not in (None, [PLAN_EFFECT]):
            raise InputError(f"--plan and --effect {' '.join(args.effect)} do not go together")
        return PLAN_EFFECT, None
    if args.effect == [PLAN_EFFECT]:
        raise InputError("--effect plan needs --plan FILE.mplan")
    return parse_effect(args.effect or ["style"])
