"""CameraAnalytics as a whole: resuming incidents after a restart, zone counts, today's events as a
presence rule, the outbox that batches records for the sink."""

from __future__ import annotations

import dataclasses

import pytest

from tests.analytics.helpers import NAMES, T0, cable_at, camera, frame, objects
from tests.analytics.test_rules import FAST_TRACKER, ORIGIN, make, run
from trtseg.analytics.camera import CameraAnalytics, rule_class_problems
from trtseg.analytics.records import IncidentRecord, is_incident_payload
from trtseg.events import EventRecord, EventTracker
from trtseg.outbox import RecordOutbox


def open_incident(close_after_s: float = 2.0) -> tuple[CameraAnalytics, IncidentRecord]:
    analytics = make([{**ORIGIN, "close_after_s": close_after_s}])
    (record,) = run(analytics, [objects(cable_at(0.6))] * 3)
    return analytics, record


def stored(record: IncidentRecord) -> IncidentRecord:
    """What the database gives back: the JSON round trip, no JPEG bytes."""
    return IncidentRecord.from_json(dataclasses.replace(record, keyframes={}).to_json())


def test_an_open_incident_resumes_on_its_object_after_a_restart() -> None:
    _, record = open_incident()
    restarted = CameraAnalytics(camera([{**ORIGIN, "close_after_s": 2.0}], analytics=FAST_TRACKER), NAMES,
                                resume=[stored(record)])  # fmt: skip
    later = run(restarted, [objects(cable_at(0.6))] * 15, start=T0 + 30)
    assert {r.incident_id for r in later} == {record.incident_id}
    assert all("open" not in r.keyframes for r in later)  # continued, not reopened
    assert later[-1].started_at == record.started_at and later[-1].last_seen_at.timestamp() > T0 + 30
    assert restarted.stats()["resumed"] == 1


def test_a_resumed_incident_whose_object_is_gone_closes_as_last_seen() -> None:
    _, record = open_incident()
    restarted = CameraAnalytics(camera([{**ORIGIN, "close_after_s": 2.0}], analytics=FAST_TRACKER), NAMES,
                                resume=[stored(record)])  # fmt: skip
    elsewhere = objects((0, 0.8, (150, 80, 190, 90)))  # another cable, far from where the first one was
    records = run(restarted, [elsewhere] * 20, start=T0 + 30)
    closed = [r for r in records if r.incident_id == record.incident_id]
    assert [r.status for r in closed] == ["closed"] and closed[0].ended_at == record.last_seen_at
    assert any(r.incident_id != record.incident_id and r.status == "open" for r in records)


def test_an_incident_of_a_removed_rule_closes() -> None:
    _, record = open_incident()
    other = {"name": "other", "kind": "presence", "classes": ["person"]}
    restarted = CameraAnalytics(camera([other], analytics=FAST_TRACKER), NAMES, resume=[stored(record)])
    assert [r.status for r in restarted.close_all(T0 + 40)] == ["closed"]


def test_zone_counts_by_class() -> None:
    analytics = make([ORIGIN])
    person_in = (2, 0.9, (20, 20, 40, 90))
    run(analytics, [objects(cable_at(0.1), person_in, (2, 0.9, (150, 20, 170, 90)))] * 3)
    assert analytics.zone_counts() == {"safe": {"charging_cable": 1, "person": 1}}
    assert analytics.stats()["objects"] == 3


@pytest.mark.parametrize("region", [None, [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
def test_events_as_a_presence_rule_open_and_close_like_events(region: object) -> None:
    events = {"min_confidence": 0.5, "min_area": 0.001, "window": 5, "min_hits": 3, "close_after_s": 1.0}
    if region is not None:
        events["region"] = {"points": region}
    cam = camera([], zones=[], events=events, classes=["charging_cable"])
    cam = cam.model_copy(update={"analytics": cam.events_as_analytics()})
    cam.analytics.tracker.enabled = False  # keyed by class, as events are
    analytics, tracker = CameraAnalytics(cam, NAMES), EventTracker(cam, NAMES)
    pattern = "x.xx.xxx....." + "........" + "xx.x.x" + "............"
    got: list[tuple[str, float]] = []
    want: list[tuple[str, float]] = []
    for i, ch in enumerate(pattern):
        found = objects(cable_at(0.2)) if ch == "x" else objects()
        f = frame(T0 + i * 0.2, i)
        want += [(r.status, round(r.started_at.timestamp(), 3)) for r in tracker.update(f, found) if r.frames_seen]
        got += [(r.status, round(r.started_at.timestamp(), 3)) for r in analytics.update(f, found)]
    opens = lambda rows: [row for row in rows if row[0] == "open"][:1]  # noqa: E731
    assert [s for s, _ in got if s == "closed"] == [s for s, _ in want if s == "closed"] == ["closed", "closed"]
    assert opens(got)[0][0] == opens(want)[0][0]


def test_rule_classes_the_model_lacks_are_named() -> None:
    cam = camera([{"name": "r", "kind": "presence", "classes": ["person"]}])
    assert rule_class_problems(cam, {0: "charging_cable"}) == [
        "analytics.rules.0.classes: person unknown to the model (it has charging_cable)"
    ]
    assert rule_class_problems(cam, NAMES) == []


def test_outbox_sends_state_changes_at_once_and_holds_refreshes() -> None:
    sent: list[list[object]] = []
    now = [0.0]
    outbox = RecordOutbox(sent.append, hold_s=1.0, clock=lambda: now[0])
    _, record = open_incident()
    assert record.keyframes  # an opening: sent at once
    outbox.put([record])
    assert len(sent) == 1
    refresh = dataclasses.replace(record, keyframes={})
    for step in range(5):
        now[0] = 0.1 * step
        outbox.put([refresh])
    assert len(sent) == 1 and len(outbox) == 5
    now[0] = 1.2
    outbox.put([])
    assert len(sent) == 2 and len(sent[1]) == 5
    event = EventRecord("e1", "s", "c", "k", "open", record.started_at, record.started_at, 0.5, 1, "x")
    outbox.put([event])  # an event without a key frame is a refresh too
    assert len(sent) == 2
    outbox.flush()
    assert len(sent) == 3 and is_incident_payload(record.to_json()) and not is_incident_payload('{"a":1}')
