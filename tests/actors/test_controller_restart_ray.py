"""The controller on a real one-node Ray cluster: killed, Ray restarts it and it rebuilds the pipeline
with the cameras added at run time (no camera twice); stopped and started again on the same database,
the system keeps the run-time changes (an added camera, a changed one, a removed YAML camera).

The two tests run in order on one database: the second starts the system the first one changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from trtseg.config import SystemConfig

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-restart"
PIPELINE_CLASSES = ("Controller", "SinkActor", "SegmenterActor", "DecoderActor", "PusherActor")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("restart-media")
    return make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))


@pytest.fixture(scope="module")
def config(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> SystemConfig:
    """One YAML camera, no encoding (push 'none'): the machine has two cores."""
    tmp = tmp_path_factory.mktemp("restart-system")
    return system_config(tmp, clip.parent, NAMESPACE, [camera("cam1", clip, push="none", inference_fps=2)])


def _actor_counts() -> dict[str, int]:
    """Actors of the pipeline not dead, by class. Ray's public state API needs the dashboard, which
    the test clusters do not start; the GCS actor table behind it is read directly."""
    from ray._private import state

    counts = dict.fromkeys(PIPELINE_CLASSES, 0)
    for info in state.actors().values():
        if info["ActorClassName"] in counts and info["State"] != "DEAD":
            counts[info["ActorClassName"]] += 1
    return counts


def _live(controller: Any, *camera_ids: str) -> dict[str, dict[str, Any]] | None:
    import ray

    cameras = {c["id"]: c for c in ray.get(controller.list_cameras.remote(), timeout=30)}
    if sorted(cameras) != sorted(camera_ids) or any(c["state"] != "live" for c in cameras.values()):
        return None
    return cameras


def test_killed_controller_comes_back_with_runtime_cameras(ray_local: RayTestCluster, config: SystemConfig) -> None:
    import ray

    from actors.launch import running_system

    clip = Path(config.cameras[0].source)
    with running_system(config, start_timeout_s=240) as controller:
        ray.get(controller.add_camera.remote(camera("cam2", clip, push="none", inference_fps=2)), timeout=90)
        wait_for(lambda: _live(controller, "cam1", "cam2"), 60, "cam1 and cam2 live")
        before = ray.get(controller.camera_actors.remote("cam2"), timeout=30)
        assert ray.get(controller.ping.remote(), timeout=30)["restarted"] is False

        ray.kill(controller, no_restart=False)  # the process dies; Ray starts the actor again

        wait_for(lambda: ray.get(controller.ping.remote(), timeout=30)["restarted"], 60, "the controller to restart")
        cameras = wait_for(lambda: _live(controller, "cam1", "cam2"), 120, "both cameras live after the restart")
        assert cameras["cam2"]["config"]["inference_fps"] == 2
        health = wait_for(lambda: (h := ray.get(controller.health.remote(), timeout=30))["ready"] and h, 60, "ready")
        assert health["components"]["registry"]["state"] == "ready"
        assert health["components"]["controller"]["restarted"] is True
        # The old camera actors died with the old controller; each camera runs exactly once.
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(before["decoder"].ping.remote(), timeout=30)
        expected = {"Controller": 1, "SinkActor": 1, "SegmenterActor": 1, "DecoderActor": 2, "PusherActor": 2}
        assert _actor_counts() == expected

        # Run-time changes for the second test: a changed camera and a removed YAML camera.
        ray.get(controller.update_camera.remote("cam2", {"confidence": 0.4}), timeout=90)
        ray.get(controller.remove_camera.remote("cam1"), timeout=60)

    # A deliberate stop (kill without restart after the ordered shutdown) leaves nothing behind.
    wait_for(lambda: not any(_actor_counts().values()), 60, "every pipeline actor to be gone")
    with pytest.raises(ValueError):
        ray.get_actor("trtseg-controller", namespace=NAMESPACE)


def test_system_started_again_keeps_runtime_changes(ray_local: RayTestCluster, config: SystemConfig) -> None:
    import ray

    from actors.launch import running_system

    with running_system(config, start_timeout_s=240) as controller:
        cameras = wait_for(lambda: _live(controller, "cam2"), 90, "cam2 (and not the removed cam1) live")
        assert cameras["cam2"]["config"]["confidence"] == 0.4
        summary = ray.get(controller.config_summary.remote(), timeout=30)
        assert [c["id"] for c in summary["cameras"]] == ["cam2"]
