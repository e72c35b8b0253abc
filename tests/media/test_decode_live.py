"""CameraDecoder against real streaming servers: gst-rtsp-server and nginx-rtmp, with outages."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from tests.services.streaming import RtmpPublisher, RtmpServer, RtspServer, wait_until
from trtseg.config import CameraConfig
from trtseg.decode import CameraDecoder

pytestmark = pytest.mark.slow


def _camera(source: str) -> CameraConfig:
    return CameraConfig(
        id="live1", source=source, open_timeout_s=3, reconnect_backoff_s=0.2, reconnect_backoff_max_s=1.0
    )


def _frames_within(decoder: CameraDecoder, count: int, timeout_s: float) -> list:
    frames = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        frame = decoder.latest(timeout_s=0.5)
        if frame is not None:
            frames.append(frame)
    return frames


def test_rtsp_frames_arrive(rtsp_server: RtspServer) -> None:
    decoder = CameraDecoder(_camera(rtsp_server.url)).start()
    try:
        frames = _frames_within(decoder, 25, timeout_s=10)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert len(frames) == 25, stats
    assert {f.image.shape for f in frames} == {(360, 640, 3)}
    assert stats["state"] == "live" and (stats["width"], stats["height"]) == (640, 360)
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(frames))


def test_rtmp_frames_arrive(rtmp_server: RtmpServer, small_clip: Path, rtmp_publisher: list[RtmpPublisher]) -> None:
    url = rtmp_server.url("cam1")
    rtmp_publisher.append(RtmpPublisher(small_clip, url).start())
    time.sleep(0.5)  # the publisher's handshake; the decoder retries anyway
    decoder = CameraDecoder(_camera(url)).start()
    try:
        frames = _frames_within(decoder, 25, timeout_s=15)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert len(frames) == 25, stats
    assert {f.image.shape for f in frames} == {(360, 640, 3)}
    assert stats["state"] == "live"


def test_rtsp_server_restart_reconnects(rtsp_server: RtspServer) -> None:
    decoder = CameraDecoder(_camera(rtsp_server.url)).start()
    seen: list[str] = []
    try:
        assert _frames_within(decoder, 10, timeout_s=10), decoder.stats()
        assert decoder.state == "live"
        rtsp_server.stop()
        assert wait_until(lambda: decoder.state == "reconnecting", timeout_s=10), decoder.stats()
        seen.append(decoder.state)
        frames_before = decoder.stats()["frames"]
        time.sleep(1.0)  # a few refused attempts while the server is away
        assert decoder.stats()["frames"] == frames_before
        rtsp_server.start()
        assert wait_until(lambda: decoder.state == "live", timeout_s=15), decoder.stats()
        resumed = _frames_within(decoder, 10, timeout_s=10)
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert seen == ["reconnecting"]
    assert len(resumed) == 10 and stats["frames"] > frames_before
    assert stats["reconnects"] >= 1 and stats["last_error"]
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(resumed))


def test_rtmp_publisher_gone_then_back(
    rtmp_server: RtmpServer, small_clip: Path, rtmp_publisher: list[RtmpPublisher]
) -> None:
    url = rtmp_server.url("cam2")
    rtmp_publisher.append(RtmpPublisher(small_clip, url).start())
    time.sleep(0.5)
    decoder = CameraDecoder(_camera(url)).start()
    try:
        assert _frames_within(decoder, 10, timeout_s=15), decoder.stats()
        rtmp_server.stop()
        rtmp_publisher[0].stop()
        assert wait_until(lambda: decoder.state == "reconnecting", timeout_s=10), decoder.stats()
        rtmp_server.start()
        rtmp_publisher.append(RtmpPublisher(small_clip, url).start())
        assert wait_until(lambda: decoder.state == "live", timeout_s=20), decoder.stats()
        assert _frames_within(decoder, 10, timeout_s=10)
        assert decoder.stats()["reconnects"] >= 1
    finally:
        decoder.stop()


def test_unreachable_source_gives_up_after_max_failures() -> None:
    from tests.services.ports import free_port

    camera = _camera(f"rtsp://127.0.0.1:{free_port()}/cam").model_copy(update={"max_failures": 3})
    decoder = CameraDecoder(camera).start()
    try:
        assert wait_until(lambda: decoder.state == "failed", timeout_s=15), decoder.stats()
        stats = decoder.stats()
    finally:
        decoder.stop()
    assert stats["failures"] == 3 and stats["frames"] == 0 and "refused" in stats["last_error"].lower()
