"""Hostile input through the running actors: bad cameras and images reach the real controller, decoder,
pusher and segmenter actors; each gets a clear error or is handled, no actor crashes, and the good
camera next to them keeps running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.reliability.conftest import ffmpeg_clip, poll
from tools.soak import MODEL, build_config, camera_entry, make_clip, start_cluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.ray,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]
NAMESPACE = "trtseg-test-hostile"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    from actors.launch import running_system

    work = tmp_path_factory.mktemp("hostile-system")
    media = work / "media"
    clip = make_clip(media / "scene.mp4", seconds=4.0)
    cluster = start_cluster(head_cpus=4)
    try:
        config = build_config(work, media, NAMESPACE, [camera_entry("good", str(clip), 2.0, push="none")])
        with running_system(config, start_timeout_s=300) as controller:
            yield controller, media
    finally:
        cluster.shutdown()


def _camera(controller: Any, camera_id: str) -> dict[str, Any]:
    import ray

    return ray.get(controller.get_camera.remote(camera_id), timeout=30) or {}


def _frames(controller: Any, camera_id: str) -> int:
    return int(_camera(controller, camera_id).get("stats", {}).get("output", {}).get("frames", 0))


def _pids(controller: Any, camera_id: str) -> dict[str, int]:
    import ray

    handles = ray.get(controller.camera_actors.remote(camera_id), timeout=30)
    return {role: int(ray.get(h.ping.remote(), timeout=30)["pid"]) for role, h in handles.items()}


def test_bad_cameras_and_images_crash_no_actor(system: tuple[Any, Path]) -> None:
    import ray

    controller, media = system
    poll(lambda: _frames(controller, "good") > 5, 120, "the good camera to push frames", 1.0)
    good_pids = _pids(controller, "good")

    for url in ("file:///etc/passwd", "concat:/etc/passwd|/etc/hosts", str(media / ".." / "outside.mp4")):
        with pytest.raises(Exception) as refused:
            ray.get(controller.add_camera.remote({"id": "evil", "source": url, "push": "none"}), timeout=60)
        assert "refused" in str(refused.value) or "not allowed" in str(refused.value), str(refused.value)[-500:]

    (media / "empty.mp4").write_bytes(b"")
    clean = ffmpeg_clip(media / "clean.h264", 3.0, (160, 120), fmt="h264")
    data = bytearray(clean.read_bytes())
    rng = np.random.default_rng(5)
    for offset in rng.integers(len(data) // 4, 3 * len(data) // 4, size=300):
        data[int(offset)] = int(rng.integers(0, 256))
    (media / "broken.h264").write_bytes(bytes(data))
    first = ffmpeg_clip(media / "a.ts", 1.0, (320, 240), fmt="mpegts")
    second = ffmpeg_clip(media / "b.ts", 1.0, (160, 96), fmt="mpegts")
    (media / "resize.ts").write_bytes(first.read_bytes() + second.read_bytes())

    bad = {"empty": "empty.mp4", "broken": "broken.h264", "resize": "resize.ts"}
    for camera_id, name in bad.items():
        entry = camera_entry(camera_id, str(media / name), 2.0, push="hls", max_failures=2)
        ray.get(controller.add_camera.remote(entry), timeout=120)
    poll(lambda: _camera(controller, "empty").get("state") == "failed", 60, "the empty file to be given up", 1.0)
    poll(lambda: _frames(controller, "broken") > 3, 90, "the corrupted stream to push frames", 1.0)
    poll(lambda: _frames(controller, "resize") > 3, 90, "the resizing stream to push frames", 1.0)
    poll(
        lambda: _camera(controller, "resize")["stats"]["output"]["push"].get("width") == 160,
        60,
        "the pusher to follow the size change",
        1.0,
    )

    huge = np.random.default_rng(0).integers(0, 255, (4320, 7680, 3), dtype=np.uint8)
    found = ray.get(controller.infer_image.remote(huge, 0.25), timeout=120)
    assert found.frame_shape == (4320, 7680)
    with pytest.raises(Exception) as refused:
        ray.get(controller.infer_image.remote(np.zeros((10, 10), np.float64), 0.25), timeout=60)
    assert "BGR uint8" in str(refused.value)

    for camera_id in ("good", *bad):
        described = _camera(controller, camera_id)
        assert described["restarts"] == 0 and described["restores"] == 0, (camera_id, described)
    assert _pids(controller, "good") == good_pids, "the good camera's actors were never restarted"
    before = _frames(controller, "good")
    poll(lambda: _frames(controller, "good") > before, 60, "the good camera to keep pushing", 1.0)
    health = ray.get(controller.health.remote(), timeout=30)
    assert all(c.get("state") == "ready" for k, c in health["components"].items() if k.startswith("segmenter:"))
    assert health["components"]["sink"]["state"] == "ready"
