"""Streams on demand in the running system (a real one-node Ray cluster, the CPU model, FFmpeg, SQLite),
driven through the real API: a camera with ``push_mode: on_demand`` analyses every frame and records
events and incidents while nothing is encoded; its HLS playlist GET starts the encoder and is answered
once the first segment exists; the encoder stops after ``pusher.on_demand_idle_s`` without a viewer;
MJPEG and ``POST /cameras/{id}/watch`` start it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.actors.system_helpers import MODEL, camera, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from tools.soak import build_config
from trtseg.config import SystemConfig
from trtseg.db import EventStore
from trtseg.db.incident_models import IncidentQuery
from trtseg.db.models import EventQuery

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-ondemand"
IDLE_S = 3.0
BOUNDARY = b"--trtsegframe"


@pytest.fixture(scope="module")
def system(ray_local: RayTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from actors.launch import running_system

    media = tmp_path_factory.mktemp("ondemand-media")
    clip = make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    # Loose rules so the rendered scene's people and cables (modest scores at this size) raise events
    # and incidents: the whole path to the database runs while nothing is encoded.
    events = {"min_confidence": 0.25, "window": 2, "min_hits": 1, "close_after_s": 2.0}
    analytics = {"rules": [{"name": "seen", "kind": "presence", "classes": ["charging_cable", "person"]}]}
    cam1 = camera("cam1", clip, classes=["charging_cable", "person"], events=events, analytics=analytics,
                  push_mode="on_demand")  # fmt: skip
    tmp = tmp_path_factory.mktemp("ondemand-system")
    config = build_config(tmp, media, NAMESPACE, [cam1], pusher={"on_demand_idle_s": IDLE_S})
    with running_system(config, start_timeout_s=240):
        yield config


@pytest.fixture(scope="module")
def api(system: SystemConfig) -> Iterator[TestClient]:
    store = EventStore(system.sink.database_url)
    store.migrate()
    app = create_app(RayControlPlane(namespace=NAMESPACE, timeout_s=30.0), store, system.api, pusher=system.pusher,
                     keyframe_dir=system.sink.keyframe_dir)  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_for(lambda: client.get("/cameras/cam1").json().get("state") == "live", 180, "cam1 live")
        yield client
    store.close()


def _output(api: TestClient) -> dict[str, Any]:
    return dict(api.get("/cameras/cam1").json()["stats"]["output"])


def test_on_demand_camera_through_the_api(api: TestClient, system: SystemConfig) -> None:
    playlist = Path(system.pusher.hls_dir) / "cam1" / "index.m3u8"
    store = EventStore(system.sink.database_url)
    try:
        # Unwatched: every frame analysed, nothing encoded, events and incidents recorded.
        wait_for(lambda: store.query(EventQuery(camera_id="cam1")).items, 120, "events of cam1 in the database")
        wait_for(lambda: store.incidents.query(IncidentQuery(camera_id="cam1")).items, 60, "incidents of cam1")
        output = _output(api)
        assert output["frames"] > 5 and output["inferred"] > 0
        assert output["encoded"] == 0 and output["pushing"] is False and output["push"]["state"] == "idle"
        assert output["demand"]["starts"] == 0 and not playlist.exists()
        listed = api.get("/cameras").json()[0]
        assert listed["push_mode"] == "on_demand" and listed["pushing"] is False
    finally:
        store.close()

    # A player asks for the playlist: the encoder starts and the answer waits for its first segment.
    started = time.monotonic()
    answer = api.get("/hls/cam1/index.m3u8")
    first_playlist_s = time.monotonic() - started
    assert answer.status_code == 200 and "#EXTM3U" in answer.text, answer.text
    assert first_playlist_s < system.pusher.hls_segment_s + system.pusher.gop_s + 3.0, first_playlist_s
    segment = next(line for line in answer.text.splitlines() if line.endswith(".ts"))
    assert api.get(f"/hls/cam1/{segment}").status_code == 200
    output = _output(api)
    assert output["pushing"] is True and output["demand"]["starts"] == 1 and output["demand"]["viewers"] >= 1
    assert output["push"]["state"] == "running"

    # Nobody asks for IDLE_S: the encoder stops and its playlist goes.
    wait_for(lambda: _output(api)["pushing"] is False, IDLE_S + 15, "the idle encoder to stop")
    assert _output(api)["demand"]["stops"] == 1
    wait_for(lambda: not playlist.exists(), 15, "the stopped stream's playlist removed")
    assert api.get("/hls/cam1/index.m3u8").status_code == 200, "a new playlist GET starts it again"
    wait_for(lambda: _output(api)["pushing"] is False, IDLE_S + 15, "the encoder to stop again")

    # MJPEG: the first picture comes from a frame drawn after the request.
    started = time.monotonic()
    with api.stream("GET", "/cameras/cam1/live.mjpg") as stream:
        assert stream.status_code == 200
        received = b""
        for chunk in stream.iter_bytes():
            received += chunk
            if BOUNDARY in received and b"\xff\xd9" in received:
                break
    first_mjpeg_s = time.monotonic() - started
    assert b"image/jpeg" in received and first_mjpeg_s < 2.0, first_mjpeg_s
    wait_for(lambda: _output(api)["demand"]["starts"] == 3, 10, "MJPEG to start the encoder")

    # An explicit watch call answers with the state; a camera that does not exist is a 404.
    watched = api.post("/cameras/cam1/watch").json()
    assert watched["push_mode"] == "on_demand" and watched["demanded"] is True and watched["idle_s"] == IDLE_S
    assert api.post("/cameras/nope/watch").status_code == 404
