"""The object-store route (``cluster.frame_transport: object_store``) on a real one-node Ray cluster.

The node-local channel is the default (``test_system_ray.py``); this route is what cameras whose
actors are on different nodes use, and what the setting forces everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]


def test_frames_and_detections_through_the_object_store(ray_local: RayTestCluster, tmp_path: Path) -> None:
    import ray

    from actors.launch import running_system

    media = tmp_path / "media"
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    cam = camera("os1", media / "clip.mp4")
    config = system_config(tmp_path, media, "trtseg-test-object-store", [cam], frame_transport="object_store")
    with running_system(config, start_timeout_s=240) as controller:

        def output() -> dict[str, Any]:
            found = ray.get(controller.get_camera.remote("os1"), timeout=30) or {}
            return found.get("stats", {})

        wait_for(lambda: output().get("output", {}).get("inferred", 0) > 2, 120, "detections through the store")
        stats = output()
        assert stats["decoder"]["transport"] == "object_store"
        assert "channel_pusher" not in stats["decoder"]
        assert stats["decoder"]["completed"] > 0 and stats["decoder"]["pipeline_errors"] == 0
        pushed = stats["output"]["push"]["frames_written"]
        wait_for(lambda: output()["output"]["push"]["frames_written"] > pushed + 3, 60, "frames to keep coming")
