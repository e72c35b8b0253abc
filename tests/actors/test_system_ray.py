"""The pipeline on a real one-node Ray cluster: decode, infer (CPU ONNX Runtime), annotate, push HLS.

One system for the module (starting Ray and loading the model is the slow part): a camera runs end
to end, cameras are added and removed at run time, killed actors come back.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-system"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("actors-media")
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    return media


@pytest.fixture(scope="module")
def system(ray_local: RayTestCluster, clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from actors.launch import running_system

    tmp = tmp_path_factory.mktemp("actors-system")
    # Loose event rules so the rendered scene's people and cables (seen at modest scores at this
    # small size) open events: the whole path to the database and key frames is exercised.
    rules = {"min_confidence": 0.25, "window": 2, "min_hits": 1, "close_after_s": 2.0}
    cam1 = camera("cam1", clip_dir / "clip.mp4", classes=["charging_cable", "person"], events=rules)
    config = system_config(tmp, clip_dir, NAMESPACE, [cam1])
    with running_system(config, start_timeout_s=240) as controller:
        yield controller


def _camera(controller: Any, camera_id: str) -> dict[str, Any] | None:
    import ray

    return ray.get(controller.get_camera.remote(camera_id), timeout=30)


def _pushed(controller: Any, camera_id: str) -> int:
    """Frames the camera's encoder has written (not just handed over)."""
    found = _camera(controller, camera_id) or {}
    return int(found.get("stats", {}).get("output", {}).get("push", {}).get("frames_written", 0))


def test_camera_runs_end_to_end(system: Any) -> None:
    import ray

    pushed = wait_for(lambda: _pushed(system, "cam1"), 90, "cam1 to push frames")
    found = _camera(system, "cam1")
    assert found is not None and found["state"] == "live"
    assert found["stats"]["decoder"]["width"] == 320
    assert wait_for(lambda: _pushed(system, "cam1") > pushed, 30, "frame counters to move")

    jpeg = ray.get(system.latest_jpeg.remote("cam1"), timeout=30)
    assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8" and len(jpeg) > 1000

    urls = ray.get(system.stream_urls.remote("cam1"), timeout=30)
    playlist = Path(urls["hls"])
    wait_for(lambda: playlist.is_file() and list(playlist.parent.glob("*.ts")), 60, "HLS segments")
    assert "#EXTM3U" in playlist.read_text()

    decoder = (_camera(system, "cam1") or {})["stats"]["decoder"]
    assert decoder["in_flight"] <= decoder["frames_in_flight_limit"], "frames in flight stay bounded"
    assert decoder["frames"] >= decoder["submitted"] > 0
    output = (_camera(system, "cam1") or {})["stats"]["output"]
    assert output["inferred"] > 0, "frames went through the segmenter"
    assert output["latency_ms_mean"] > 0
    health = ray.get(system.health.remote(), timeout=30)
    segmenters = [v for k, v in health["components"].items() if k.startswith("segmenter:")]
    assert segmenters and segmenters[0]["batching"]["batches"] > 0
    assert segmenters[0]["frames_per_camera"]["cam1"] > 0
    assert health["components"]["sink"]["state"] == "ready"


def test_events_reach_the_database_with_key_frames(system: Any) -> None:
    import ray

    from trtseg.db import EventStore
    from trtseg.db.models import EventQuery

    store = EventStore(ray.get(system.event_store_url.remote(), timeout=30))
    try:
        page = wait_for(lambda: store.query(EventQuery(camera_id="cam1")).items, 90, "events of cam1 in the database")
    finally:
        store.close()
    event = page[0]
    assert event.class_name in ("charging_cable", "person") and event.best_confidence >= 0.25
    for kind in ("raw", "annotated"):
        jpeg = ray.get(system.read_keyframe.remote(event.event_id, kind), timeout=30)
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8", f"{kind} key frame"
    with pytest.raises(ValueError, match="kind"):
        ray.get(system.read_keyframe.remote(event.event_id, "thumbnail"), timeout=30)


def test_add_and_remove_camera_at_run_time(system: Any, clip_dir: Path) -> None:
    import ray

    added = ray.get(system.add_camera.remote(camera("cam2", clip_dir / "clip.mp4")), timeout=90)
    assert added["id"] == "cam2"
    wait_for(lambda: _pushed(system, "cam2"), 60, "cam2 to push frames")
    ids = {c["id"] for c in ray.get(system.list_cameras.remote(), timeout=30)}
    assert ids == {"cam1", "cam2"}

    with pytest.raises(FileExistsError):
        ray.get(system.add_camera.remote(camera("cam2", clip_dir / "clip.mp4")), timeout=30)
    with pytest.raises(ValueError, match="source refused"):
        ray.get(system.add_camera.remote(camera("cam3", Path("/etc/passwd"))), timeout=30)
    with pytest.raises(ValueError, match="id"):
        ray.get(system.add_camera.remote({"id": "bad id!", "source": "rtsp://x/y"}), timeout=30)

    ray.get(system.remove_camera.remote("cam2"), timeout=60)
    assert _camera(system, "cam2") is None
    with pytest.raises(KeyError):
        ray.get(system.remove_camera.remote("cam2"), timeout=30)
    assert {c["id"] for c in ray.get(system.list_cameras.remote(), timeout=30)} == {"cam1"}


@pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is not None, reason="NVDEC extras installed")
def test_nvdec_camera_without_the_gpu_extras_fails_clearly_and_alone(system: Any, clip_dir: Path) -> None:
    """A camera asking for NVDEC where PyNvVideoCodec is missing: listed, 'failed' with the fix; others run on."""
    import ray

    ray.get(system.add_camera.remote(camera("nv1", clip_dir / "clip.mp4", decoder="nvdec")), timeout=90)
    try:

        def failed_with_hint() -> bool:
            decoder = ((_camera(system, "nv1") or {}).get("stats") or {}).get("decoder") or {}
            hint = "pip install pynvvideocodec" in (decoder.get("last_error") or "")
            return decoder.get("state") == "failed" and hint

        wait_for(failed_with_hint, 60, "the NVDEC camera to report the missing extras")
        before = _pushed(system, "cam1")
        wait_for(lambda: _pushed(system, "cam1") > before, 60, "cam1 to keep pushing")
    finally:
        ray.get(system.remove_camera.remote("nv1"), timeout=60)


def test_killed_decoder_comes_back(system: Any) -> None:
    import ray

    before = (_camera(system, "cam1") or {})["restarts"]
    handle = ray.get(system.camera_actors.remote("cam1"), timeout=30)["decoder"]
    ray.kill(handle, no_restart=False)  # Ray restarts it (max_restarts); the watchdog notices
    wait_for(lambda: (_camera(system, "cam1") or {}).get("restarts", 0) > before, 60, "the restart to be seen")
    frames = _pushed(system, "cam1")
    wait_for(lambda: _pushed(system, "cam1") > frames + 3, 60, "frames to resume after a restart")

    restores = (_camera(system, "cam1") or {})["restores"]
    handle = ray.get(system.camera_actors.remote("cam1"), timeout=30)["decoder"]
    ray.kill(handle, no_restart=True)  # gone for good: the controller must re-create it
    wait_for(lambda: (_camera(system, "cam1") or {}).get("restores", 0) > restores, 60, "the camera to be restored")
    frames = _pushed(system, "cam1")
    wait_for(lambda: _pushed(system, "cam1") > frames + 3, 60, "frames to resume after a restore")


def _inferred(controller: Any, camera_id: str) -> int:
    found = _camera(controller, camera_id) or {}
    return int(found.get("stats", {}).get("output", {}).get("inferred", 0))


def test_frames_and_detections_take_the_channel(system: Any) -> None:
    wait_for(lambda: _inferred(system, "cam1") > 0, 90, "cam1 to get detections")
    decoder = (_camera(system, "cam1") or {})["stats"]["decoder"]
    assert decoder["transport"] == "channel"
    assert decoder["channel_pusher"]["connected"] and decoder["channel_segmenter"]["connected"]
    assert decoder["channel_completed"] > 0 and decoder["channel_lost"] == 0


def _flowing_over_the_channel(controller: Any, camera_id: str) -> bool:
    """Frames and detections arrive now (two reads 2 s apart) with both channel links up."""
    import time

    first = (_camera(controller, camera_id) or {}).get("stats", {})
    time.sleep(2.0)
    second = (_camera(controller, camera_id) or {}).get("stats", {})
    decoder, before, after = second.get("decoder", {}), first.get("output", {}), second.get("output", {})
    return (
        decoder.get("transport") == "channel"
        and decoder.get("channel_pusher", {}).get("connected", False)
        and decoder.get("channel_segmenter", {}).get("connected", False)
        and after.get("push", {}).get("frames_written", 0) > before.get("push", {}).get("frames_written", 0)
        and after.get("inferred", 0) > before.get("inferred", 0)
    )


