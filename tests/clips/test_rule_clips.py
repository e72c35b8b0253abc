"""Clips chosen per rule: a rule's ``clip`` (true/false) overrides the camera's ``clips.severities``; empty
(the default, and every configuration written before it existed) leaves the severities to decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actors.clips import ClipLink
from trtseg.analytics.records import IncidentRecord
from trtseg.clips.requests import ClipRequest, ClipRequester
from trtseg.config import ConfigError, parse_config
from trtseg.config.clips import ClipConfig

T0 = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
JPEGS = {"raw": b"jpeg", "annotated": b"jpeg"}
ZONE = {"name": "bay", "points": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]]}
LINE = {"name": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}


def camera(rules: list[dict[str, Any]], clips: dict[str, Any] | None = None) -> Any:
    data: dict[str, Any] = {
        "id": "cam1",
        "source": "rtsp://127.0.0.1/x",
        "analytics": {"zones": [ZONE], "lines": [LINE], "rules": rules},
    }
    if clips is not None:
        data["clips"] = clips
    return parse_config({"cameras": [data]}).cameras[0]


def incident(rule: str, severity: str, incident_id: str = "i1", status: str = "open", **fields: Any) -> IncidentRecord:
    values: dict[str, Any] = {
        "incident_id": incident_id,
        "site": "s",
        "camera_id": "cam1",
        "rule": rule,
        "rule_kind": "presence",
        "severity": severity,
        "status": status,
        "result": "seen",
        "started_at": T0,
        "last_seen_at": T0 + timedelta(seconds=2),
        **fields,
    }
    return IncidentRecord(**values)


def lifecycle(rule: str, severity: str, incident_id: str) -> list[IncidentRecord]:
    opening = incident(rule, severity, incident_id, keyframes={"open": JPEGS})
    closed = incident(rule, severity, incident_id, status="closed", ended_at=T0 + timedelta(seconds=8))
    return [opening, closed]


def kinds(requests: list[ClipRequest]) -> list[tuple[str, str]]:
    return [(r.kind, r.incident_id) for r in requests]


RULES = [
    {"name": "always", "kind": "presence", "zone": "bay", "severity": "detection", "clip": True},
    {"name": "never", "kind": "presence", "zone": "bay", "severity": "alert", "clip": False},
    {"name": "by_severity", "kind": "presence", "zone": "bay", "severity": "alert"},
    {"name": "quiet", "kind": "dwell", "zone": "bay", "min_dwell_s": 5},
    {"name": "cross", "kind": "crossing", "line": "door", "clip": True},
    {"name": "crowd", "kind": "count", "zone": "bay", "min_count": 3, "severity": "alert", "clip": False},
]


def test_every_rule_kind_takes_clip_and_it_defaults_to_empty() -> None:
    rules = {rule.name: rule.clip for rule in camera(RULES).analytics.rules}
    assert rules == {"always": True, "never": False, "by_severity": None, "quiet": None, "cross": True, "crowd": False}


def test_a_rule_without_clip_reads_as_before() -> None:
    """A configuration written before ``clip`` existed: the dump round-trips and the severities decide."""
    cam = camera([{"name": "r", "kind": "presence", "zone": "bay", "severity": "alert"}])
    again = camera([cam.analytics.rules[0].model_dump(mode="json")])
    assert again.analytics.rules[0].clip is None
    requester = ClipRequester(cam.clips, cam.analytics.rules)
    assert requester.rule_clips == {}
    assert kinds(requester.requests(lifecycle("r", "alert", "a1"))) == [("start", "a1"), ("stop", "a1")]
    assert requester.requests(lifecycle("r", "detection", "d1")) == []


def test_a_bad_clip_value_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        camera([{"name": "r", "kind": "presence", "zone": "bay", "clip": "sometimes"}])
    assert "analytics.rules.0" in str(caught.value) and "clip" in str(caught.value)


def test_the_rule_decides_over_the_severities() -> None:
    cam = camera(RULES)
    requester = ClipRequester(cam.clips, cam.analytics.rules)  # clips.severities: ['alert'] (the default)
    got = {
        name: kinds(requester.requests(lifecycle(name, severity, f"{name}-1")))
        for name, severity in [
            ("always", "detection"),  # a detection, yet the rule asks for a clip
            ("never", "alert"),  # an alert, yet the rule refuses one
            ("by_severity", "alert"),  # no say: alerts get clips
            ("quiet", "detection"),  # no say: detections do not
            ("cross", "detection"),
            ("crowd", "alert"),
        ]
    }
    assert got == {
        "always": [("start", "always-1"), ("stop", "always-1")],
        "never": [],
        "by_severity": [("start", "by_severity-1"), ("stop", "by_severity-1")],
        "quiet": [],
        "cross": [("start", "cross-1"), ("stop", "cross-1")],
        "crowd": [],
    }


def test_a_rule_that_says_no_is_not_clipped_when_it_escalates() -> None:
    cam = camera(RULES, clips={"severities": ["alert", "detection"]})
    requester = ClipRequester(cam.clips, cam.analytics.rules)
    assert requester.requests([incident("never", "detection", keyframes={"open": JPEGS})]) == []
    escalated = incident("never", "alert", escalated_at=T0 + timedelta(seconds=4), keyframes={"alert": JPEGS})
    assert requester.requests([escalated]) == []
    # Without a say, detections now get clips too (the camera's severities).
    assert kinds(requester.requests(lifecycle("quiet", "detection", "q1"))) == [("start", "q1"), ("stop", "q1")]


def test_clips_off_on_the_camera_wins_over_a_rule() -> None:
    """No rolling buffer to cut from: a rule asking for a clip gets none."""
    cam = camera(RULES, clips={"enabled": False})
    assert ClipRequester(cam.clips, cam.analytics.rules).requests(lifecycle("always", "detection", "x")) == []


def test_an_unknown_rule_falls_back_to_the_severities() -> None:
    """Records of a rule no longer configured (resumed after the camera changed) follow the severities."""
    requester = ClipRequester(ClipConfig(), camera(RULES).analytics.rules)
    assert kinds(requester.requests(lifecycle("gone", "alert", "g1"))) == [("start", "g1"), ("stop", "g1")]


class _Method:
    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name, self.calls = name, calls

    def remote(self, incident_id: str, ts: float) -> str:
        self.calls.append((self.name, incident_id))
        return "ref"


def test_the_clip_link_applies_the_camera_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pusher builds its ClipLink with the camera's rules: the decoder is asked for those clips only."""
    monkeypatch.setattr(ClipLink, "reap", lambda self, wait_s=0.0: None)  # no Ray: calls are not collected
    cam = camera(RULES)
    link = ClipLink(cam.clips, cam.id, rules=cam.analytics.rules)
    calls: list[tuple[str, str]] = []
    decoder = type("Decoder", (), {})()
    decoder.clip_start, decoder.clip_stop = _Method("clip_start", calls), _Method("clip_stop", calls)
    link.set_decoder(decoder)
    link.send(lifecycle("always", "detection", "a") + lifecycle("never", "alert", "n"))
    assert calls == [("clip_start", "a"), ("clip_stop", "a")]
