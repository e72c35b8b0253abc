"""Hostile HTTP input against the real API app (create_app) over a real EventStore, EventSink and key frame files.

SQL-looking strings in every text field (stored verbatim, matched literally, never executed), path
traversal in key frame and HLS requests, oversized and bomb uploads to /infer. Nothing may answer
500, crash, or hand out a file from outside its directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import RayControlPlane
from trtseg.config import ApiConfig, PusherConfig, SinkConfig
from trtseg.db import EventStore
from trtseg.events import EventRecord, new_event_id
from trtseg.sink import EventSink

SQL = [
    "'; DROP TABLE events; --",
    "x' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM events WHERE 1=1 /*",
    "Robert'); UPDATE events SET site='pwned'; --",
    "\\'; SELECT SLEEP(5); -- ",
    "%' UNION SELECT event_id, NULL FROM schema_version -- ",
]
SECRET = b"root:x:0:0:secret-outside-the-root\n"


def _jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _record(text: str, index: int, **changes: Any) -> EventRecord:
    started = datetime(2026, 11, 20, 8, 0, tzinfo=UTC) + timedelta(minutes=index)
    values: dict[str, Any] = {
        "event_id": new_event_id(started.timestamp()),
        "site": text,
        "camera_id": text[:60],
        "class_name": text[:60],
        "status": "closed",
        "started_at": started,
        "last_seen_at": started + timedelta(seconds=3),
        "ended_at": started + timedelta(seconds=6),
        "best_confidence": 0.9,
        "frames_seen": 3,
        "result": text,
        "instances": [{"class_name": text, "score": 0.9, "box": [1.0, 2.0, 3.0, 4.0], "note": text}],
        "keyframe_raw_jpeg": _jpeg(index),
        "keyframe_annotated_jpeg": _jpeg(index + 100),
    }
    values.update(changes)
    return EventRecord(**values)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh database on the real MariaDB (tests/services/mariadb.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    from sqlalchemy import create_engine, make_url, text

    base = make_url(str(request.getfixturevalue("mysql_url")))
    name = f"trtseg_rel_{uuid.uuid4().hex[:10]}"
    yield base.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(base.set(database=None))
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    found = {name: tmp_path / name for name in ("keyframes", "spool", "hls")}
    for path in found.values():
        path.mkdir()
    (tmp_path / "secret.m3u8").write_bytes(SECRET)
    (tmp_path / "secret.jpg").write_bytes(SECRET)
    return found


@pytest.fixture
def api(database_url: str, dirs: dict[str, Path]) -> Iterator[tuple[TestClient, EventSink]]:
    """The real app and a real sink writing into the same database; no controller runs (503 for its calls)."""
    sink_config = SinkConfig(
        database_url=database_url, keyframe_dir=dirs["keyframes"], spool_dir=dirs["spool"], flush_interval_s=0.1
    )
    sink = EventSink(sink_config)
    store = EventStore(database_url)
    store.migrate()
    control = RayControlPlane(namespace=f"trtseg-absent-{uuid.uuid4().hex[:6]}", timeout_s=3.0)
    app = create_app(
        control,
        store,
        ApiConfig(max_upload_mb=1),
        pusher=PusherConfig(hls_dir=dirs["hls"]),
        keyframe_dir=dirs["keyframes"],
    )
    client = TestClient(app, raise_server_exceptions=False)
    try:
        yield client, sink
    finally:
        client.close()
        sink.close()
        store.close()


def test_sql_in_every_text_field_is_stored_verbatim_and_matched_literally(
    api: tuple[TestClient, EventSink], dirs: dict[str, Path]
) -> None:
    client, sink = api
    records = [_record(text, i) for i, text in enumerate(SQL)]
    assert sink.submit(records) == len(records)
    sink.flush()
    assert sink.stats()["written"] == len(records) and sink.stats()["rejected"] == 0

    everything = client.get("/events", params={"limit": 100})
    assert everything.status_code == 200
    assert len(everything.json()["items"]) == len(records), "a statement in the data deleted or added rows"

    for record in records:
        page = client.get("/events", params={"site": record.site, "limit": 100})
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert [item["event_id"] for item in items] == [record.event_id], record.site
        item = items[0]
        assert item["site"] == record.site and item["result"] == record.result
        assert item["camera_id"] == record.camera_id and item["class_name"] == record.class_name
        assert item["instances"][0]["note"] == record.site
        by_camera = client.get("/events", params={"camera_id": record.camera_id, "class_name": record.class_name})
        assert [i["event_id"] for i in by_camera.json()["items"]] == [record.event_id]
        shot = client.get(f"/events/{record.event_id}/keyframe", params={"kind": "raw"})
        assert shot.status_code == 200 and shot.content[:2] == b"\xff\xd8"

    for probe in ("' OR '1'='1", "%", "_", "*", "' OR 1=1 --"):
        page = client.get("/events", params={"site": probe})
        assert page.status_code == 200 and page.json()["items"] == [], probe
    for group_by in ("site;DROP TABLE events", "site) OR (1=1", "sleep(5)"):
        assert client.get("/events/counts", params={"group_by": group_by}).status_code == 422
    for event_id in ("x' OR '1'='1", "1;DROP TABLE events"):
        assert client.get(f"/events/{event_id}").status_code in (404, 422)
    counts = client.get("/events/counts", params={"group_by": "site"})
    assert counts.status_code == 200
    assert sum(int(row["count"]) for row in counts.json()["rows"]) == len(records)
    # Key frame files were named from sanitised components: nothing outside the directory.
    outside = [p for p in dirs["keyframes"].parent.rglob("*.jpg") if not p.is_relative_to(dirs["keyframes"])]
    assert [p.name for p in outside] == ["secret.jpg"]


@pytest.mark.parametrize(
    "path",
    ["../secret.jpg", "../../secret.jpg", "/etc/passwd", "site/../../secret.jpg", "..\\secret.jpg", "a\x00/../x.jpg"],
)
def test_keyframe_paths_from_the_database_cannot_leave_the_directory(
    api: tuple[TestClient, EventSink], path: str
) -> None:
    """A row whose key frame path was tampered with in the database is refused (404/503), never served."""
    client, sink = api
    record = _record("site", 0, keyframe_raw_jpeg=None, keyframe_annotated_jpeg=None, keyframe_annotated_path=path)
    sink.store.upsert([record])
    response = client.get(f"/events/{record.event_id}/keyframe")
    assert response.status_code in (404, 503), response.status_code
    assert b"secret-outside-the-root" not in response.content


@pytest.mark.parametrize(
    "url",
    [
        "/hls/%2e%2e/secret.m3u8",
        "/hls/cam1/..%2Fsecret.m3u8",
        "/hls/cam1/..%2F..%2Fsecret.m3u8",
        "/hls/cam1/%2e%2e%2f%2e%2e%2fsecret.m3u8",
        "/hls/../secret.m3u8",
        "/hls/cam1/index.m3u8%00.ts",
        "/hls/cam1/....//secret.m3u8",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_hls_and_static_traversal_is_refused(
    api: tuple[TestClient, EventSink], dirs: dict[str, Path], url: str
) -> None:
    client, _ = api
    (dirs["hls"] / "cam1").mkdir(exist_ok=True)
    (dirs["hls"] / "cam1" / "index.m3u8").write_text("#EXTM3U\n")
    response = client.get(url)
    assert response.status_code in (400, 404, 422), (url, response.status_code)
    assert b"secret-outside-the-root" not in response.content and b"root:x:0:0" not in response.content


def test_camera_ids_with_sql_or_paths_are_refused(api: tuple[TestClient, EventSink]) -> None:
    client, _ = api
    for camera_id in ("x'; DROP TABLE events;--", "../etc", "a/b", "cam 1"):
        body = {"id": camera_id, "source": "rtsp://127.0.0.1:1/x"}
        assert client.post("/cameras", json=body).status_code == 422, camera_id


def test_oversized_uploads_are_refused(api: tuple[TestClient, EventSink]) -> None:
    client, _ = api
    big = b"\xff\xd8" + bytes(3 * 1024 * 1024)
    declared = client.post("/infer", content=big, headers={"content-type": "image/jpeg"})
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            yield bytes(64 * 1024)

    streamed = client.post("/infer", content=chunks(), headers={"content-type": "image/jpeg"})
    assert streamed.status_code == 413, "a body without Content-Length is counted as it arrives"

    multipart = client.post("/infer", files={"file": ("big.jpg", big, "image/jpeg")})
    assert multipart.status_code == 413


def test_decompression_bomb_and_garbage_uploads(api: tuple[TestClient, EventSink]) -> None:
    client, _ = api
    bomb = cv2.imencode(".png", np.zeros((8000, 8000), dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
    assert bomb.nbytes < 1024 * 1024, "the bomb must fit under the upload limit to test the pixel bound"
    assert client.post("/infer", content=bomb.tobytes(), headers={"content-type": "image/png"}).status_code == 413
    garbage = np.random.default_rng(1).integers(0, 255, 50_000, dtype=np.uint8).tobytes()
    assert client.post("/infer", content=garbage, headers={"content-type": "image/jpeg"}).status_code == 415
    assert client.post("/infer", content=b"", headers={"content-type": "image/jpeg"}).status_code in (400, 415, 422)
    truncated = cv2.imencode(".jpg", np.full((200, 200, 3), 128, np.uint8))[1].tobytes()[:300]
    response = client.post("/infer", content=truncated, headers={"content-type": "image/jpeg"})
    assert response.status_code in (415, 503), "a truncated JPEG is refused, or decoded partially and sent on"