def test_restarted_pusher_and_segmenter_are_found_again_over_the_channel(system: Any) -> None:
    import ray

    # The pusher: Ray restarts it on a new address, and the same decoder connects to it again.
    handle = ray.get(system.camera_actors.remote("cam1"), timeout=30)["pusher"]
    connects = (_camera(system, "cam1") or {})["stats"]["decoder"]["channel_pusher"]["connects"]
    ray.kill(handle, no_restart=False)
    wait_for(
        lambda: (_camera(system, "cam1") or {})["stats"]["decoder"]["channel_pusher"]["connects"] > connects,
        120,
        "the decoder to reconnect to the restarted pusher",
    )
    wait_for(lambda: _flowing_over_the_channel(system, "cam1"), 60, "frames and detections after the pusher")

    # The segmenter: its process dies; the controller's watchdog replaces it (or Ray restarts it) and
    # the camera's decoder connects to the new one. Either way frames and detections come again.
    def segmenter_pid() -> int:
        current = ray.get(system.camera_actors.remote("cam1"), timeout=30)["segmenter"]
        return int(ray.get(current.ping.remote(), timeout=30)["pid"])

    old_pid = segmenter_pid()
    ray.kill(ray.get(system.camera_actors.remote("cam1"), timeout=30)["segmenter"], no_restart=False)
    wait_for(lambda: segmenter_pid() != old_pid, 120, "a segmenter in a new process")
    wait_for(lambda: _flowing_over_the_channel(system, "cam1"), 120, "frames and detections after the segmenter")


def test_infer_image_and_config_summary(system: Any) -> None:
    import ray

    image = np.full((240, 320, 3), 127, np.uint8)
    found = ray.get(system.infer_image.remote(image, 0.25), timeout=60)
    assert found.frame_shape == (240, 320)
    with pytest.raises(ValueError, match="BGR uint8"):
        ray.get(system.infer_image.remote(np.zeros((4, 4), np.uint8), 0.25), timeout=60)
    summary = ray.get(system.config_summary.remote(), timeout=30)
    assert summary["engine"]["backend"] == "onnxruntime"
    assert [c["id"] for c in summary["cameras"]] == ["cam1"]
    assert ray.get(system.read_keyframe.remote("no-such-event", "raw"), timeout=30) is None


def test_update_camera_restarts_it_and_bad_changes_lose_nothing(system: Any) -> None:
    import ray

    with pytest.raises(ValueError, match="confidence"):
        ray.get(system.update_camera.remote("cam1", {"confidence": 7}), timeout=30)
    with pytest.raises(ValueError, match="id cannot change"):
        ray.get(system.update_camera.remote("cam1", {"id": "other"}), timeout=30)
    with pytest.raises(KeyError):
        ray.get(system.update_camera.remote("nope", {"confidence": 0.3}), timeout=30)
    assert (_camera(system, "cam1") or {})["config"]["confidence"] == 0.25, "a refused change changes nothing"

    updated = ray.get(system.update_camera.remote("cam1", {"confidence": 0.4, "name": "Gate"}), timeout=90)
    assert updated["config"]["confidence"] == 0.4 and updated["config"]["name"] == "Gate"
    assert updated["config"]["source"].endswith("clip.mp4"), "fields not named keep their values"
    wait_for(lambda: _pushed(system, "cam1") > 3, 60, "cam1 to push again after the update")


def test_stop_system_shuts_everything_down_in_order(system: Any) -> None:
    """Last in the module: the fixture's own stop afterwards must be a harmless no-op."""
    import ray

    from actors.common import CONTROLLER_NAME, SINK_NAME
    from actors.launch import stop_system

    actors = ray.get(system.camera_actors.remote("cam1"), timeout=30)
    ffmpeg_pid = (_camera(system, "cam1") or {})["stats"]["output"]["push"]["pid"]
    assert ffmpeg_pid, "the camera's encoder runs"
    stop_system(NAMESPACE, timeout_s=120)
    for name in (CONTROLLER_NAME, SINK_NAME):
        with pytest.raises(ValueError):
            ray.get_actor(name, namespace=NAMESPACE)
    for handle in actors.values():
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(handle.ping.remote(), timeout=30)
    with pytest.raises(ProcessLookupError):
        os.kill(ffmpeg_pid, 0)  # the encoder was closed and reaped, not left behind
    stop_system(NAMESPACE, timeout_s=30)  # nothing running: no error


def test_metrics_are_created_inside_ray_workers(ray_local: RayTestCluster) -> None:
    import ray

    @ray.remote(num_cpus=0.1)
    def record() -> list[str]:
        from trtseg import metrics

        camera = metrics.CameraMetrics("cam-metrics")
        camera.count("frames_pushed")
        camera.gauge("queue_depth", 2)
        camera.capture_to_push_ms(40.0)
        metrics.SegmenterMetrics("seg-metrics").batch(3, 0.02)
        return sorted(metrics._metrics)

    names = ray.get(record.remote(), timeout=60)
    assert {"trtseg_frames_pushed", "trtseg_queue_depth", "trtseg_capture_to_push_ms"} <= set(names)
    assert {"trtseg_batch_size", "trtseg_engine_ms"} <= set(names)
