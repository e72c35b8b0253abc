"""Evidence in the running system (a real one-node Ray cluster, SQLite): the controller runs retention with
the database's open incidents and marks the rows, and an unwritable key frame directory (its parent is a
regular file, so even root cannot write) costs pictures, never incidents: the sink and evidence
components of /ready say so while the system stays ready.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, camera, wait_for
from tests.clips.test_retention import _clip
from tests.db.incident_helpers import incident
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from tools.soak import build_config
from trtseg.config import ApiConfig, SystemConfig
from trtseg.db import EventStore

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-evidence"
JPEG = b"\xff\xd8\xff\xe0 a picture"


@pytest.fixture()
def config(tmp_path: Path) -> SystemConfig:
    media = tmp_path / "media"
    media.mkdir()
    clip = make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a regular file")
    return build_config(
        tmp_path,
        media,
        NAMESPACE,
        [camera("cam1", clip, push="none", inference_fps=2)],
        sink={"keyframe_dir": str(blocker / "keyframes")},
        evidence={"clip_dir": str(tmp_path / "clips"), "clip_retain_days": 1},
    )


def _seed(config: SystemConfig) -> dict[str, Path]:
    """Incidents of a camera that is not running: an old closed one and an old open one, both with old clips."""
    store = EventStore(config.sink.database_url)
    try:
        store.migrate()
        closed = incident("inc-old", camera_id="cam9")
        store.incidents.upsert([replace(closed, status="closed", ended_at=closed.last_seen_at),
                                incident("inc-open", camera_id="cam9")])  # fmt: skip
    finally:
        store.close()
    clip_dir = config.evidence.clip_dir
    return {
        "inc-old": _clip(clip_dir, "cam9", "rec-old", 20_000, ["inc-old"]),  # mtimes far in the past
        "inc-open": _clip(clip_dir, "cam9", "rec-open", 20_000, ["inc-open"]),
    }


def _incident(config: SystemConfig, incident_id: str) -> Any:
    store = EventStore(config.sink.database_url)
    try:
        return store.incidents.get(incident_id)
    finally:
        store.close()


def test_retention_and_unwritable_keyframes_in_the_running_system(
    ray_local: RayTestCluster, config: SystemConfig
) -> None:
    import ray
    from fastapi.testclient import TestClient

    from actors.common import SINK_NAME
    from actors.launch import running_system
    from deployments.api import create_app
    from deployments.control import RayControlPlane

    clips = _seed(config)
    with running_system(config, start_timeout_s=240) as controller:
        removed = wait_for(lambda: (i := _incident(config, "inc-old")).clip_removed_at and i, 60, "inc-old marked")
        assert not clips["inc-old"].exists() and clips["inc-open"].exists(), "an open incident's clip stays"
        assert _incident(config, "inc-open").clip_removed_at is None
        assert removed.status == "closed"

        sink = ray.get_actor(SINK_NAME, namespace=NAMESPACE)
        pictured = replace(incident("inc-kf", camera_id="cam9"), keyframes={"open": {"raw": JPEG, "annotated": JPEG}})
        assert ray.get(sink.submit.remote([pictured]), timeout=30) == 1, "the incident is taken"
        ray.get(sink.flush.remote(), timeout=30)
        stored = _incident(config, "inc-kf")
        assert stored is not None and stored.keyframe_paths == {}

        health = wait_for(lambda: (h := ray.get(controller.health.remote(), timeout=30))["ready"] and h, 90, "ready")
        sink_health, evidence = health["components"]["sink"], health["components"]["evidence"]
        assert sink_health["state"] == "ready" and sink_health["keyframes"] == "failing"
        assert sink_health["keyframe_failures"] >= 2 and sink_health["keyframe_last_error"]
        assert evidence["state"] == "failing" and evidence["ready"] is True and evidence["keyframes_failing"]
        assert evidence["retention_error"] is None

        store = EventStore(config.sink.database_url)
        try:
            app = create_app(RayControlPlane(namespace=NAMESPACE, timeout_s=30.0), store, ApiConfig())
            with TestClient(app) as client:
                ready = client.get("/ready")
                assert ready.status_code == 200, ready.text
                components = ready.json()["components"]
                assert components["sink"]["keyframes"] == "failing"
                assert components["evidence"]["state"] == "failing"
                item = client.get("/incidents/inc-old").json()
                assert item["clip_removed_at"] is not None and item["keyframes_removed_at"] is None
        finally:
            store.close()
