"""ClipRequester (which incident records start and stop a clip) and ClipLink (the pusher's calls to its decoder)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.clips import ClipLink
from trtseg.analytics.records import IncidentRecord
from trtseg.clips.requests import ClipRequest, ClipRequester
from trtseg.config.clips import ClipConfig
from trtseg.events import EventRecord

T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
JPEGS = {"raw": b"jpeg", "annotated": b"jpeg"}


def _record(incident_id: str = "i1", severity: str = "alert", status: str = "open", **fields: Any) -> IncidentRecord:
    values: dict[str, Any] = {
        "incident_id": incident_id,
        "site": "s",
        "camera_id": "cam1",
        "rule": "r",
        "rule_kind": "presence",
        "severity": severity,
        "status": status,
        "result": "danger",
        "started_at": T0,
        "last_seen_at": T0 + timedelta(seconds=3),
        **fields,
    }
    return IncidentRecord(**values)


def _kinds(requests: list[ClipRequest]) -> list[tuple[str, str, float]]:
    return [(r.kind, r.incident_id, r.ts - T0.timestamp()) for r in requests]


def test_an_alert_starts_at_its_opening_and_stops_at_its_close() -> None:
    requester = ClipRequester(ClipConfig())
    opening = _record(keyframes={"open": JPEGS}, last_seen_at=T0 + timedelta(seconds=1))
    assert _kinds(requester.requests([opening])) == [("start", "i1", 0.0)]
    assert requester.requests([_record()]) == [], "refreshes ask nothing"
    closed = _record(status="closed", ended_at=T0 + timedelta(seconds=9), keyframes={"close": JPEGS})
    assert _kinds(requester.requests([closed])) == [("stop", "i1", 9.0)]


def test_detections_get_no_clip_unless_configured() -> None:
    requester = ClipRequester(ClipConfig())
    opening = _record(severity="detection", keyframes={"open": JPEGS})
    assert requester.requests([opening, _record(severity="detection", status="closed")]) == []
    both = ClipRequester(ClipConfig(severities=["alert", "detection"]))
    assert [r.kind for r in both.requests([opening])] == ["start"]
    assert ClipRequester(ClipConfig(enabled=False)).requests([_record(keyframes={"open": JPEGS})]) == []


def test_an_escalation_starts_from_the_escalation() -> None:
    requester = ClipRequester(ClipConfig())
    assert requester.requests([_record(severity="detection", keyframes={"open": JPEGS})]) == []
    escalated = _record(escalated_at=T0 + timedelta(seconds=4), keyframes={"alert": JPEGS})
    assert _kinds(requester.requests([escalated])) == [("start", "i1", 4.0)]
    assert requester.requests([escalated]) == [], "asked once"
    # The escalation's key frame failed to render: the next alert record still starts it.
    other = ClipRequester(ClipConfig())
    other.requests([_record("i2", severity="detection", keyframes={"open": JPEGS})])
    late = _record("i2", escalated_at=T0 + timedelta(seconds=4), last_seen_at=T0 + timedelta(seconds=5))
    assert _kinds(other.requests([late])) == [("start", "i2", 4.0)]


def test_an_incident_first_seen_open_starts_from_its_start() -> None:
    """Resumed after a restart: the recorder ignores it when it already records it."""
    requester = ClipRequester(ClipConfig())
    assert _kinds(requester.requests([_record("resumed")])) == [("start", "resumed", 0.0)]
    closed_unseen = _record("gone", status="closed", ended_at=T0 + timedelta(seconds=3))
    assert _kinds(ClipRequester(ClipConfig()).requests([closed_unseen])) == [("stop", "gone", 3.0)]


def test_events_are_ignored() -> None:
    event = EventRecord("e1", "s", "cam1", "c", "open", T0, T0, best_confidence=0.5, frames_seen=1, result="c")
    assert ClipRequester(ClipConfig()).requests([event]) == []


class _Method:
    def __init__(self, name: str, calls: list[tuple[str, str, float]]) -> None:
        self.name, self.calls = name, calls

    def remote(self, incident_id: str, ts: float) -> str:
        self.calls.append((self.name, incident_id, ts))
        return "ref"


class _Decoder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.clip_start = _Method("clip_start", self.calls)
        self.clip_stop = _Method("clip_stop", self.calls)


def test_clip_link_waits_for_the_decoder_and_then_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClipLink, "reap", lambda self, wait_s=0.0: None)  # no Ray here: calls are not collected
    link = ClipLink(ClipConfig(), "cam1", queue_max=2)
    opening = _record(keyframes={"open": JPEGS})
    link.send([opening, _record("i2", keyframes={"open": JPEGS}), _record("i3", keyframes={"open": JPEGS})])
    assert link.stats()["queued"] == 2 and link.stats()["dropped"] == 1
    decoder = _Decoder()
    link.set_decoder(decoder)
    assert [c[:2] for c in decoder.calls] == [("clip_start", "i1"), ("clip_start", "i2")]
    link.send([replace(opening, status="closed", ended_at=T0 + timedelta(seconds=5), keyframes={})])
    assert decoder.calls[-1] == ("clip_stop", "i1", (T0 + timedelta(seconds=5)).timestamp())
    assert link.stats()["sent"] == 3 and link.stats()["queued"] == 0 and link.stats()["decoder_known"]
