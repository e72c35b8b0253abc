"""GET /incidents/{id}/clip: the MP4 whole or by byte ranges (206, 416), 404 for an unknown incident, no clip,
a failed or removed clip and one still recording; through a fake incident lookup, without Ray."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments import routes_clips
from tests.clips.helpers import render
from trtseg.clips.layout import ClipInfo, ClipLayout

INCIDENTS = {"inc1", "inc2", "inc3", "inc4", "inc5"}


@pytest.fixture()
def served(tmp_path: Path) -> tuple[TestClient, bytes]:
    layout = ClipLayout(tmp_path / "clips")
    relative = layout.recording("site", "cam1", "2026-12-01", "rec1")
    target = layout.resolve(relative)
    target.parent.mkdir(parents=True)
    render(tmp_path / "src.mp4", seconds=1.0)
    target.write_bytes((tmp_path / "src.mp4").read_bytes())
    layout.write_pointer("inc1", {"status": "ready", "clip": relative})
    info = ClipInfo("rec1", "cam1", "site", ["inc1", "incX"], relative, start_ts=100.0, end_ts=101.0, duration_s=1.0)
    target.with_suffix(".json").write_text(json.dumps(info.to_dict()))
    layout.write_pointer("inc2", {"status": "recording", "recording_id": "rec2"})
    layout.write_pointer("inc3", {"status": "failed", "error": "OSError: [Errno 28] No space left on device"})
    layout.write_pointer("inc4", {"status": "ready", "clip": "recordings/site/cam1/2026-12-01/gone.mp4"})
    layout.write_pointer("inc5", {"status": "ready", "clip": "../../etc/passwd"})
    app = FastAPI()
    lookup = lambda incident_id: {"incident_id": incident_id} if incident_id in INCIDENTS else None  # noqa: E731
    app.include_router(routes_clips.build_router(lambda: None, tmp_path / "clips", lookup=lookup))
    client = TestClient(app)
    client.clip_dir = tmp_path / "clips"  # type: ignore[attr-defined]
    return client, target.read_bytes()


def served_dir(client: TestClient) -> Path:
    return client.clip_dir  # type: ignore[attr-defined]


def test_whole_clip(served: tuple[TestClient, bytes]) -> None:
    client, data = served
    started = time.perf_counter()
    response = client.get("/incidents/inc1/clip")
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-disposition"].startswith("inline")
    head = client.head("/incidents/inc1/clip")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))


def test_byte_ranges(served: tuple[TestClient, bytes]) -> None:
    client, data = served
    size = len(data)
    first = client.get("/incidents/inc1/clip", headers={"Range": "bytes=0-99"})
    assert first.status_code == 206 and first.content == data[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{size}"
    tail = client.get("/incidents/inc1/clip", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    open_end = client.get("/incidents/inc1/clip", headers={"Range": f"bytes={size - 10}-"})
    assert open_end.status_code == 206 and open_end.content == data[-10:]
    beyond = client.get("/incidents/inc1/clip", headers={"Range": f"bytes={size}-{size + 10}"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert client.get("/incidents/inc1/clip", headers={"Range": "bytes=9-3"}).status_code in (400, 416)


def test_not_found(served: tuple[TestClient, bytes]) -> None:
    client, _ = served
    unknown = client.get("/incidents/nope/clip")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "incident 'nope' not found"
    recording = client.get("/incidents/inc2/clip")
    assert recording.status_code == 404 and "still being recorded" in recording.json()["detail"]
    assert recording.headers["retry-after"] == "5"
    failed = client.get("/incidents/inc3/clip")
    assert failed.status_code == 404 and "No space left" in failed.json()["detail"]
    removed = client.get("/incidents/inc4/clip")
    assert removed.status_code == 404 and "removed" in removed.json()["detail"]
    layout = ClipLayout(served_dir(client))
    os.utime(layout.pointer("inc2"), (time.time() - 3 * 3600, time.time() - 3 * 3600))
    interrupted = client.get("/incidents/inc2/clip")
    assert interrupted.status_code == 404 and "interrupted" in interrupted.json()["detail"]
    escaping = client.get("/incidents/inc5/clip")
    assert escaping.status_code == 404 and "no readable clip" in escaping.json()["detail"]
    assert client.get("/incidents/bad%20id/clip").status_code == 422


def test_no_clip_for_this_incident_and_no_clip_dir(tmp_path: Path) -> None:
    app = FastAPI()
    app.include_router(routes_clips.build_router(lambda: None, tmp_path, lookup=lambda i: {"incident_id": i}))
    response = TestClient(app).get("/incidents/inc9/clip")
    assert response.status_code == 404 and response.json()["detail"] == "incident 'inc9' has no clip"
    bare = FastAPI()
    bare.include_router(routes_clips.build_router(lambda: None, None, lookup=lambda i: {"incident_id": i}))
    assert TestClient(bare).get("/incidents/inc9/clip").status_code == 404


def test_a_store_that_fails_is_503(tmp_path: Path) -> None:
    def down(incident_id: str) -> None:
        raise ConnectionError("database down")

    app = FastAPI()
    app.include_router(routes_clips.build_router(lambda: None, tmp_path, lookup=down))
    response = TestClient(app).get("/incidents/inc1/clip")
    assert response.status_code == 503 and response.headers["retry-after"] == "2"


def test_clip_info(served: tuple[TestClient, bytes]) -> None:
    client, _ = served
    info = client.get("/incidents/inc1/clip/info")
    assert info.status_code == 200
    body = info.json()
    assert body["incident_ids"] == ["inc1", "incX"] and body["start_ts"] == 100.0 and body["capped"] is False
    assert client.get("/incidents/inc2/clip/info").status_code == 404
    assert client.get("/incidents/nope/clip/info").status_code == 404
