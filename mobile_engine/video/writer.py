"""The output file: the segments' video packets joined in order, the input's audio packets copied
unchanged (neither decoded nor encoded again: their bytes and timestamps are the input's), written
to a temporary file beside the output and renamed when complete, so a failed run leaves no half
file behind.

Audio is read from the input as the video advances (up to the end of each joined segment), so
the muxer never holds more than a segment's worth of either.
"""
from __future__ import annotations

import os
from pathlib import Path

from mobile_engine.errors import InputError
from mobile_engine.video.encoder import EncoderSettings
from mobile_engine.video.source import RawPacket, VideoInfo, import_av


class VideoWriter:
    """``write(packets, end_s)`` per segment in order, then ``finish()``; ``abort()`` on error.
    Opening checks that the output format takes the video codec and the audio streams."""

    def __init__(self, path: str | Path, source: VideoInfo, settings: EncoderSettings) -> None:
        av = import_av()
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial"
                                       f"{self.path.suffix}")
        self._source = av.open(source.path)
        try:
            self.out = av.open(str(self.tmp), "w")
        except (av.FFmpegError, ValueError) as exc:
            self._source.close()
            raise InputError(f"-o {path}: cannot write this kind of file ({exc})") from None
        try:
            self.video = self.out.add_mux_stream(settings.codec, rate=settings.rate,
                                                 width=settings.width, height=settings.height)
            self.video.time_base = settings.time_base
            self.audio = {s.index: self.out.add_stream_from_template(s)
                          for s in self._source.streams.audio}
        except (av.FFmpegError, ValueError) as exc:
            self.abort()
            raise InputError(f"-o {path}: {exc}") from None
        self._time_base = settings.time_base
        self._audio_packets = self._source.demux(*self._source.streams.audio) \
            if self.audio else iter(())
        self._pending = None

    def write(self, packets: list[RawPacket], end_s: float | None = None) -> None:
        """One segment's video packets, then the audio up to ``end_s`` (None: to the end)."""
        av = import_av()
        for data, pts, dts, keyframe in packets:
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.time_base = pts, dts, self._time_base
            packet.is_keyframe = keyframe
            packet.stream = self.video
            self.out.mux(packet)
        self._copy_audio(end_s)

    def _copy_audio(self, end_s: float | None) -> None:
        while True:
            packet = self._pending if self._pending is not None else next(self._audio_packets,
                                                                           None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None:           # the demuxer's end-of-stream marker
                continue
            if end_s is not None and packet.pts is not None \
                    and float(packet.pts * packet.time_base) >= end_s:
                self._pending = packet
                return
            packet.stream = self.audio[packet.stream.index]
            self.out.mux(packet)

    def finish(self) -> Path:
        """The rest of the audio, the trailer, and the rename to the output path."""
        self._copy_audio(None)
        self.out.close()
        self._source.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        for container in (self.out, self._source):
            try:
                container.close()
            except Exception:        # NOTE: closing after a failure: the first error is the one
                pass
        self.tmp.unlink(missing_ok=True)

