"""Streams on demand at the API without a controller: a watch request says the system is unavailable,
and HLS files on disk are still served (a viewer touch that cannot reach the pusher costs nothing)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg_1.ts\n"


def test_watch_without_controller_is_503(client: TestClient) -> None:
    answer = client.post("/cameras/cam1/watch")
    assert answer.status_code == 503 and "Ray" in answer.json()["detail"]
    assert client.post("/cameras/bad%20id/watch").status_code == 422


def test_playlist_served_while_the_controller_is_down(client: TestClient, hls_dir: Path) -> None:
    (hls_dir / "cam1").mkdir()
    (hls_dir / "cam1" / "index.m3u8").write_text(PLAYLIST)
    for _ in range(3):  # each GET tries to touch the pusher; none may fail the request
        answer = client.get("/hls/cam1/index.m3u8")
        assert answer.status_code == 200 and answer.text == PLAYLIST
    assert client.get("/hls/cam2/index.m3u8").status_code == 404


def test_openapi_lists_watch_and_push_mode(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"]["/cameras/{camera_id}/watch"]
    camera = schema["components"]["schemas"]["CameraStatus"]["properties"]
    assert {"push_mode", "pushing"} <= set(camera)
