"""One segment on a worker: decode its compressed packets, run the effect on every frame, encode
the frames, return the compressed packets. Frames stay in the worker: one decoded frame, its
effect and its encoder input live at a time, so memory does not grow with the segment.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mobile_engine.cluster.plans import Shipped
from mobile_engine.errors import InputError
from mobile_engine.video.effect import FrameJob, frame_effect
from mobile_engine.video.encoder import EncoderSettings, packets_of
from mobile_engine.video.source import RawPacket, Segment, VideoInfo, import_av


@dataclass(frozen=True)
class VideoJob:
    """Everything a task needs besides its segment and the shipped files (small: sent with
    every task)."""
    source: VideoInfo
    encoder: EncoderSettings
    frames: FrameJob
    threads: int                  # of each worker's Sessions


@dataclass
class EncodedSegment:
    index: int
    packets: list[RawPacket]
    frames: int
    seconds: float                # the task's wall time on its worker
    worker: str                   # host:pid, for the run's report


def process_segment(job: VideoJob, segment: Segment, files: dict[str, Shipped]) -> EncodedSegment:
    """The task (runs on a worker): ``segment`` decoded, processed and encoded again."""
    t0 = time.perf_counter()
    effect = frame_effect(job.frames, files, job.threads)
    encoder = job.encoder.open()
    packets: list[RawPacket] = []
    frames = 0
    for frame in _decoded(job.source, segment):
        if frame.pts is None:
            raise InputError(f"{job.source.path}: segment {segment.index} has a frame without a "
                             f"timestamp; remux the file (e.g. to .mkv) first")
        out = effect(frame.to_ndarray(format="bgr24"))
        packets += packets_of(encoder.encode(job.encoder.frame(out, frame.pts)))
        frames += 1
    packets += packets_of(encoder.encode(None))
    if frames != segment.frames:
        raise InputError(f"{job.source.path}: segment {segment.index} decoded to {frames} "
                         f"frames from {segment.frames} packets (frames that refer across a "
                         f"keyframe, an open GOP?); re-encode the file with closed GOPs")
    return EncodedSegment(segment.index, packets, frames, time.perf_counter() - t0,
                          f"{os.uname().nodename}:{os.getpid()}")


def _decoded(source: VideoInfo, segment: Segment):
    """The segment's frames in presentation order, from a decoder of its own."""
    av = import_av()
    decoder = av.CodecContext.create(source.codec, "r")
    decoder.extradata = source.extradata
    decoder.width, decoder.height = source.width, source.height
    for data, pts, dts, keyframe in segment.packets:
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = pts, dts, source.time_base
        packet.is_keyframe = keyframe
        yield from decoder.decode(packet)
    yield from decoder.decode(None)
