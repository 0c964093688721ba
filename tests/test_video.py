"""`mobile-engine video`: a clip made here through a tiny plan on local Dask workers, checked
against an independent single-process run (plain PyAV + one Session, tests/video_clips.py):
every frame equal (lossless output codec), the same timestamps, the audio packets byte for byte;
and a worker process killed mid-segment changes nothing."""
import logging
import os
import signal

import numpy as np
import pytest

pytest.importorskip("av")
distributed = pytest.importorskip("distributed")

import mobile_engine as me  # noqa: E402
from mobile_engine.cli import main  # noqa: E402
from mobile_engine.ir import GraphBuilder, Op  # noqa: E402
from mobile_engine.video.effect import EffectChoice  # noqa: E402
from mobile_engine.video.job import run_video  # noqa: E402
from mobile_engine.video.source import probe, segments  # noqa: E402
from tests.video_clips import audio_packets, decode, make_clip, reference  # noqa: E402

SIZE = (64, 96)
LOSSLESS = {"codec": "libx264rgb", "encoder_options": {"qp": "0"}}   # RGB in, the same RGB out
SEGMENT_S = 0.3           # 9 frames at 30 fps: a 90-frame clip with a keyframe every 10 frames
                          # gives 9 segments


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(clip, tiny plan): an H.264 + AAC clip, a 3x3 conv + sigmoid plan on NHWC RGB 0..1."""
    folder = tmp_path_factory.mktemp("video")
    clip = folder / "clip.mp4"
    make_clip(clip, size=SIZE)
    rng = np.random.default_rng(0)
    b = GraphBuilder("tiny")
    x = b.input("x", (1, *SIZE, 3))
    y = b.node(Op.CONV2D, x, b.const(rng.normal(0, 0.4, (3, 3, 3, 3)).astype(np.float32)),
               b.const(np.full(3, 0.1, np.float32)), pads=(1, 1, 1, 1), pad_mode="reflect")
    plan = folder / "tiny.mplan"
    me.compile(b.build(b.node(Op.SIGMOID, y))).save(plan)
    return clip, plan


@pytest.fixture(scope="module")
def expected(files):
    return reference(*files)


def check_output(out, clip, expected):
    """Every frame equal to the reference, same timestamps and time base, audio unchanged."""
    got = decode(out)
    assert len(got.frames) == len(expected.frames) == 90
    assert got.pts == expected.pts and got.time_base == expected.time_base
    for k, (a, b) in enumerate(zip(got.frames, expected.frames)):
        assert np.array_equal(a, b), f"frame {k} differs (max {np.abs(a.astype(int) - b).max()})"
    assert audio_packets(out) == audio_packets(clip)


def test_segments_start_at_keyframes_and_hold_every_packet(files):
    clip, _ = files
    info = probe(clip)
    parts = list(segments(info, min_frames=9))
    assert len(parts) >= 5
    assert [s.index for s in parts] == list(range(len(parts)))
    assert all(s.packets[0][3] for s in parts)                       # a keyframe first
    assert all(s.frames >= 9 for s in parts[:-1])
    import av
    with av.open(str(clip)) as c:
        demuxed = [(bytes(p), p.pts, p.dts) for p in c.demux(video=0) if p.size]
    assert [p[:3] for s in parts for p in s.packets] == demuxed      # nothing lost or doubled


def test_one_worker_equals_the_single_process_reference(files, expected, tmp_path, capsys):
    clip, plan = files
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), "--plan", str(plan), "--workers", "1",
                 "--segment-seconds", str(SEGMENT_S), "--codec", "libx264rgb",
                 "--encoder-option", "qp=0", "--no-progress"]) == 0
    assert "90 frames" in capsys.readouterr().out
    check_output(out, clip, expected)


def _listening(pids: set[int]) -> set[str]:
    import psutil
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_local_worker_processes_listen_on_loopback_only(files, expected, tmp_path):
    clip, plan = files
    import psutil
    seen = set()

    def look(_encoded):
        me_and_children = {os.getpid()} | {p.pid for p in
                                           psutil.Process().children(recursive=True)}
        seen.update(_listening(me_and_children))

    out = tmp_path / "out.mp4"
    report = run_video(str(clip), out, EffectChoice("plan", plan=str(plan)), workers=2,
                       segment_s=SEGMENT_S, progress=False, on_segment=look, **LOSSLESS)
    assert seen == {"127.0.0.1"}
    assert report.task_slots == 2 and report.segments >= 5
    check_output(out, clip, expected)


def run_killing_a_worker(files, expected, out):
    """A LocalCluster of 2 worker processes; when the first segment is joined, a worker busy
    with another segment is killed (SIGKILL). Returns {segment index: host:pid that made it}."""
    clip, plan = files
    made_by, killed = {}, {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:

        def kill_once(encoded):
            made_by[encoded.index] = encoded.worker
            if killed:
                return
            busy = {a: keys for a, keys in client.processing().items() if keys}
            address, keys = next(iter(busy.items()))
            pid = client.run(os.getpid, workers=[address])[address]
            killed.update(pid=pid, segments={int(k.rsplit("-", 1)[1]) for k in keys})
            os.kill(pid, signal.SIGKILL)

        run_video(str(clip), out, EffectChoice("plan", plan=str(plan)),
                  cluster=cluster.scheduler_address, segment_s=SEGMENT_S, progress=False,
                  on_segment=kill_once, **LOSSLESS)
    assert killed, "no worker was killed"
    redone = {made_by[i] for i in killed["segments"]}
    assert all(not w.endswith(f":{killed['pid']}") for w in redone), redone
    check_output(out, files[0], expected)


def test_a_worker_killed_mid_segment_changes_nothing(files, expected, tmp_path):
    run_killing_a_worker(files, expected, tmp_path / "out.mp4")


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(5))
def test_a_worker_killed_mid_segment_changes_nothing_repeatedly(files, expected, tmp_path,
                                                                 attempt):
    run_killing_a_worker(files, expected, tmp_path / "out.mp4")


@pytest.mark.parametrize("args, message", [
    (["missing.mp4"], "missing.mp4: no such file"),
    (["PLAN"], "not a video file PyAV can read"),
    (["CLIP", "--style", "26"], "style index must be 0 to 25"),
    (["CLIP", "--codec", "nosuchcodec"], "--codec nosuchcodec: no such encoder"),
    (["CLIP", "--codec", "aac"], "is a audio codec"),
    (["CLIP", "--effect", "sparkle"], "--effect sparkle: use one of"),
    (["CLIP", "--plan", "PLAN", "--size", "32x32"], "the plan writes 64x96 frames"),
    (["CLIP", "--plan", "PLAN", "--encoder-option", "bf=3"], "bf=...: fixed to 0"),
])
def test_bad_input_is_one_line_before_any_work(files, tmp_path, capsys, args, message):
    clip, plan = files
    args = [str(clip) if a == "CLIP" else str(plan) if a == "PLAN" else a for a in args]
    out = tmp_path / "out.mp4"
    assert main(["video", *args, "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []                  # no output, no partial file


def test_an_unreachable_cluster_is_one_line(files, tmp_path, capsys, monkeypatch):
    from mobile_engine.cluster import connect
    monkeypatch.setattr(connect, "CONNECT_TIMEOUT_S", 1)
    clip, plan = files
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), "--plan", str(plan), "--cluster",
                 "tcp://127.0.0.1:9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--cluster tcp://127.0.0.1:9: no Dask scheduler answers" in err
    assert len(err.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_style_7_equals_the_plan_run_frame_by_frame(files, multistyle26_path, tmp_path):
    """The demo's style effect: the multistyle26 plan the command compiled, run here on each
    decoded frame (RGB 0..1 NCHW, style_weights one-hot at 7), within one level of rounding."""
    clip, _ = files
    out, cache = tmp_path / "out.mp4", tmp_path / "plans"
    assert main(["video", str(clip), "-o", str(out), "--style", "7", "--workers", "1",
                 "--plan-cache", str(cache), "--codec", "libx264rgb", "--encoder-option",
                 "qp=0", "--no-progress"]) == 0
    (plan,) = cache.glob("multistyle26-*-64x96-fp32-*.mplan")
    session = me.Session(plan, threads=1)
    weights = np.zeros(26, np.float32)
    weights[7] = 1
    got = decode(out)
    source = decode(clip)
    assert got.pts == source.pts and len(got.frames) == 90
    for k in (0, 45, 89):
        x = (source.frames[k].astype(np.float32) / np.float32(255)).transpose(2, 0, 1)[None]
        (y,) = session.run(None, {"image": np.ascontiguousarray(x), "style_weights": weights})
        want = (np.clip(y[0].transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
        assert np.abs(got.frames[k].astype(int) - want).max() <= 1, k
    assert audio_packets(out) == audio_packets(clip)


def test_the_client_reads_a_bounded_window_of_segments_ahead(files, tmp_path, monkeypatch):
    """Memory does not grow with the length: the client reads the next segment only as one is
    joined, at most 2 x task slots ahead (1 worker thread here: 2)."""
    from mobile_engine.video import job
    clip, plan = files
    read, ahead = [], []

    def counted(info, min_frames):
        for segment in segments(info, min_frames):
            read.append(segment.index)
            yield segment

    monkeypatch.setattr(job, "segments", counted)
    report = run_video(str(clip), tmp_path / "out.mp4", EffectChoice("plan", plan=str(plan)),
                       workers=1, threads=1, segment_s=SEGMENT_S, progress=False,
                       on_segment=lambda e: ahead.append(len(read) - e.index - 1))
    assert report.segments == len(read) >= 5
    assert max(ahead) <= 2 and ahead[0] == 2                 # the window, and no more
