"""The whole product with real parts: RTSP and RTMP cameras in, RTMP streams out, events in MariaDB.

A generated 1280x720 25 fps H.264 scene is served by a real RTSP server (gst-rtsp-server) and
published into a real RTMP server (nginx-rtmp); the pipeline runs on a real Ray cluster with the
CPU backend and the shipped model, pushes both annotated streams to nginx-rtmp, which records them;
the recordings are read back with ffprobe, and the events with their key frames are read back from
a real MariaDB server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import RtmpPublisher, RtmpServer, RtspServer, ffprobe, make_test_clip
from trtseg.db import EventStore
from trtseg.db.models import EventQuery

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.mysql,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-integration"
RULES = {"min_confidence": 0.3, "window": 3, "min_hits": 1, "close_after_s": 2.0}


def _camera(camera_id: str, source: str, push: str) -> dict[str, Any]:
    return {
        "id": camera_id,
        "site": "integration-site",
        "source": source,
        "push": push,
        "inference_fps": 2,
        "classes": ["charging_cable", "person", "e_bike"],
        "confidence": 0.3,
        "events": RULES,
    }


def _output(controller: Any, camera_id: str) -> dict[str, Any]:
    import ray

    found = ray.get(controller.get_camera.remote(camera_id), timeout=30) or {}
    return found.get("stats", {}).get("output", {})


def _pushed_at_least(controller: Any, camera_id: str, frames: int) -> bool:
    """True once the camera's encoder wrote ``frames``; otherwise raises with its figures (for the report)."""
    import ray

    found = ray.get(controller.get_camera.remote(camera_id), timeout=30) or {}
    if found.get("stats", {}).get("output", {}).get("push", {}).get("frames_written", 0) >= frames:
        return True
    raise RuntimeError(f"state={found.get('state')} error={found.get('error')} stats={found.get('stats')}")


def test_rtsp_and_rtmp_cameras_push_rtmp_and_store_events_in_mariadb(
    ray_local: RayTestCluster, mysql_url: str, tmp_path: Path
) -> None:
    from actors.launch import running_system

    clip = make_test_clip(tmp_path / "media" / "scene.mp4", seconds=6.0, fps=25, size=(1280, 720))
    rtmp = RtmpServer(tmp_path / "nginx")
    rtmp.workdir.mkdir()
    rtmp.start()
    rtsp = RtspServer(clip, tmp_path).start()
    publisher = RtmpPublisher(clip, rtmp.url("source")).start()
    try:
        cameras = [
            _camera("cam-rtsp", rtsp.url, rtmp.url("cam-rtsp", app="rec")),
            _camera("cam-rtmp", rtmp.url("source"), rtmp.url("cam-rtmp", app="rec")),
        ]
        config = system_config(tmp_path, clip.parent, NAMESPACE, cameras)
        config.sink.database_url = mysql_url  # type: ignore[assignment]
        config.pusher.bitrate_kbps = 1500
        written: dict[str, int] = {}
        with running_system(config, start_timeout_s=240) as controller:
            try:
                for camera_id in ("cam-rtsp", "cam-rtmp"):
                    wait_for(
                        lambda cid=camera_id: _pushed_at_least(controller, cid, 150),
                        timeout_s=180,
                        what=f"{camera_id} to push 6 s of video",
                    )
                    wait_for(
                        lambda cid=camera_id: _output(controller, cid).get("events", 0) >= 1,
                        timeout_s=60,
                        what=f"{camera_id} to open an event",
                    )
            finally:
                for camera_id in ("cam-rtsp", "cam-rtmp"):
                    push = _output(controller, camera_id).get("push", {})
                    # The encoder is fed in real time: gaps are filled by repeating the last picture.
                    written[camera_id] = int(push.get("frames_written", 0)) + int(push.get("duplicates", 0))
    finally:
        publisher.stop()
        rtsp.stop()
        rtmp.stop()  # closes the recordings

    for camera_id in ("cam-rtsp", "cam-rtmp"):
        recording = rtmp.record_dir / f"{camera_id}.flv"
        assert recording.is_file(), f"nginx-rtmp recorded nothing for {camera_id}"
        probe = ffprobe(recording)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert video["codec_name"] == "h264"
        assert (video["width"], video["height"]) == (1280, 720)
        assert video["r_frame_rate"] == "25/1"
        duration = float(probe["format"]["duration"])
        expected = written[camera_id] / 25.0
        assert expected >= 6.0
        assert abs(duration - expected) <= max(2.0, 0.05 * expected), (camera_id, duration, expected)

    store = EventStore(mysql_url)
    try:
        for camera_id in ("cam-rtsp", "cam-rtmp"):
            page = store.query(EventQuery(camera_id=camera_id, limit=100))
            assert page.items, f"no event of {camera_id} in MariaDB"
            assert all(event.site == "integration-site" for event in page.items)
            assert all(event.status == "closed" for event in page.items), "shutdown closes open events"
            best = max(page.items, key=lambda event: event.best_confidence)
            assert best.keyframe_raw_path and best.keyframe_annotated_path
            keyframes = Path(config.sink.keyframe_dir)
            assert (keyframes / best.keyframe_raw_path).is_file()
            assert (keyframes / best.keyframe_annotated_path).is_file()
    finally:
        store.close()
