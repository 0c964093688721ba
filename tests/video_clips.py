"""Test clips made with PyAV in the test itself (no media is committed), and the independent
reference of the video command: plain PyAV decoding and one Session, frame by frame, in this
process (no segments, no Dask, none of mobile_engine.video)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

SAMPLE_RATE = 48000


def _av():
    import av as module
    return module


def make_clip(path, frames: int = 90, size=(64, 96), fps: int = 30, gop: int = 10,
              audio: bool = True) -> None:
    """A moving colour pattern in H.264 (B-frames, a keyframe at least every ``gop`` frames)
    with a stereo AAC tone."""
    av = _av()
    h, w = size
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.codec_context.gop_size = gop
        video.codec_context.options = {"bf": "2"}
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo") if audio else None
        sample = 0
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (np.arange(w) * 3 + i * 5) % 256
            img[..., 1] = (np.arange(h)[:, None] * 4 + i * 7) % 256
            img[..., 2] = (i * 11) % 256
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
            while sound is not None and sample < (i + 1) * SAMPLE_RATE // fps:
                t = (np.arange(1024) + sample) / SAMPLE_RATE
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                                   layout="stereo")
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, sample
                out.mux(sound.encode(chunk))
                sample += 1024
        out.mux(video.encode())
        if sound is not None:
            out.mux(sound.encode())


@dataclass
class Decoded:
    pts: list[int]
    time_base: Fraction
    frames: list[np.ndarray]         # u8[H, W, 3] RGB


def decode(path) -> Decoded:
    av = _av()
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
        return Decoded([p for p, _ in frames], stream.time_base, [f for _, f in frames])


def audio_packets(path) -> list[tuple[bytes, int, int]]:
    """(bytes, pts, dts) of every audio packet, in file order."""
    av = _av()
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts, p.dts) for p in c.demux(audio=0) if p.size]


def reference(path, plan, input_name: str = "x") -> Decoded:
    """The clip through an NHWC float plan (RGB 0..1 in, 0..1 out), one Session, one process."""
    import mobile_engine as me
    decoded = decode(path)
    session = me.Session(plan, threads=1)
    out = []
    for rgb in decoded.frames:
        (y,) = session.run(None, {input_name: (rgb.astype(np.float32) / np.float32(255))[None]})
        out.append((np.clip(y[0], 0, 1) * 255 + 0.5).astype(np.uint8))
    return Decoded(decoded.pts, decoded.time_base, out)
