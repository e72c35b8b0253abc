"""Camera endpoints, live views, HLS, readiness, metrics and /infer against the REAL controller.

One small system for the module (Ray, the CPU ONNX model, one 320x240 looping file camera): the API
is built by create_app around the real Ray adapter and a real SQLite EventStore, and driven with
TestClient. The controller and pipeline are the other engineers' actors, started as `run` would.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip
from trtseg.config import SystemConfig
from trtseg.db import EventStore

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-api"
TOKEN = "api-e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("api-media")
    make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    shutil.copy(media / "clip.mp4", media / "clip2.mp4")
    return media


@pytest.fixture(scope="module")
def system(ray_local: RayTestCluster, media: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from actors.launch import running_system

    tmp = tmp_path_factory.mktemp("api-system")
    config = system_config(tmp, media, NAMESPACE, [camera("cam1", media / "clip.mp4", site="block-7")])
    config.api.token = TOKEN  # type: ignore[assignment]
    with running_system(config, start_timeout_s=240):
        yield config


@pytest.fixture(scope="module")
def api(system: SystemConfig) -> Iterator[TestClient]:
    store = EventStore(system.sink.database_url)
    store.migrate()
    app = create_app(
        RayControlPlane(namespace=NAMESPACE, timeout_s=30.0),
        store,
        system.api,
        pusher=system.pusher,
        keyframe_dir=system.sink.keyframe_dir,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        seen: list[Any] = []

        def live() -> bool:
            seen[:] = [client.get("/cameras/cam1").json()]
            return seen[0].get("state") == "live"

        try:
            wait_for(live, 180, "cam1 live")
        except AssertionError as error:
            raise AssertionError(f"{error}; last answer {seen}") from None
        yield client
    store.close()


def test_list_and_get(api: TestClient) -> None:
    cameras = api.get("/cameras").json()
    assert [c["id"] for c in cameras] == ["cam1"]
    cam = api.get("/cameras/cam1").json()
    assert cam["state"] == "live" and cam["config"]["site"] == "block-7"
    assert cam["stats"]["decoder"]["width"] == 320
    missing = api.get("/cameras/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_frame_jpg(api: TestClient) -> None:
    answer = wait_for(lambda: (r := api.get("/cameras/cam1/frame.jpg")).status_code == 200 and r, 60, "a frame")
    assert answer.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (240, 320)
    assert api.get("/cameras/nope/frame.jpg").status_code == 404


def _mjpeg_frames(client: TestClient, path: str, count: int, timeout_s: float = 30.0) -> list[bytes]:
    frames: list[bytes] = []
    buffer = b""
    deadline = time.monotonic() + timeout_s
    with client.stream("GET", path) as response:
        assert response.status_code == 200
        boundary = re.search(r"boundary=(\S+)", response.headers["content-type"]).group(1)  # type: ignore[union-attr]
        for chunk in response.iter_bytes():
            buffer += chunk
            while True:
                start = buffer.find(b"\r\n\r\n")
                head = buffer[:start].decode("latin-1") if start >= 0 else ""
                match = re.search(r"Content-Length: (\d+)", head)
                if start < 0 or not match or len(buffer) < start + 4 + int(match.group(1)):
                    break
                assert head.startswith(f"--{boundary}")
                end = start + 4 + int(match.group(1))
                frames.append(buffer[start + 4 : end])
                buffer = buffer[end + 2 :]
            if len(frames) >= count or time.monotonic() > deadline:
                break
    return frames


def test_live_mjpeg_moves(api: TestClient) -> None:
    frames = _mjpeg_frames(api, "/cameras/cam1/live.mjpg", count=6)
    assert len(frames) >= 6
    assert all(frame[:2] == b"\xff\xd8" for frame in frames)
    assert len(set(frames)) > 1, "the live view should show different frames over time"
    assert api.get("/cameras/nope/live.mjpg").status_code == 404


def test_stream_urls_and_hls(api: TestClient) -> None:
    urls = api.get("/cameras/cam1/stream").json()
    assert urls["live_mjpeg"].endswith("/cameras/cam1/live.mjpg")
    assert urls["hls"].endswith("/hls/cam1/index.m3u8") and "hls" not in urls["pushed"]
    playlist = wait_for(lambda: (r := api.get("/hls/cam1/index.m3u8")).status_code == 200 and r, 60, "HLS playlist")
    assert playlist.text.startswith("#EXTM3U")
    segment = next(line for line in playlist.text.splitlines() if line.endswith(".ts"))
    ts = api.get(f"/hls/cam1/{segment}")
    assert ts.status_code == 200 and ts.headers["content-type"] == "video/mp2t" and ts.content[0] == 0x47


def test_add_change_remove(api: TestClient, media: Path, tmp_path: Path) -> None:
    body: dict[str, Any] = {"id": "cam2", "source": str(media / "clip2.mp4"), "loop": True, "inference_fps": 2}
    assert api.post("/cameras", json=body).status_code == 401
    outside = tmp_path / "x.mp4"
    shutil.copy(media / "clip.mp4", outside)
    refused = api.post("/cameras", json={**body, "source": str(outside)}, headers=AUTH)
    assert refused.status_code == 422 and "source" in str(refused.json()["detail"])
    assert api.post("/cameras", json={**body, "source": "gopher://x/y"}, headers=AUTH).status_code == 422
    assert api.post("/cameras", json={**body, "confidence": "high"}, headers=AUTH).status_code == 422

    added = api.post("/cameras", json=body, headers=AUTH)
    assert added.status_code == 201, added.text
    assert added.json()["id"] == "cam2"
    assert api.post("/cameras", json=body, headers=AUTH).status_code == 409
    assert {c["id"] for c in api.get("/cameras").json()} == {"cam1", "cam2"}

    patched = api.patch("/cameras/cam2", json={"confidence": 0.4, "site": "block-9"}, headers=AUTH)
    assert patched.status_code == 200, patched.text
    assert patched.json()["config"]["confidence"] == 0.4 and patched.json()["config"]["site"] == "block-9"
    assert api.patch("/cameras/cam2", json={"confidence": 7}, headers=AUTH).status_code == 422
    assert api.patch("/cameras/cam2", json={"id": "other"}, headers=AUTH).status_code == 422
    assert api.put("/cameras/cam2", json={**body, "id": "cam3"}, headers=AUTH).status_code == 422
    replaced = api.put("/cameras/cam2", json={**body, "enabled": False}, headers=AUTH)
    assert replaced.status_code == 200 and replaced.json()["state"] == "disabled"

    assert api.delete("/cameras/cam2", headers=AUTH).status_code == 204
    assert api.delete("/cameras/cam2", headers=AUTH).status_code == 404
    assert api.patch("/cameras/cam2", json={"confidence": 0.2}, headers=AUTH).status_code == 404
    assert [c["id"] for c in api.get("/cameras").json()] == ["cam1"]


def test_ready_metrics_config(api: TestClient) -> None:
    ready = wait_for(lambda: (r := api.get("/ready")).status_code == 200 and r, 60, "readiness")
    assert ready.json()["ready"] is True and "camera:cam1" in ready.json()["components"]
    metrics = api.get("/metrics").text
    assert "trtseg_controller_up 1" in metrics
    assert re.search(r'trtseg_camera_live\{camera_id="cam1",site="block-7"\} 1', metrics)
    assert re.search(r'trtseg_camera_decoder_frames\{camera_id="cam1"[^}]*\} \d+', metrics)
    config = api.get("/config")
    assert config.status_code == 200
    assert TOKEN not in config.text and config.json()["api"]["token"] == "***"


def test_infer(api: TestClient, media: Path) -> None:
    capture = cv2.VideoCapture(str(media / "clip.mp4"))
    ok, image = capture.read()
    capture.release()
    assert ok
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    assert api.post("/infer", content=encoded, headers={"Content-Type": "image/jpeg"}).status_code == 401
    answer = api.post("/infer", content=encoded, headers={**AUTH, "Content-Type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["width"], result["height"]) == (320, 240) and result["count"] == len(result["instances"])
    for instance in result["instances"]:
        assert 0 <= instance["score"] <= 1 and len(instance["box"]) == 4
    annotated = api.post(
        "/infer", params={"format": "jpeg"}, files={"file": ("f.jpg", encoded, "image/jpeg")}, headers=AUTH
    )
    assert annotated.status_code == 200 and annotated.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(annotated.content, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (240, 320)
    none = api.post(
        "/infer", params={"classes": "no_such_class"}, content=encoded, headers={**AUTH, "Content-Type": "image/jpeg"}
    )
    assert none.status_code == 200 and none.json()["count"] == 0


def test_fuzz_against_real_controller(api: TestClient) -> None:
    """schemathesis over every read and the camera writes with a live controller: no 5xx at all.

    Writes go without the token (so nothing random is started): they must be refused with 401/422.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app).exclude(path_regex=r".*(live\.mjpg|/infer)$")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        run()
    assert not failures, failures
    assert [c["id"] for c in api.get("/cameras").json()] == ["cam1"]


def test_live_view_ends_when_the_client_leaves(api: TestClient) -> None:
    """Over a real HTTP server (uvicorn): the stream's generator stops once the client disconnects."""
    import threading

    import httpx
    import uvicorn

    from tests.services.ports import free_port, wait_for_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout_s=20)
        base = f"http://127.0.0.1:{port}"

        def open_views() -> int:
            text = httpx.get(f"{base}/metrics", timeout=10).text
            return int(re.search(r"^trtseg_api_live_views (\d+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]

        with httpx.Client(timeout=20) as client, client.stream("GET", f"{base}/cameras/cam1/live.mjpg") as response:
            received = 0
            while_open = -1
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > 20_000:
                    while_open = open_views()  # read while the stream is being consumed
                    break
            assert while_open == 1
        assert wait_for(lambda: open_views() == 0, 10, "the live view to end after the client left")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
