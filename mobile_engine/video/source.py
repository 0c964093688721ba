"""The input video: checked once on the client before any work is scheduled, then read as
compressed packets only (the client never decodes the film) and split into segments at
keyframes. A segment holds the packets of one or more whole groups of pictures, in decode order,
so a worker decodes it without anything before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from mobile_engine.errors import InputError

# (bytes, pts, dts, is keyframe): a compressed packet in the video stream's time base
RawPacket = tuple[bytes, int | None, int | None, bool]


@dataclass(frozen=True)
class VideoInfo:
    path: str
    codec: str                  # the decoder's name, e.g. "h264"
    extradata: bytes | None     # the decoder's set-up (SPS/PPS, ...), from the container
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None       # average frames per second, when the container says
    frames: int                 # frame count as the container states it (0: unknown)
    duration_s: float
    audio_streams: int
    other_streams: int          # subtitles, data: not copied

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width


@dataclass
class Segment:
    """Consecutive groups of pictures, in decode order; ``index`` orders the join."""
    index: int
    packets: list[RawPacket]
    end_s: float = 0.0          # the latest presentation time it covers (seconds)

    @property
    def frames(self) -> int:
        return len(self.packets)


def import_av():
    """PyAV, or an InputError saying which extra installs it."""
    try:
        import av
    except ImportError:
        raise InputError("the video command needs PyAV: pip install 'mobile-engine[video]'") \
            from None
    return av


def probe(path: str | Path) -> VideoInfo:
    """The facts of ``path``'s first video stream; InputError (one line) when it is missing, not
    a video PyAV opens, has no video stream, a codec without a decoder, or a first frame that
    does not decode."""
    av = import_av()
    path = str(path)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        container = av.open(path)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a video file PyAV can read ({exc})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:
            raise InputError(f"{path}: video codec {stream.codec_tag or '?'!r} has no decoder "
                             f"in this PyAV build")
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise InputError(f"{path}: the {ctx.name} video does not decode ({exc})") from None
        if first is None:
            raise InputError(f"{path}: the video stream holds no frame")
        duration = (float(stream.duration * stream.time_base) if stream.duration
                    else container.duration / 1e6 if container.duration else 0.0)
        return VideoInfo(path, ctx.name, ctx.extradata, ctx.width, ctx.height,
                         stream.time_base, stream.average_rate, stream.frames, duration,
                         len(container.streams.audio),
                         len(container.streams) - 1 - len(container.streams.audio))


def segments(info: VideoInfo, min_frames: int) -> Iterator[Segment]:
    """The video's packets, read one by one, in segments that start at a keyframe and hold at
    least ``min_frames`` frames (the last one may hold fewer); one segment in memory at a time."""
    av = import_av()
    with av.open(info.path) as container:
        stream = container.streams.video[0]
        packets: list[RawPacket] = []
        end = 0
        index = 0
        for p in container.demux(stream):
            if p.size == 0:             # the demuxer's end-of-stream marker
                continue
            if p.is_keyframe and len(packets) >= min_frames:
                yield Segment(index, packets, float(end * info.time_base))
                index, packets = index + 1, []
            packets.append((bytes(p), p.pts, p.dts, p.is_keyframe))
            if p.pts is not None:
                end = max(end, p.pts + (p.duration or 0))
        if packets:
            yield Segment(index, packets, float(end * info.time_base))
