"""GET /incidents (filters, cursor), GET /incidents/{id}, key frames per stage, acknowledgement (single and
bulk, token rules), and the 422s that name the parameter, on a real database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import T0, jpeg
from tests.db.incident_helpers import incident, lifecycle
from trtseg.analytics.records import IncidentRecord
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore

TOKEN = "incident-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _seed(store: EventStore, keyframe_dir: Path) -> list[IncidentRecord]:
    keyframes = KeyframeStore(keyframe_dir)
    records: list[IncidentRecord] = []
    for i in range(8):
        base = incident(
            f"inc-{i}",
            started=T0 + timedelta(minutes=i),
            seen_s=20.0,
            camera_id="cam1" if i < 5 else "cam2",
            site="block-7" if i < 6 else "block-9",
            rule="cable_outside" if i % 2 else "crowd",
            zone="building_safe_zone" if i % 2 else "door",
            class_name="charging_cable" if i % 2 else "person",
            severity="alert" if i in (1, 3) else "detection",
            status="open" if i >= 4 else "closed",
            ended_at=None if i >= 4 else T0 + timedelta(minutes=i, seconds=30),
        )
        paths = {"open": keyframes.save(base.site, base.camera_id, T0.date(), f"inc-{i}-open",
                                        {"raw": jpeg(seed=i), "annotated": jpeg(seed=100 + i)})}  # fmt: skip
        records.append(replace(base, keyframe_paths=paths))
    store.incidents.upsert(records)
    return records


def _ids(client: TestClient, **params: object) -> list[str]:
    answer = client.get("/incidents", params={"limit": 100, "order": "asc", **params})
    assert answer.status_code == 200, answer.text
    return [item["incident_id"] for item in answer.json()["items"]]


def test_list_filters_and_pages(make_client: Callable[..., TestClient], store: EventStore, keyframe_dir: Path) -> None:
    _seed(store, keyframe_dir)
    client = make_client(store=store)
    assert _ids(client) == [f"inc-{i}" for i in range(8)]
    assert _ids(client, severity="alert") == ["inc-1", "inc-3"]
    assert _ids(client, rule="crowd", camera_id="cam1") == ["inc-0", "inc-2", "inc-4"]
    assert _ids(client, zone="door", class_name="person", site="block-9") == ["inc-6"]
    assert _ids(client, status="open") == ["inc-4", "inc-5", "inc-6", "inc-7"]
    assert _ids(client, since=(T0 + timedelta(minutes=6, seconds=10)).isoformat()) == ["inc-6", "inc-7"]
    assert _ids(client, until=(T0 + timedelta(minutes=2)).isoformat()) == ["inc-0", "inc-1"]
    assert _ids(client, acknowledged="false") == [f"inc-{i}" for i in range(8)]
    newest = client.get("/incidents").json()["items"][0]
    assert newest["incident_id"] == "inc-7" and newest["acknowledged"] is False
    assert newest["keyframe_paths"]["open"]["raw"].endswith("inc-7-open_raw.jpg")

    seen: list[str] = []
    params: dict[str, object] = {"limit": 3, "severity": "detection"}
    for _ in range(10):
        page = client.get("/incidents", params=params).json()
        seen += [item["incident_id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params = {"limit": 3, "severity": "detection", "cursor": page["next_cursor"]}
    assert seen == [f"inc-{i}" for i in (7, 6, 5, 4, 2, 0)]


def _field_errors(answer: object) -> list[list[object]]:
    assert answer.status_code == 422, answer.text  # type: ignore[attr-defined]
    detail = answer.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, list), detail
    return [item["loc"] for item in detail]


def test_bad_parameters_are_422_naming_the_field(client: TestClient) -> None:
    assert ["query", "severity"] in _field_errors(client.get("/incidents", params={"severity": "critical"}))
    assert ["query", "status"] in _field_errors(client.get("/incidents", params={"status": "reopened"}))
    assert ["query", "acknowledged"] in _field_errors(client.get("/incidents", params={"acknowledged": "maybe"}))
    assert ["query", "cursor"] in _field_errors(client.get("/incidents", params={"cursor": "garbage!"}))
    assert ["query", "since"] in _field_errors(client.get("/incidents", params={"since": "yesterday"}))
    since_after = {"since": T0.isoformat(), "until": (T0 - timedelta(hours=1)).isoformat()}
    assert ["query", "since"] in _field_errors(client.get("/incidents", params=since_after))
    assert ["query", "limit"] in _field_errors(client.get("/incidents", params={"limit": 0}))
    assert ["path", "incident_id"] in _field_errors(client.get("/incidents/" + "x" * 49))
    assert ["path", "stage"] in _field_errors(client.get("/incidents/inc-1/keyframe/later/raw"))
    assert ["path", "kind"] in _field_errors(client.get("/incidents/inc-1/keyframe/open/thumbnail"))


def test_a_cursor_only_continues_its_own_query(
    make_client: Callable[..., TestClient], sqlite_store: EventStore, keyframe_dir: Path
) -> None:
    _seed(sqlite_store, keyframe_dir)
    client = make_client()
    page = client.get("/incidents", params={"limit": 2, "severity": "detection"}).json()
    answer = client.get("/incidents", params={"limit": 2, "severity": "alert", "cursor": page["next_cursor"]})
    assert ["query", "cursor"] in _field_errors(answer)
    assert "other filters" in answer.json()["detail"][0]["msg"]


def test_get_one_and_its_key_frames(
    make_client: Callable[..., TestClient], sqlite_store: EventStore, keyframe_dir: Path
) -> None:
    records = _seed(sqlite_store, keyframe_dir)
    client = make_client()
    one = client.get("/incidents/inc-3").json()
    assert one["severity"] == "alert" and one["track_id"] == 7 and one["trajectory"] == [[0.0, 0.5, 0.5]]
    assert datetime.fromisoformat(one["started_at"]) == records[3].started_at
    assert client.get("/incidents/inc-404").status_code == 404

    raw = client.get("/incidents/inc-3/keyframe/open/raw")
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/jpeg" and raw.content == jpeg(seed=3)
    assert client.get("/incidents/inc-3/keyframe/open/annotated").content == jpeg(seed=103)
    missing_stage = client.get("/incidents/inc-3/keyframe/alert/raw")
    assert missing_stage.status_code == 404 and "alert" in missing_stage.json()["detail"]
    assert client.get("/incidents/inc-404/keyframe/open/raw").status_code == 404
    # The file is not on this replica's disk: it asks the controller, which is down here.
    (keyframe_dir / records[2].keyframe_paths["open"]["raw"]).unlink()
    assert client.get("/incidents/inc-2/keyframe/open/raw").status_code == 503


def test_acknowledge_needs_the_token_and_keeps_the_first(
    make_client: Callable[..., TestClient], sqlite_store: EventStore, keyframe_dir: Path
) -> None:
    _seed(sqlite_store, keyframe_dir)
    client = make_client(token=TOKEN)
    assert client.post("/incidents/inc-1/ack").status_code == 401
    assert client.post("/incidents/ack", json={"ids": ["inc-1"]}).status_code == 401
    assert client.get("/incidents/inc-1").status_code == 200, "reads stay open without token_for_reads"

    one = client.post("/incidents/inc-1/ack", json={"by": "ops"}, headers=AUTH)
    assert one.status_code == 200 and one.json()["acknowledged"] and one.json()["acknowledged_by"] == "ops"
    assert one.json()["status"] == "closed", "acknowledging changes nothing else"
    bare = client.post("/incidents/inc-2/ack", headers=AUTH)
    assert bare.status_code == 200 and bare.json()["acknowledged_by"] is None
    assert client.post("/incidents/inc-404/ack", headers=AUTH).status_code == 404

    bulk = client.post("/incidents/ack", json={"ids": ["inc-1", "inc-5", "nope", "inc-5"], "by": "night"}, headers=AUTH)
    assert bulk.status_code == 200 and bulk.json() == {"acknowledged": ["inc-1", "inc-5"], "not_found": ["nope"]}
    assert client.get("/incidents/inc-1").json()["acknowledged_by"] == "ops"
    assert client.get("/incidents/inc-5").json()["acknowledged_by"] == "night"
    unacknowledged = client.get("/incidents", params={"acknowledged": "false", "limit": 100}).json()["items"]
    assert {item["incident_id"] for item in unacknowledged} == {"inc-0", "inc-3", "inc-4", "inc-6", "inc-7"}

    for body, field in (
        ({"ids": []}, "ids"),
        ({"ids": ["a/b"]}, "ids"),
        ({"ids": ["inc-1"], "by": ""}, "by"),
        ({"ids": ["inc-1"], "who": "x"}, "who"),
    ):
        locs = _field_errors(client.post("/incidents/ack", json=body, headers=AUTH))
        assert any(field in map(str, loc) for loc in locs), (body, locs)


def test_lifecycle_through_the_store_reads_back_whole(
    make_client: Callable[..., TestClient], sqlite_store: EventStore
) -> None:
    sqlite_store.incidents.upsert(lifecycle("inc-life"))
    item = make_client().get("/incidents/inc-life").json()
    assert item["status"] == "closed" and item["severity"] == "alert" and item["peak_fraction"] == 0.62
    assert set(item["keyframe_paths"]) == {"open", "alert", "close"} and len(item["trajectory"]) == 4


def test_database_down_is_503(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    store = EventStore("mysql://root@127.0.0.1:9/nowhere")
    client = make_client(store=store)
    for path in ("/incidents", "/incidents/inc-1"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.headers["retry-after"], path
    metrics = client.get("/metrics").text
    assert "trtseg_incident_database_up 0" in metrics
    store.close()


def test_openapi_lists_the_new_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/incidents",
        "/incidents/{incident_id}",
        "/incidents/{incident_id}/keyframe/{stage}/{kind}",
        "/incidents/{incident_id}/ack",
        "/incidents/ack",
        "/cameras/{camera_id}/analytics",
        "/zones/counts",
    ):
        assert path in paths, path
    assert paths["/incidents"]["get"]["description"].startswith("Incidents")


@pytest.mark.parametrize("severity", ["alert", "detection"])
def test_metrics_show_open_incidents(
    make_client: Callable[..., TestClient], sqlite_store: EventStore, severity: str
) -> None:
    sqlite_store.incidents.upsert([incident("inc-m1", severity=severity), incident("inc-m2", severity=severity)])
    sqlite_store.incidents.acknowledge(["inc-m2"], by="ops")
    text = make_client().get("/metrics").text
    base = f'site="block-7",camera_id="cam1",rule="cable_outside",severity="{severity}"'
    assert f'trtseg_incidents_open{{{base},acknowledged="false"}} 1' in text
    assert f'trtseg_incidents_open{{{base},acknowledged="true"}} 1' in text
    assert "trtseg_incident_database_up 1" in text
