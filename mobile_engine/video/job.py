"""``mobile-engine video``: one video file through an effect on a Dask cluster, written as a new
file with the input's audio and frame timing.

Order of work: everything that can fail on the user's input is checked first (the file, its
codec, the effect and its plans, the encoder, the output format), then the cluster starts (or is
reached), the plans are sent once, and segments go out in a bounded window (twice the cluster's
task slots) and are joined strictly in order as they come back. A worker that dies mid-segment
has its segment run again elsewhere by Dask's scheduler (its own retry of tasks whose worker was
lost); only the first result of a segment is ever joined, so nothing is lost or doubled.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mobile_engine.cluster.connect import cluster_client
from mobile_engine.cluster.plans import ship
from mobile_engine.errors import EngineError, InputError
from mobile_engine.video.effect import EffectChoice, prepare
from mobile_engine.video.encoder import encoder_settings
from mobile_engine.video.source import probe, segments
from mobile_engine.video.task import EncodedSegment, VideoJob, process_segment
from mobile_engine.video.writer import VideoWriter

DEFAULT_SEGMENT_S = 2.0          # NOTE: long enough that a task's fixed costs vanish
FRAMES_WITHOUT_RATE = 60         # segment length when the container gives no frame rate


@dataclass
class VideoReport:
    output: Path
    frames: int = 0
    segments: int = 0
    task_slots: int = 0
    threads: int = 1
    startup_s: float = 0.0       # cluster start or connection, plans sent
    seconds: float = 0.0         # first segment sent -> output complete
    split_s: float = 0.0         # client: reading packets into segments and sending them
    join_s: float = 0.0          # client: writing the returned packets and the audio
    workers: dict = field(default_factory=dict)    # host:pid -> segments it returned

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def overhead(self) -> float:
        """The client's split and join time as a share of the run."""
        return (self.split_s + self.join_s) / self.seconds if self.seconds else 0.0

    def text(self) -> str:
        return (f"wrote {self.output}: {self.frames} frames in {self.seconds:.1f} s "
                f"({self.fps:.2f} frames/s), {self.segments} segments on {self.task_slots} "
                f"task slots x {self.threads} threads ({len(self.workers)} worker processes); "
                f"start-up {self.startup_s:.1f} s; split {self.split_s:.2f} s + join "
                f"{self.join_s:.2f} s = {100 * self.overhead:.1f}% of the run")


def run_video(input_path: str, output: str | Path, choice: EffectChoice, workers: int = 1,
              cluster: str | None = None, threads: int | None = None,
              codec: str | None = None, encoder_options: dict[str, str] | None = None,
              segment_s: float = DEFAULT_SEGMENT_S, progress: bool | None = None,
              on_segment: Callable[[EncodedSegment], None] | None = None) -> VideoReport:
    """Process ``input_path`` into ``output`` with the effect ``choice`` (see the module) on
    ``workers`` local workers or the scheduler at ``cluster``; ``threads`` per Session
    (default: 1, or all the CPUs Numba may use with one local worker); ``on_segment`` sees each
    result as it is joined."""
    info = probe(input_path)
    if Path(output).resolve() == Path(input_path).resolve():
        raise InputError(f"-o {output}: is the input file; give another name")
    if segment_s <= 0:
        raise InputError(f"--segment-seconds {segment_s}: must be positive")
    if cluster is None and workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    size = choice.frame_size(info.size)
    settings = encoder_settings(info, size, codec, encoder_options or {})
    threads = threads or _default_threads(workers, cluster)
    min_frames = (max(1, round(segment_s * info.rate)) if info.rate
                  else FRAMES_WITHOUT_RATE)
    report = VideoReport(Path(output), threads=threads)
    writer = VideoWriter(output, info, settings)      # NOTE: checks the format takes the codecs
    try:
        frame_job, files = prepare(choice, size)
        job = VideoJob(info, settings, frame_job, threads)
        t0 = time.perf_counter()
        with cluster_client(cluster, workers) as client:
            shipped = ship(client, files)
            slots = sum(w["nthreads"] for w in
                        client.scheduler_info(n_workers=-1)["workers"].values())
            report.task_slots, report.startup_s = slots, time.perf_counter() - t0
            _run_segments(client, job, shipped, segments(info, min_frames), writer, report,
                          window=2 * max(slots, 1), total=_frame_estimate(info),
                          progress=progress, on_segment=on_segment)
            writer.finish()
            report.seconds = time.perf_counter() - t0 - report.startup_s
    except BaseException:
        writer.abort()
        raise
    return report


def _run_segments(client, job, shipped, source, writer, report, window, total, progress,
                  on_segment) -> None:
    from tqdm import tqdm
    run = uuid.uuid4().hex[:8]
    pending: deque = deque()

    def send_next() -> None:
        t = time.perf_counter()
        segment = next(source, None)
        if segment is not None:
            future = client.submit(process_segment, job, segment, shipped, pure=False,
                                   key=f"video-{run}-segment-{segment.index}")
            pending.append((segment.index, segment.end_s, future))
        report.split_s += time.perf_counter() - t

    for _ in range(window):
        send_next()
    with tqdm(total=total or None, unit="frame", disable=None if progress is None
              else not progress, desc=f"video {job.frames.describe()}") as bar:
        while pending:
            index, end_s, future = pending.popleft()
            encoded = _result(index, future)
            send_next()
            t = time.perf_counter()
            writer.write(encoded.packets, end_s)
            report.join_s += time.perf_counter() - t
            report.frames += encoded.frames
            report.segments += 1
            report.workers[encoded.worker] = report.workers.get(encoded.worker, 0) + 1
            bar.update(encoded.frames)
            if on_segment is not None:
                on_segment(encoded)


def _result(index: int, future) -> EncodedSegment:
    """The segment's result; an engine error as it is, anything else (a worker lost too often,
    a decoder failure) as one EngineError naming the segment."""
    try:
        return future.result()
    except EngineError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise EngineError(f"segment {index} failed: {type(exc).__name__}: {text}") from exc


def _frame_estimate(info) -> int:
    if info.frames:
        return info.frames
    return round(info.duration_s * info.rate) if info.rate else 0


def _default_threads(workers: int, cluster: str | None) -> int:
    """One thread per Session when segments run side by side; one local worker uses every CPU
    Numba may use."""
    if cluster is None and workers == 1:
        import numba
        return numba.config.NUMBA_NUM_THREADS
    return 1
