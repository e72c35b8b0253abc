"""GET /incidents/{id}/track: the outline track a camera recorded, stored through the real incident store
(SQLite and MariaDB), with capture times for the clip overlay; listings leave it out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fastapi.testclient import TestClient

from tests.analytics.helpers import cable_at, objects
from tests.analytics.test_rules import ORIGIN, make, run
from tests.db.incident_helpers import incident
from trtseg.analytics.evidence import OUTLINE_KEY
from trtseg.db import EventStore


def test_the_track_of_a_recorded_incident(make_client: Callable[..., TestClient], store: EventStore) -> None:
    analytics = make([{**ORIGIN, "close_after_s": 1.0}])
    records = run(analytics, [objects(cable_at(0.6))] * 12 + [objects()] * 8)
    store.incidents.upsert([replace(r, keyframes={}) for r in records])
    closed = records[-1]
    assert closed.status == "closed"
    client = make_client(store=store)

    answer = client.get(f"/incidents/{closed.incident_id}/track")
    assert answer.status_code == 200, answer.text
    track = answer.json()
    assert track["incident_id"] == closed.incident_id
    assert track["started_ts"] == round(closed.started_at.timestamp(), 3) and track["every_s"] == 0.2
    assert track["shapes"] == [
        {"name": "safe", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "closed": True}
    ]
    samples = track["samples"]
    assert len(samples) == 12  # every inferred frame (5 a second) while the cable was seen
    assert samples[0]["ts"] == round(closed.started_at.timestamp(), 3)
    assert samples[-1]["ts"] <= closed.last_seen_at.timestamp() + 1e-3
    assert [s["ts"] - s["t"] for s in samples] == [track["started_ts"]] * 12
    assert all(0 <= x <= 1 and 0 <= y <= 1 for s in samples for poly in s["outlines"] for x, y in poly)

    one = client.get(f"/incidents/{closed.incident_id}").json()
    assert OUTLINE_KEY not in one["details"]
    listed = client.get("/incidents").json()["items"]
    assert [i["incident_id"] for i in listed] == [closed.incident_id] and OUTLINE_KEY not in listed[0]["details"]


def test_no_track_unknown_incident_and_a_track_that_does_not_parse(
    make_client: Callable[..., TestClient], store: EventStore
) -> None:
    broken = incident("inc-broken", details={OUTLINE_KEY: {"t0": "soon", "samples": 3}})
    store.incidents.upsert([incident("inc-plain"), broken])
    client = make_client(store=store)
    for iid in ("inc-plain", "inc-broken"):
        answer = client.get(f"/incidents/{iid}/track")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"incident_id": iid, "started_ts": None, "every_s": None, "shapes": [], "samples": []}
    missing = client.get("/incidents/inc-none/track")
    assert missing.status_code == 404 and "inc-none" in missing.json()["detail"]
    assert client.get("/incidents/bad id!/track").status_code == 422
