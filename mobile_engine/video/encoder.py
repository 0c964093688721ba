"""The output codec: chosen and checked on the client (the encoder exists, takes the frame size
and the options, and the output container holds it), then created anew on a worker for every
segment.

Segments are encoded apart and joined as they are, so two settings are fixed: no B-frames
(``bf=0``: each segment's decode order equals its presentation order, so decode timestamps rise
across a join) and one encoder thread (``threads=1``: an encoder's output depends on its thread
count, and a worker's cores must not change the film). Each segment begins with a keyframe that
carries its own stream headers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from mobile_engine.errors import InputError
from mobile_engine.video.source import RawPacket, VideoInfo, import_av

FIXED_OPTIONS = {"bf": "0", "threads": "1"}
DEFAULT_CODEC = "libx264"
# NOTE: crf 18 is near-transparent; veryfast costs a third of the medium preset's time (9 against
# 28 ms a stylized 480x640 frame on one core here, BENCHMARKS.md) for 18% more bytes
DEFAULT_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"}}


@dataclass(frozen=True)
class EncoderSettings:
    codec: str
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    options: dict = field(default_factory=dict)

    def open(self):
        """A new encoder context (one per segment)."""
        av = import_av()
        ctx = av.CodecContext.create(self.codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, self.pix_fmt
        ctx.time_base = self.time_base
        if self.rate:
            ctx.framerate = self.rate
        ctx.options = dict(self.options)
        return ctx

    def frame(self, bgr: np.ndarray, pts: int):
        """u8[H, W, 3] BGR -> a frame in the encoder's pixel format at ``pts``."""
        av = import_av()
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        if self.pix_fmt != "bgr24":
            frame = frame.reformat(format=self.pix_fmt)
        frame.pts, frame.time_base = pts, self.time_base
        return frame


def encoder_settings(info: VideoInfo, size: tuple[int, int], codec: str | None,
                     options: dict[str, str]) -> EncoderSettings:
    """The settings for frames of ``size`` (h, w) timed like ``info``; InputError when the
    codec is unknown, has no encoder, refuses the size or an option, or an option is fixed."""
    av = import_av()
    name = codec or DEFAULT_CODEC
    try:
        encoder = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        raise InputError(f"--codec {name}: no such encoder in this PyAV build") from None
    if encoder.type != "video":
        raise InputError(f"--codec {name}: is a {encoder.type} codec, not a video one")
    fixed = sorted(set(options) & set(FIXED_OPTIONS))
    if fixed:
        raise InputError(f"--encoder-option {fixed[0]}=...: fixed to {FIXED_OPTIONS[fixed[0]]} "
                         f"(segments are encoded apart and joined as they are)")
    formats = [f.name for f in (encoder.video_formats or ())]
    pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
    merged = {**DEFAULT_OPTIONS.get(name, {}), **options, **FIXED_OPTIONS}
    settings = EncoderSettings(name, pix_fmt, size[1], size[0], info.time_base, info.rate,
                               merged)
    _try_one_frame(settings)
    return settings


def _try_one_frame(settings: EncoderSettings) -> None:
    """Open the encoder and encode one grey frame: a bad option or size fails here, on the
    client, not on every worker."""
    av = import_av()
    try:
        ctx = settings.open()
        grey = np.full((settings.height, settings.width, 3), 128, np.uint8)
        ctx.encode(settings.frame(grey, 0))
        ctx.encode(None)
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"--codec {settings.codec}: cannot encode {settings.width}x"
                         f"{settings.height} {settings.pix_fmt} frames with options "
                         f"{settings.options} ({exc})") from None


def packets_of(encoded) -> list[RawPacket]:
    """PyAV packets -> RawPackets (bytes travel to the client; PyAV objects do not pickle)."""
    return [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in encoded]
