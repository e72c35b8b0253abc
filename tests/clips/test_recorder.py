"""ClipRecorder on real H.264 packets (with B-frames): pre/post-capture cut at key frames, shared recordings,
the cap, new demux sessions, a disk that refuses, and clips a player opens and decodes frame by frame."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.clips.helpers import FPS, Clock, Demuxed, demux, probe, render
from trtseg.clips.layout import ClipLayout
from trtseg.clips.packet_ring import PacketRing
from trtseg.clips.recorder import STALL_S, ClipRecorder

GOP = 25  # a key frame every second


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Demuxed:
    clip = demux(render(tmp_path_factory.mktemp("clips") / "src.mp4", seconds=8.0, gop=GOP))
    assert clip.stream.codec_context.has_b_frames, "the source must have B-frames for the cut tests"
    yield clip
    clip.container.close()


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Demuxed:
    clip = demux(render(tmp_path_factory.mktemp("clips") / "src_small.mp4", seconds=2.0, size=(160, 96), gop=GOP))
    yield clip
    clip.container.close()


class Camera:
    """A ring and a recorder on a shared clock; packets arrive one frame step apart, the recorder steps each time."""

    def __init__(self, clip_dir: Path, source: Demuxed, hold_s: float = 0.4, **recorder: float) -> None:
        self.clock = Clock()
        self.source = source
        self.ring = PacketRing(lookback_s=3.0, max_bytes=50_000_000, clock=self.clock)
        options = {"pre_capture_s": 1.0, "post_capture_s": 1.0, "max_clip_s": 60.0, **recorder}
        self.recorder = ClipRecorder(
            self.ring, clip_dir, "cam1", "site A", hold_s=hold_s, clock=self.clock, start_thread=False, **options
        )
        self.index = 0
        self.ring.begin_session(source.stream)

    def run(self, seconds: float, source: Demuxed | None = None) -> None:
        for _ in range(round(seconds * FPS)):
            clip = source or self.source
            if self.index >= len(clip.packets):  # the file's end: a new demux session, as a looping decoder has
                self.index = 0
                self.ring.begin_session(clip.stream)
            data, pts, dts, duration, key = clip.packets[self.index]
            self.index += 1
            self.clock.now += 1.0 / FPS
            self.ring.add(data, pts, dts, duration, key, ts=self.clock.now)
            self.recorder.step()

    def switch(self, source: Demuxed) -> None:
        self.source, self.index = source, 0
        self.ring.begin_session(source.stream)

    def clip_path(self) -> Path:
        info = self.recorder.last_clip
        assert info is not None and info.clip, self.recorder.stats()
        return ClipLayout(self.recorder.layout.root).resolve(info.clip)


def _contiguous(frames: list[tuple[int, bool]]) -> bool:
    steps = {b[0] - a[0] for a, b in itertools.pairwise(frames)}
    return len(steps) == 1


def test_pre_and_post_capture_cut_at_key_frames(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.5)
    opened = cam.clock.now - 0.2
    assert cam.recorder.start("inc1", opened) is not None
    cam.run(2.0)
    closed = cam.clock.now - 0.1
    assert cam.recorder.stop("inc1", closed)
    cam.run(2.0)
    info = cam.recorder.last_clip
    assert info is not None and info.ended_by == "post_capture" and not info.capped, cam.recorder.stats()
    # It begins at the last key frame at or before opened - pre_capture, and ends just after closed + post.
    assert opened - 1.0 - 1.0 - 1e-6 <= info.start_ts <= opened - 1.0
    assert closed + 1.0 - 1.0 / FPS - 1e-6 <= info.end_ts <= closed + 1.0 + 0.2
    seen = probe(cam.clip_path())
    frames = seen["frames"]
    assert frames[0][1], "a clip starts with a key frame"
    assert _contiguous(frames), "every picture from the first to the last, in display order"
    assert len(frames) == info.packets
    assert seen["duration"] == pytest.approx(len(frames) / FPS, abs=0.05)
    assert seen["moov_first"], "faststart: the index comes before the media"
    assert seen["codec"] == "h264" and seen["width"] == 320
    sidecar = json.loads(cam.clip_path().with_suffix(".json").read_text())
    assert sidecar["incident_ids"] == ["inc1"] and sidecar["capped"] is False and sidecar["clip"] == info.clip
    pointer = cam.recorder.layout.read_pointer("inc1")
    assert pointer is not None and pointer["status"] == "ready" and pointer["clip"] == info.clip
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file is left behind"


def test_overlapping_incidents_share_one_recording(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.0)
    first = cam.recorder.start("a", cam.clock.now)
    cam.run(1.0)
    second = cam.recorder.start("b", cam.clock.now)
    assert first == second
    pointer = None
    cam.recorder.step()
    pointer = cam.recorder.layout.read_pointer("b")
    assert pointer is not None and pointer["status"] == "recording"
    cam.recorder.stop("a", cam.clock.now)
    cam.run(2.0)  # past a's post-capture, b still open: the recording goes on
    assert cam.recorder.stats()["recording"] is not None
    cam.recorder.stop("b", cam.clock.now)
    cam.run(1.5)
    stats = cam.recorder.stats()
    assert stats["clips"] == 1 and stats["recordings"] == 1 and stats["recording"] is None
    layout = cam.recorder.layout
    assert layout.read_pointer("a")["clip"] == layout.read_pointer("b")["clip"]  # type: ignore[index]
    assert sorted(cam.recorder.last_clip.incident_ids) == ["a", "b"]  # type: ignore[union-attr]
    assert len(list(tmp_path.rglob("*.mp4"))) == 1
    frames = probe(cam.clip_path())["frames"]
    assert frames[0][1] and _contiguous(frames)
    assert cam.recorder.last_clip.duration_s == pytest.approx(1.0 + 1.0 + 3.0 + 1.0, abs=1.1)  # type: ignore[union-attr]
    # A stop for an incident no recording holds, a start for one already recorded: harmless.
    assert not cam.recorder.stop("zzz", cam.clock.now)
    assert cam.recorder.start("a", cam.clock.now) == first and cam.recorder.stats()["recording"] is None


def test_a_long_recording_is_capped(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source, max_clip_s=2.0)
    cam.run(2.0)
    cam.recorder.start("long", cam.clock.now)
    cam.run(5.0)
    info = cam.recorder.last_clip
    assert info is not None and info.capped and info.ended_by == "capped"
    assert 2.0 <= info.duration_s <= 2.0 + 0.5
    assert json.loads(cam.clip_path().with_suffix(".json").read_text())["capped"] is True
    assert not cam.recorder.stop("long", cam.clock.now), "its recording is finished"
    assert cam.recorder.start("long", cam.clock.now) == info.recording_id, "and no second one starts for it"
    frames = probe(cam.clip_path())["frames"]
    assert frames[0][1] and _contiguous(frames)


def test_hold_back_while_open_and_flush_on_close(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source, hold_s=1.0)
    cam.run(1.5)
    cam.recorder.start("x", cam.clock.now)
    cam.run(2.0)
    rec = cam.recorder._current
    assert rec is not None and rec.last_ts is not None and rec.last_ts <= cam.clock.now - 1.0
    info = cam.recorder.close()
    assert info is not None and info.ended_by == "stopped" and info.end_ts == pytest.approx(cam.clock.now)
    assert cam.recorder.start("y", cam.clock.now) is None, "a closed recorder takes no more"
    frames = probe(cam.clip_path())["frames"]
    assert frames[0][1] and _contiguous(frames)


def test_a_new_session_of_the_same_stream_continues_the_clip(tmp_path: Path, small_source: Demuxed) -> None:
    """A looping file (or a reconnect): the clip goes on over the new session with timestamps that keep rising."""
    cam = Camera(tmp_path, small_source)
    cam.run(1.2)
    cam.recorder.start("loop", cam.clock.now)
    cam.run(2.0)  # the 2 s source ends and starts again inside the recording
    cam.recorder.stop("loop", cam.clock.now)
    cam.run(1.5)
    info = cam.recorder.last_clip
    assert info is not None and info.ended_by == "post_capture" and cam.ring.stats()["sessions"] >= 2
    frames = probe(cam.clip_path())["frames"]
    assert len(frames) == info.packets
    assert all(b[0] > a[0] for a, b in itertools.pairwise(frames))


def test_a_changed_stream_ends_the_clip_and_open_incidents_go_on(
    tmp_path: Path, source: Demuxed, small_source: Demuxed
) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.0)
    cam.recorder.start("resized", cam.clock.now)
    cam.run(1.5)
    cam.switch(small_source)  # another resolution: MP4 cannot hold both in one track
    cam.run(1.0)
    first = cam.recorder.last_clip
    assert first is not None and first.ended_by == "source_changed" and first.width == 320
    assert cam.recorder.stats()["recording"] is not None, "the incident is still open: a new recording holds it"
    cam.recorder.stop("resized", cam.clock.now)
    cam.run(1.5)
    second = cam.recorder.last_clip
    assert second is not None and second.recording_id != first.recording_id and second.width == 160
    assert probe(cam.clip_path())["frames"][0][1]


def test_no_key_frame_yet_waits_for_the_first(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source)
    cam.index = 5  # the source joined mid-GOP
    cam.run(0.4)
    cam.recorder.start("early", cam.clock.now)
    cam.run(1.5)
    cam.recorder.stop("early", cam.clock.now)
    cam.run(1.5)
    info = cam.recorder.last_clip
    assert info is not None and info.pre_capture_short and info.clip
    assert probe(cam.clip_path())["frames"][0][1]


def test_a_stalled_source_finishes_with_what_it_has(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.0)
    cam.recorder.start("stalled", cam.clock.now)
    cam.run(1.0)
    cam.recorder.stop("stalled", cam.clock.now)  # the camera goes silent before the post-capture came
    cam.recorder.step()
    assert cam.recorder.stats()["recording"] is not None
    cam.clock.now += STALL_S + 5.0
    cam.recorder.step()
    info = cam.recorder.last_clip
    assert info is not None and info.ended_by == "stalled" and info.clip


def test_an_unwritable_disk_fails_the_clip_only(tmp_path: Path, source: Demuxed) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the clip directory should be")
    cam = Camera(blocker / "clips", source)
    cam.run(2.0)
    assert cam.recorder.start("doomed", cam.clock.now) is not None  # never raises into the caller
    cam.run(1.0)
    assert cam.recorder.stop("doomed", cam.clock.now) is False  # the failed recording is gone
    stats = cam.recorder.stats()
    assert stats["failures"] == 1 and not stats["ok"] and "NotADirectoryError" in stats["last_error"]
    assert stats["recording"] is None and stats["last_clip"]["ended_by"] == "failed"
    cam.run(1.0)  # frames keep coming, nothing else stops


def test_a_full_disk_fails_at_close_and_removes_the_partial_file(
    tmp_path: Path, source: Demuxed, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.0)
    cam.recorder.start("full", cam.clock.now)
    cam.run(1.0)
    cam.recorder.stop("full", cam.clock.now)

    def no_space(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("trtseg.clips.clip_writer.write_json", no_space)  # the sidecar, after the MP4
    cam.run(1.5)
    stats = cam.recorder.stats()
    assert stats["failures"] == 1 and "No space left" in stats["last_error"]
    assert not list(tmp_path.rglob("*.mp4")) and not list(tmp_path.rglob("*.tmp"))
    pointer = cam.recorder.layout.read_pointer("full")
    assert pointer is not None and pointer["status"] == "failed" and "No space" in pointer["error"]
    monkeypatch.undo()
    cam.recorder.start("next", cam.clock.now)  # the next incident tries again
    cam.run(1.0)
    cam.recorder.stop("next", cam.clock.now)
    cam.run(1.5)
    assert cam.recorder.stats()["clips"] == 1 and cam.recorder.stats()["ok"]


def test_the_recorder_thread_writes_on_its_own(tmp_path: Path, source: Demuxed) -> None:
    clock = Clock()
    ring = PacketRing(lookback_s=3.0, max_bytes=50_000_000, clock=clock)
    recorder = ClipRecorder(ring, tmp_path, "cam1", pre_capture_s=1.0, post_capture_s=0.5, hold_s=0.2, clock=clock)
    try:
        ring.begin_session(source.stream)
        for i, (data, pts, dts, duration, key) in enumerate(source.packets[:100]):
            clock.now += 1.0 / FPS
            ring.add(data, pts, dts, duration, key, ts=clock.now)
            if i == 40:
                recorder.start("t", clock.now)
            if i == 70:
                recorder.stop("t", clock.now)
        import time

        deadline = time.monotonic() + 5.0
        while recorder.stats()["clips"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert recorder.stats()["clips"] == 1
    finally:
        recorder.close()


def test_a_recording_left_by_a_dead_process_is_marked_failed(tmp_path: Path, source: Demuxed) -> None:
    cam = Camera(tmp_path, source)
    cam.run(2.0)
    cam.recorder.start("orphan", cam.clock.now)
    cam.run(1.0)  # the process dies here: no close, the temporary file and the marker stay
    assert list(tmp_path.rglob("*.tmp")) and cam.recorder.layout.read_pointer("orphan")["status"] == "recording"  # type: ignore[index]
    later = ClipRecorder(PacketRing(3.0, 10**7), tmp_path, "cam1", "site A", start_thread=False)
    assert later.recover() == 1 and later.recover() == 0
    pointer = later.layout.read_pointer("orphan")
    assert pointer is not None and pointer["status"] == "failed" and "interrupted" in pointer["error"]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".active-*"))
    # A finished recording leaves no marker behind.
    cam.recorder.stop("orphan", cam.clock.now)
    cam.run(2.0)
    assert not list(tmp_path.rglob(".active-*"))
