"""GET /events, /events/{id}, /events/{id}/keyframe and /events/counts on a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import T0, jpeg, make_record
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore


def _seed(store: EventStore, keyframe_dir: Path) -> list:
    keyframes = KeyframeStore(keyframe_dir)
    records = [make_record(camera_id="cam1", started=T0 + timedelta(minutes=i), keyframes=keyframes) for i in range(5)]
    records += [
        make_record(site="block-9", camera_id="cam2", class_name="person", started=T0 + timedelta(days=1, minutes=i))
        for i in range(3)
    ]
    records.append(make_record(camera_id="cam1", started=T0 + timedelta(hours=2), status="open"))
    store.upsert(records)
    return records


def test_list_filters_and_pages(make_client: Callable[..., TestClient], store: EventStore, keyframe_dir: Path) -> None:
    records = _seed(store, keyframe_dir)
    client = make_client(store=store)

    everything = client.get("/events", params={"limit": 100}).json()
    assert len(everything["items"]) == len(records)
    starts = [item["started_at"] for item in everything["items"]]
    assert starts == sorted(starts, reverse=True)

    persons = client.get("/events", params={"class_name": "person"}).json()["items"]
    assert {e["event_id"] for e in persons} == {r.event_id for r in records if r.class_name == "person"}
    assert client.get("/events", params={"site": "block-9", "camera_id": "cam1"}).json()["items"] == []
    open_ = client.get("/events", params={"status": "open"}).json()["items"]
    assert [e["status"] for e in open_] == ["open"]
    window = client.get(
        "/events", params={"since": T0.isoformat(), "until": (T0 + timedelta(minutes=3)).isoformat()}
    ).json()["items"]
    assert len(window) == 3

    seen: list[str] = []
    params = {"limit": 4, "order": "asc"}
    for _ in range(10):
        page = client.get("/events", params=params).json()
        seen += [item["event_id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params = {"limit": 4, "order": "asc", "cursor": page["next_cursor"]}
    assert len(seen) == len(records) == len(set(seen))


def test_get_event_and_keyframes(make_client: Callable[..., TestClient], store: EventStore, keyframe_dir: Path) -> None:
    records = _seed(store, keyframe_dir)
    client = make_client(store=store)
    with_frames = records[0]
    answer = client.get(f"/events/{with_frames.event_id}")
    assert answer.status_code == 200
    assert answer.json()["camera_id"] == "cam1"
    assert answer.json()["instances"][0]["class_name"] == "charging_cable"

    raw = client.get(f"/events/{with_frames.event_id}/keyframe", params={"kind": "raw"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/jpeg"
    assert raw.content == jpeg(seed=1)
    assert client.get(f"/events/{with_frames.event_id}/keyframe").content == jpeg(seed=2)

    missing = client.get("/events/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    without = records[-1]  # no key frames written, controller down: a clear answer, not a 500
    assert client.get(f"/events/{without.event_id}/keyframe").status_code in (404, 503)


def test_counts(make_client: Callable[..., TestClient], store: EventStore, keyframe_dir: Path) -> None:
    _seed(store, keyframe_dir)
    client = make_client(store=store)
    answer = client.get("/events/counts", params={"group_by": "class_name,day"})
    assert answer.status_code == 200
    rows = {(r["class_name"], r["day"]): r["count"] for r in answer.json()["rows"]}
    assert rows == {("charging_cable", "2026-11-20"): 6, ("person", "2026-11-21"): 3}
    by_site = client.get("/events/counts", params={"group_by": "site", "class_name": "person"}).json()["rows"]
    assert [(r["site"], r["count"]) for r in by_site] == [("block-9", 3)]
    assert client.get("/events/counts", params={"group_by": "site,password"}).status_code == 422
    assert client.get("/events/counts", params={"group_by": ""}).status_code == 422


def test_sql_looking_filters_are_plain_text(
    make_client: Callable[..., TestClient], store: EventStore, keyframe_dir: Path
) -> None:
    _seed(store, keyframe_dir)
    client = make_client(store=store)
    for value in ("' OR '1'='1", "cam1; DROP TABLE events; --", 'x" UNION SELECT * FROM events --'):
        answer = client.get("/events", params={"camera_id": value})
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"] == []
    assert len(client.get("/events", params={"limit": 100}).json()["items"]) == 9  # the table is intact


def test_bad_parameters_are_4xx(client: TestClient) -> None:
    cases = [
        {"limit": 0},
        {"limit": 100000},
        {"limit": "ten"},
        {"since": "yesterday"},
        {"status": "burning"},
        {"order": "sideways"},
        {"cursor": "not-a-cursor"},
        {"since": "2026-01-02T00:00:00", "until": "2026-01-01T00:00:00"},
        {"site": "x" * 500},
    ]
    for params in cases:
        answer = client.get("/events", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["detail"] and answer.json()["request_id"]
    # Times with no UTC equivalent, and naive against aware bounds (found by the fuzz test).
    for params in (
        {"since": "9999-12-31T23:00:00-05:00"},
        {"until": "0001-01-01T00:30:00+01:00"},
    ):
        for path in ("/events", "/events/counts"):
            answer = client.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
            assert "out of range" in answer.text
    mixed = {"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00+02:00"}
    assert client.get("/events/counts", params=mixed).status_code in (200, 503)
    assert client.get("/events", params=mixed).status_code in (200, 503)
    assert client.get("/events/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/events/bad id!/keyframe").status_code == 422
    assert client.get("/events/abc/keyframe", params={"kind": "../../x"}).status_code == 422


def test_keyframe_paths_cannot_escape(
    make_client: Callable[..., TestClient], sqlite_store: EventStore, keyframe_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(seed=9))
    record = make_record()
    record.keyframe_annotated_path = "../secret.jpg"
    record.keyframe_raw_path = str(secret)
    sqlite_store.upsert([record])
    client = make_client()
    for kind in ("annotated", "raw"):
        answer = client.get(f"/events/{record.event_id}/keyframe", params={"kind": kind})
        assert answer.status_code == 404, answer.text
        assert answer.content != secret.read_bytes()


def test_database_down_is_503(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    broken = EventStore(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    client = make_client(store=broken)
    answer = client.get("/events")
    assert answer.status_code == 503
    assert "database" in answer.json()["detail"]
