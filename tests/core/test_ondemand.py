"""Streams on demand without Ray: the gate's state machine, and CameraOutput with a real FFmpeg HLS
encoder that starts only when a viewer asks and stops after the idle time, while events, incidents and
their key frames keep coming from every frame."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.analytics.helpers import NAMES, H, W, cable_at, camera, objects
from tests.analytics.test_rules import FAST_TRACKER, ORIGIN
from trtseg.analytics.records import IncidentRecord
from trtseg.config import CameraConfig, PusherConfig
from trtseg.events import EventRecord
from trtseg.frames import Frame
from trtseg.ondemand import DemandGate, remove_hls_files
from trtseg.pipeline import CameraOutput
from trtseg.push import encoder_available

FPS = 10.0
needs_x264 = pytest.mark.skipif(not encoder_available(), reason="FFmpeg with libx264 is missing")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_on_demand_gate_starts_on_a_viewer_and_stops_after_idle() -> None:
    clock = Clock()
    gate = DemandGate("on_demand", idle_s=30.0, clock=clock)
    assert not gate.active() and gate.stats()["starts"] == 0
    assert gate.watch("hls:1") is False, "nothing was flowing before this viewer"
    assert gate.active() and gate.starts == 1
    assert gate.watch("mjpeg:2") is True
    clock.now += 29.0
    assert gate.active() and gate.viewers() == 2
    gate.watch("hls:1")  # the player refreshes its playlist
    clock.now += 29.0
    assert gate.active() and gate.viewers() == 1, "the MJPEG viewer left more than idle_s ago"
    clock.now += 1.5
    assert not gate.active() and gate.stops == 1 and gate.viewers() == 0
    assert not gate.active() and gate.stops == 1, "a shut gate is not stopped twice"
    gate.watch("watch:3")
    assert gate.active() and gate.stats() | {"last_watch_age_s": 0.0} == {
        "push_mode": "on_demand",
        "demanded": True,
        "viewers": 1,
        "starts": 2,
        "stops": 1,
        "idle_s": 30.0,
        "last_watch_age_s": 0.0,
    }


def test_always_and_never_gates_ignore_viewers() -> None:
    clock = Clock()
    always, never = DemandGate("always", 5.0, clock), DemandGate("never", 5.0, clock)
    assert always.active() and always.watch("x") is True
    assert not never.active() and never.watch("x") is False and not never.active()
    clock.now += 100.0
    assert always.active() and not never.active()
    assert always.starts == always.stops == never.starts == never.stops == 0
    with pytest.raises(ValueError, match="push_mode"):
        DemandGate("sometimes", 5.0)
    with pytest.raises(ValueError, match="on_demand_idle_s"):
        DemandGate("on_demand", 0.0)


def test_push_mode_is_validated_with_its_field_named() -> None:
    with pytest.raises(ValueError, match="push_mode"):
        CameraConfig(id="c1", source="rtsp://h/s", push_mode="later")  # type: ignore[arg-type]
    assert CameraConfig(id="c1", source="rtsp://h/s").push_mode == "always"
    with pytest.raises(ValueError, match="on_demand_idle_s"):
        PusherConfig(on_demand_idle_s=0.2)


def _frame(seq: int, image: np.ndarray, infer: bool = True) -> Frame:
    return Frame("cam1", seq, time.time(), image, pts_s=seq / FPS, infer=infer, meta={"fps": FPS})


def _feed(output: CameraOutput, start: int, count: int, image: np.ndarray, found: object = None) -> int:
    """Frames in real time (the encoder paces by timestamps); returns the next sequence number."""
    for seq in range(start, start + count):
        output.process(_frame(seq, image), found)  # type: ignore[arg-type]
        time.sleep(1.0 / FPS)
    return start + count


def _wait(probe: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@needs_x264
@pytest.mark.slow
def test_hls_encoder_runs_only_while_watched(tmp_path: Path) -> None:
    pusher = PusherConfig(hls_dir=tmp_path, preset="ultrafast", threads=1, hls_segment_s=1.0, gop_s=1.0)
    cam = CameraConfig(id="cam1", source="rtsp://h/s", push="hls", push_mode="on_demand")
    playlist = tmp_path / "cam1" / "index.m3u8"
    playlist.parent.mkdir()
    playlist.write_text("#EXTM3U\n")  # left by an earlier run: must not be served to a new viewer
    output = CameraOutput(cam, pusher, NAMES)
    clock = Clock()
    output.demand = DemandGate("on_demand", 30.0, clock)
    image = np.full((H, W, 3), 90, np.uint8)
    try:
        assert not playlist.exists(), "a stale playlist is removed at start"
        seq = _feed(output, 0, 10, image)
        stats = output.stats()
        assert stats["frames"] == 10 and stats["encoded"] == 0 and stats["annotated"] == 0
        assert stats["pushing"] is False and stats["push"]["state"] == "idle" and not playlist.exists()

        assert output.watch("hls:test")["demanded"] is True
        seq = _feed(output, seq, 25, image)
        assert _wait(playlist.is_file, 5.0), "FFmpeg wrote the playlist after the first segment"
        stats = output.stats()
        assert stats["pushing"] is True and stats["encoded"] == 25 and stats["push"]["state"] == "running"
        assert stats["demand"]["starts"] == 1 and stats["push"]["pid"] and stats["demand"]["hls_ready"]

        clock.now += 31.0  # nobody asked for 31 s
        seq = _feed(output, seq, 3, image)
        stats = output.stats()
        assert stats["pushing"] is False and stats["encoded"] == 25 and stats["demand"]["stops"] == 1
        assert not stats["demand"]["hls_ready"], "the old playlist is never taken for the next viewer's"
        assert _wait(lambda: not playlist.exists(), 10.0), "the stopped stream's playlist is removed"
        assert _wait(lambda: output.stats()["push"].get("frames_written", 0) > 0, 10.0)

        output.watch("mjpeg:test")  # back: a new encoder
        seq = _feed(output, seq, 20, image)
        assert _wait(playlist.is_file, 5.0) and output.stats()["demand"]["starts"] == 2

        clock.now += 31.0  # stops, and a viewer is back while the old encoder may still be finishing
        seq = _feed(output, seq, 1, image)
        output.watch("hls:again")
        seq = _feed(output, seq, 25, image)
        assert _wait(lambda: output.demand_stats()["hls_ready"], 5.0)
        listed = [line for line in playlist.read_text().splitlines() if line.endswith(".ts")]
        assert listed and all((playlist.parent / name).is_file() for name in listed), "no stale playlist"
        assert output.stats()["demand"]["starts"] == 3
    finally:
        output.close()


def test_never_draws_only_when_asked_and_keeps_incidents_and_key_frames(tmp_path: Path) -> None:
    sent: list[object] = []
    rules = [{**ORIGIN, "close_after_s": 2.0}]
    events = {"window": 2, "min_hits": 1, "min_confidence": 0.3, "min_area": 0.0, "close_after_s": 60}
    cam = camera(rules, analytics=FAST_TRACKER, push="hls", push_mode="never", events=events)
    output = CameraOutput(cam, PusherConfig(hls_dir=tmp_path), NAMES, sent.extend)
    image = np.full((H, W, 3), 90, np.uint8)
    for seq in range(5):  # nothing seen, nobody watching: nothing drawn, nothing encoded
        output.process(_frame(seq, image), objects())
    assert output.stats()["annotated"] == 0 and output.latest_jpeg() is None

    found = objects(cable_at(0.62))
    for seq in range(5, 10):  # a cable: incidents and events with both key frames, though never pushed
        output.process(_frame(seq, image), found)
    incidents = [r for r in sent if isinstance(r, IncidentRecord)]
    events_sent = [r for r in sent if isinstance(r, EventRecord)]
    assert incidents and incidents[0].status == "open" and set(incidents[0].keyframes["open"]) >= {"raw", "annotated"}
    assert events_sent and events_sent[0].keyframe_raw_jpeg and events_sent[0].keyframe_annotated_jpeg
    stats = output.stats()
    assert stats["encoded"] == 0 and stats["pushing"] is False and stats["push"] == {"state": "off"}
    assert not (tmp_path / "cam1").exists(), "push_mode never starts no encoder"

    drawn = stats["annotated"]
    answers: list[bytes | None] = []
    asker = threading.Thread(target=lambda: answers.append(output.latest_jpeg(wait_s=2.0, viewer="jpeg:t")))
    asker.start()
    assert _wait(lambda: output._render_wanted, 2.0)
    output.process(_frame(10, np.full((H, W, 3), 30, np.uint8), infer=False), None)  # drawn for the request
    asker.join(3.0)
    assert answers and answers[0] is not None
    picture = cv2.imdecode(np.frombuffer(answers[0], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (H, W, 3) and abs(int(np.median(picture)) - 30) < 8, "the requested frame, not older"
    output.process(_frame(11, image, infer=False), None)
    stats = output.stats()
    assert stats["annotated"] == drawn + 1 and stats["encoded"] == 0 and stats["demand"]["viewers"] == 1
    output.close()


def test_remove_hls_files_keeps_other_files(tmp_path: Path) -> None:
    directory = tmp_path / "cam1"
    directory.mkdir()
    for name in ("index.m3u8", "index.m3u8.tmp", "seg_1.ts", "seg_2.ts", "notes.txt"):
        (directory / name).write_text("x")
    assert remove_hls_files(directory / "index.m3u8") == 4
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]
    assert remove_hls_files(tmp_path / "none" / "index.m3u8") == 0
