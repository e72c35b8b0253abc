"""Analytics and incidents through the REAL controller and sink actors (slow: one small Ray system).

PUT /cameras/{id}/analytics goes the controller's way of changing a camera (restart, registry in the
database); the model's class names come from the running segmenter; live zone counts come from the
camera's pusher; an incident handed to the sink actor is written and its key frames are read back
through the controller when the API cannot see the files.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest
import ray
from fastapi.testclient import TestClient

from actors.common import SINK_NAME
from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.api.conftest import jpeg
from tests.api.test_analytics_config import DEMO
from tests.db.incident_helpers import incident
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from trtseg.config import SystemConfig
from trtseg.db import CameraRegistry, EventStore

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-analytics"
TOKEN = "analytics-e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def system(ray_local: RayTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from actors.launch import running_system

    media = tmp_path_factory.mktemp("analytics-media")
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    shutil.copy(media / "clip.mp4", media / "clip2.mp4")
    tmp = tmp_path_factory.mktemp("analytics-system")
    cameras = [
        camera("cam1", media / "clip.mp4", site="block-7", classes=[]),
        camera("cam2", media / "clip2.mp4", site="block-7"),
    ]
    config = system_config(tmp, media, NAMESPACE, cameras)
    config.api.token = TOKEN  # type: ignore[assignment]
    with running_system(config, start_timeout_s=240):
        yield config


@pytest.fixture(scope="module")
def api(system: SystemConfig) -> Iterator[TestClient]:
    store = EventStore(system.sink.database_url)
    store.migrate()
    # No key frame directory: every key frame is read through the controller and the sink actor.
    app = create_app(RayControlPlane(namespace=NAMESPACE, timeout_s=30.0), store, system.api, pusher=system.pusher)
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/cameras/cam1").json().get("state") == "live", 180, "cam1 live")
        yield client
    store.close()


def test_analytics_change_goes_through_the_controller_and_is_kept(api: TestClient, system: SystemConfig) -> None:
    drone = {**DEMO, "rules": [{**DEMO["rules"][0], "classes": ["drone"]}]}
    refused = api.put("/cameras/cam1/analytics", json=drone, headers=AUTH)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "rules", 0, "classes"]
    assert "charging_cable" in refused.json()["detail"][0]["msg"], "the model's own class names are listed"

    whole = {**api.get("/cameras/cam1").json()["config"], "analytics": drone}
    by_camera = api.put("/cameras/cam1", json=whole, headers=AUTH)  # the controller checks the model's classes too
    assert by_camera.status_code == 422 and "drone" in str(by_camera.json()["detail"]), by_camera.text

    answer = api.put("/cameras/cam1/analytics", json=DEMO, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert api.get("/cameras/cam1/analytics").json() == answer.json()
    registry = CameraRegistry(system.sink.database_url)
    try:
        stored = {row.camera_id: row.config for row in registry.load()}
    finally:
        registry.close()
    assert stored["cam1"] is not None and [r.name for r in stored["cam1"].analytics.rules] == [
        "cable_outside",
        "in_out",
    ]

    counts = wait_for(
        lambda: (body := api.get("/zones/counts", params={"camera_id": "cam1"}).json())["unavailable"] == [] and body,
        120,
        "cam1's pusher to report zone counts",
    )
    assert all(row["zone"] == "building_safe_zone" for row in counts["items"])

    assert api.delete("/cameras/cam2", headers=AUTH).status_code == 204
    gone = api.put("/cameras/cam2/analytics", json={}, headers=AUTH)
    assert gone.status_code == 404 and "cam2" in gone.json()["detail"]


def test_incident_through_the_sink_actor_and_its_key_frame_through_the_controller(api: TestClient) -> None:
    sink = ray.get_actor(SINK_NAME, namespace=NAMESPACE)
    record = replace(
        incident("inc-e2e", camera_id="cam-gone"), keyframes={"open": {"raw": jpeg(seed=5), "annotated": jpeg(seed=6)}}
    )
    assert ray.get(sink.submit.remote([record]), timeout=30) == 1
    resumed = ray.get(sink.open_incidents.remote("cam-gone"), timeout=30)
    assert [r.incident_id for r in resumed] == ["inc-e2e"] and set(resumed[0].keyframe_paths) == {"open"}
    item = api.get("/incidents/inc-e2e")
    assert item.status_code == 200 and item.json()["keyframe_paths"]["open"]["raw"].endswith("inc-e2e-open_raw.jpg")
    picture = api.get("/incidents/inc-e2e/keyframe/open/annotated")
    assert picture.status_code == 200 and picture.content == jpeg(seed=6)
    assert api.get("/incidents/inc-e2e/keyframe/close/raw").status_code == 404
    acked = api.post("/incidents/inc-e2e/ack", json={"by": "e2e"}, headers=AUTH)
    assert acked.status_code == 200 and acked.json()["acknowledged_by"] == "e2e"
