"""IncidentStore on SQLite and MariaDB: forward-only idempotent upserts in any order, filters, cursor
pages, acknowledgement, the open incidents a restarted camera resumes from, and records refused."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.db.incident_helpers import T0, final_state, incident, lifecycle
from trtseg.db import EventStore, IncidentQuery, IncidentStore, RecordError
from trtseg.db.incidents import ROWS_PER_STATEMENT


@pytest.fixture
def incidents(store: EventStore) -> IncidentStore:
    return store.incidents


def state(incidents: IncidentStore, incident_id: str) -> dict[str, Any]:
    found = incidents.get(incident_id)
    assert found is not None, incident_id
    return found.model_dump()


def assert_state(incidents: IncidentStore, incident_id: str, expected: dict[str, Any]) -> None:
    got = state(incidents, incident_id)
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value), key
        else:
            assert got[key] == value, key


def test_every_field_round_trips(incidents: IncidentStore) -> None:
    record = incident(
        "inc-all-fields",
        line="door",
        escalated_at=T0 + timedelta(seconds=1),
        object_count=2,
        peak_count=3,
        details={"median": [0.1, 0.2], "note": "ünï 𝄞"},
        keyframe_paths={"open": {"raw": "a/b/c_raw.jpg", "annotated": "a/b/c_annotated.jpg"}},
    )
    assert incidents.upsert([record]) == 1
    got = incidents.get("inc-all-fields")
    assert got is not None and got.id > 0 and not got.acknowledged and got.acknowledged_at is None
    for name in ("site", "camera_id", "rule", "rule_kind", "zone", "line", "track_id", "class_name", "severity",
                 "status", "result", "started_at", "last_seen_at", "ended_at", "escalated_at", "frames_seen",
                 "object_count", "peak_count", "trajectory", "details", "instance", "keyframe_paths"):  # fmt: skip
        assert getattr(got, name) == getattr(record, name), name
    for name in ("confidence", "best_confidence", "fraction", "peak_fraction"):
        assert getattr(got, name) == getattr(record, name), f"{name} is stored exactly (DOUBLE)"
    assert got.started_at.tzinfo is not None and got.created_at.tzinfo is not None
    assert incidents.get("nope") is None


@pytest.mark.parametrize("order", ["forward", "reversed", "shuffled", "one_statement", "twice"])
def test_upserts_only_move_forward_in_any_order(incidents: IncidentStore, order: str) -> None:
    records = lifecycle("inc-life")
    if order == "forward":
        for r in records:
            incidents.upsert([r])
    elif order == "reversed":
        for r in reversed(records):
            incidents.upsert([r])
    elif order == "shuffled":
        shuffled = records[:]
        random.Random(7).shuffle(shuffled)
        for r in shuffled:
            incidents.upsert([r])
    elif order == "one_statement":  # duplicates of one key inside one multi-row statement
        incidents.upsert([records[2], records[0], records[4], records[1], records[3]])
    else:
        incidents.upsert(records)
        incidents.upsert(records)
    assert_state(incidents, "inc-life", final_state("inc-life"))


def test_any_arrival_order_ends_in_the_same_row(incidents: IncidentStore) -> None:
    records = lifecycle("inc-perm")
    ignore = {"id", "created_at", "updated_at"}
    ends = set()
    orders = random.Random(3).sample(list(itertools.permutations(records)), 24)
    for index, perm in enumerate(orders):
        incident_id = f"inc-perm-{index}"
        for r in perm:
            incidents.upsert([replace(r, incident_id=incident_id)])
        got = state(incidents, incident_id)
        got["keyframe_paths"] = {s: {k: p.replace(incident_id, "X") for k, p in v.items()} for s, v in
                                 got["keyframe_paths"].items()}  # fmt: skip
        ends.add(repr(sorted((k, v) for k, v in got.items() if k not in ignore | {"incident_id"})))
    assert len(ends) == 1, "the final row does not depend on the order the records arrive in"


def test_closed_never_reopens_and_severity_never_drops(incidents: IncidentStore) -> None:
    first, _refresh, alert, dip, close = lifecycle("inc-rules")
    incidents.upsert([alert, close])
    later_open = replace(dip, last_seen_at=close.last_seen_at + timedelta(seconds=30), severity="detection",
                         best_confidence=0.99, frames_seen=99, result="reopened?")  # fmt: skip
    incidents.upsert([later_open])
    got = state(incidents, "inc-rules")
    assert got["status"] == "closed" and got["ended_at"] == close.ended_at
    assert got["severity"] == "alert" and got["escalated_at"] == alert.escalated_at
    # Figures still only grow, and the newest record's text wins: a late refresh after the close is
    # a producer bug, but taking its figures loses nothing while reopening would duplicate the incident.
    assert got["best_confidence"] == pytest.approx(0.99) and got["frames_seen"] == 99
    assert got["last_seen_at"] == later_open.last_seen_at

    incidents.upsert([first])  # the oldest record, replayed
    again = state(incidents, "inc-rules")
    assert again["severity"] == "alert" and again["status"] == "closed" and again["result"] == "reopened?"
    assert again["keyframe_paths"] == {**first.keyframe_paths, **alert.keyframe_paths, **close.keyframe_paths}


def test_key_frame_paths_coalesce_and_escalation_is_set_once(incidents: IncidentStore) -> None:
    first, refresh, alert, dip, _close = lifecycle("inc-paths")
    incidents.upsert([first, refresh])
    assert state(incidents, "inc-paths")["keyframe_paths"] == first.keyframe_paths
    incidents.upsert([alert])
    second = replace(dip, escalated_at=dip.last_seen_at, keyframe_paths={"alert": {"annotated": "x_annotated.jpg"}})
    incidents.upsert([second])
    got = state(incidents, "inc-paths")
    assert got["escalated_at"] == alert.escalated_at
    assert got["keyframe_paths"] == {
        "open": first.keyframe_paths["open"],
        "alert": {**alert.keyframe_paths["alert"], "annotated": "x_annotated.jpg"},
    }


def test_count_rule_incidents_have_no_track(incidents: IncidentStore) -> None:
    base = incident("inc-count", rule="crowd", rule_kind="count", track_id=None, class_name=None, fraction=None,
                    peak_fraction=None, object_count=4, peak_count=4, instance=None)  # fmt: skip
    fewer = replace(base, last_seen_at=base.last_seen_at + timedelta(seconds=3), object_count=2, peak_count=2)
    incidents.upsert([fewer, base])
    got = state(incidents, "inc-count")
    assert got["track_id"] is None and got["object_count"] == 2 and got["peak_count"] == 4
    assert got["fraction"] is None and got["peak_fraction"] is None and got["instance"] is None


def test_acknowledge_single_and_bulk(incidents: IncidentStore) -> None:
    incidents.upsert([incident("inc-a"), incident("inc-b"), incident("inc-c")])
    first = incidents.acknowledge(["inc-a"], by="ops")
    assert first.acknowledged == ["inc-a"] and first.not_found == []
    a = incidents.get("inc-a")
    assert a is not None and a.acknowledged and a.acknowledged_by == "ops" and a.acknowledged_at is not None

    bulk = incidents.acknowledge(["inc-b", "missing", "inc-a", "inc-b"], by="night shift")
    assert bulk.acknowledged == ["inc-b", "inc-a"] and bulk.not_found == ["missing"]
    again = incidents.get("inc-a")
    assert again is not None and again.acknowledged_by == "ops" and again.acknowledged_at == a.acknowledged_at

    incidents.upsert([replace(incident("inc-a"), last_seen_at=T0 + timedelta(minutes=5), frames_seen=50)])
    kept = incidents.get("inc-a")
    assert kept is not None and kept.acknowledged_by == "ops" and kept.frames_seen == 50, "upserts leave acks alone"
    assert incidents.acknowledge([], by="x").acknowledged == []
    c = incidents.get("inc-c")
    assert c is not None and not c.acknowledged


def _seed(incidents: IncidentStore) -> list:
    records = []
    for i in range(12):
        records.append(
            incident(
                f"inc-{i:02d}",
                started=T0 + timedelta(minutes=i),
                seen_s=30.0,
                camera_id="cam1" if i % 3 else "cam2",
                site="block-7" if i < 9 else "block-9",
                rule="cable_outside" if i % 2 else "dwell_door",
                zone="building_safe_zone" if i % 2 else "door",
                class_name="charging_cable" if i % 2 else "person",
                severity="alert" if i % 4 == 1 else "detection",
                status="closed" if i < 6 else "open",
                ended_at=T0 + timedelta(minutes=i, seconds=40) if i < 6 else None,
            )
        )
    incidents.upsert(records)
    incidents.acknowledge(["inc-01", "inc-05"], by="ops")
    return records


def _ids(incidents: IncidentStore, **filters: Any) -> list[str]:
    page = incidents.query(IncidentQuery(order="asc", limit=100, **filters))
    return [item.incident_id for item in page.items]


def test_filters(incidents: IncidentStore) -> None:
    records = _seed(incidents)
    assert len(_ids(incidents)) == 12
    assert _ids(incidents, severity="alert") == ["inc-01", "inc-05", "inc-09"]
    assert _ids(incidents, rule="dwell_door") == [r.incident_id for r in records if r.rule == "dwell_door"]
    assert _ids(incidents, zone="door") == _ids(incidents, class_name="person")
    assert _ids(incidents, camera_id="cam2") == ["inc-00", "inc-03", "inc-06", "inc-09"]
    assert _ids(incidents, site="block-9") == ["inc-09", "inc-10", "inc-11"]
    assert _ids(incidents, status="open") == [f"inc-{i:02d}" for i in range(6, 12)]
    assert _ids(incidents, acknowledged=True) == ["inc-01", "inc-05"]
    assert len(_ids(incidents, acknowledged=False)) == 10
    assert _ids(incidents, severity="alert", acknowledged=False, site="block-9") == ["inc-09"]
    # Time filters select incidents active in the window: seen at or after `since`, started before `until`.
    since = T0 + timedelta(minutes=3, seconds=20)  # inc-03 (started 3:00, seen until 3:30) still counts
    assert _ids(incidents, since=since, until=T0 + timedelta(minutes=5)) == ["inc-03", "inc-04"]
    assert _ids(incidents, until=T0 + timedelta(minutes=1)) == ["inc-00"]
    with pytest.raises(ValidationError, match="severity"):
        IncidentQuery(severity="critical")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="since"):
        IncidentQuery(since=T0, until=T0)


def test_cursor_pages_in_both_orders(incidents: IncidentStore) -> None:
    _seed(incidents)
    # Two incidents started at the same instant: the id breaks the tie, none is lost or repeated.
    incidents.upsert([incident("inc-tie-a", started=T0 + timedelta(minutes=4)),
                      incident("inc-tie-b", started=T0 + timedelta(minutes=4))])  # fmt: skip
    for order in ("asc", "desc"):
        seen: list[str] = []
        query = IncidentQuery(order=order, limit=5)
        while True:
            page = incidents.query(query)
            seen += [item.incident_id for item in page.items]
            if page.next_cursor is None:
                break
            query = IncidentQuery(order=order, limit=5, cursor=page.next_cursor)
        assert len(seen) == 14 == len(set(seen))
        starts = [incidents.get(i).started_at for i in seen]  # type: ignore[union-attr]
        assert starts == sorted(starts, reverse=order == "desc")
    page = incidents.query(IncidentQuery(limit=5, severity="detection"))
    assert page.next_cursor is not None
    with pytest.raises(ValidationError, match="cursor belongs to a query"):
        IncidentQuery(limit=5, severity="alert", cursor=page.next_cursor)
    with pytest.raises(ValidationError, match="cursor is malformed"):
        IncidentQuery(cursor="!!not-a-cursor")


def test_open_for_camera_gives_the_latest_state_to_resume(incidents: IncidentStore) -> None:
    first, refresh, alert, dip, _close = lifecycle("inc-resume")
    other_camera = incident("inc-other", camera_id="cam2")
    closed = incident("inc-closed", status="closed", ended_at=T0 + timedelta(seconds=9))
    older = incident("inc-older", started=T0 - timedelta(hours=1))
    incidents.upsert([first, refresh, alert, dip, other_camera, closed, older])
    resumed = incidents.open_for_camera("cam1")
    assert [r.incident_id for r in resumed] == ["inc-older", "inc-resume"], "open ones of this camera, oldest first"
    record = resumed[1]
    assert record.status == "open" and record.severity == "alert" and record.escalated_at == alert.escalated_at
    assert record.last_seen_at == dip.last_seen_at and record.last_seen_at.tzinfo is not None
    assert record.trajectory == dip.trajectory and record.frames_seen == dip.frames_seen
    assert record.best_confidence == 0.7 and record.peak_fraction == 0.62 and record.fraction == 0.5
    assert record.keyframe_paths == {**first.keyframe_paths, **alert.keyframe_paths} and record.keyframes == {}
    assert record.details == dip.details and record.instance == dip.instance and record.track_id == 7
    assert incidents.open_for_camera("cam9") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"incident_id": "x" * 49}, "incident_id"),
        ({"incident_id": "a/b"}, "incident_id"),
        ({"severity": "critical"}, "severity"),
        ({"status": "reopened"}, "status"),
        ({"site": ""}, "site"),
        ({"rule": "r" * 65}, "rule"),
        ({"result": ""}, "result"),
        ({"fraction": 1.5}, "fraction"),
        ({"confidence": float("nan")}, "confidence"),
        ({"frames_seen": -1}, "frames_seen"),
        ({"track_id": "7"}, "track_id"),
        ({"started_at": "2026-11-20"}, "started_at"),
        ({"trajectory": [[0.0, 0.5]]}, r"trajectory\[0\]"),
        ({"trajectory": [[0.0, float("inf"), 0.5]]}, r"trajectory\[0\]"),
        ({"trajectory": [[float(i), 0.5, 0.5] for i in range(201)]}, "trajectory"),
        ({"details": {"x": {1, 2}}}, "details"),
        ({"keyframe_paths": {"later": {"raw": "a.jpg"}}}, "keyframe_paths"),
        ({"keyframes": {"open": {"thumb": b"\xff\xd8"}}}, "keyframes"),
    ],
)
def test_bad_records_are_refused_naming_the_field(incidents: IncidentStore, change: dict, field: str) -> None:
    good = incident("inc-good")
    with pytest.raises(RecordError, match=field):
        incidents.upsert([good, replace(good, **{"incident_id": "inc-bad", **change})])
    assert incidents.get("inc-good") is None, "nothing of a batch with a bad record is written"


def test_a_long_result_text_is_cut_not_refused(incidents: IncidentStore) -> None:
    text = "danger: " + "x" * 300
    incidents.upsert([incident("inc-long", result=text)])
    stored = state(incidents, "inc-long")["result"]
    assert len(stored) == 255 and stored == text[:254] + "…"


def test_large_batches_span_several_statements(incidents: IncidentStore) -> None:
    records = [incident(f"inc-big-{i}", started=T0 + timedelta(seconds=i)) for i in range(ROWS_PER_STATEMENT * 2 + 7)]
    refreshes = [replace(r, last_seen_at=r.last_seen_at + timedelta(seconds=5), frames_seen=9) for r in records]
    assert incidents.upsert(records + refreshes) == len(records) * 2
    page = incidents.query(IncidentQuery(limit=500, order="asc"))
    assert len(page.items) == 500 and all(item.frames_seen == 9 for item in page.items)
