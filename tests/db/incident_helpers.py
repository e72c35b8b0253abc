"""Incident records as a camera's analytics emit them, for the store, sink, migration and API tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from trtseg.analytics.records import IncidentRecord
from trtseg.events import new_event_id

T0 = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=UTC)


def incident(
    incident_id: str | None = None,
    started: datetime = T0,
    seen_s: float = 2.0,
    **fields: Any,
) -> IncidentRecord:
    """One state of a presence incident on a cable, ``seen_s`` seconds after it started."""
    values: dict[str, Any] = {
        "incident_id": incident_id or new_event_id(started.timestamp()),
        "site": "block-7",
        "camera_id": "cam1",
        "rule": "cable_outside",
        "rule_kind": "presence",
        "severity": "detection",
        "status": "open",
        "result": "safe: 10 % of charging_cable outside building_safe_zone",
        "started_at": started,
        "last_seen_at": started + timedelta(seconds=seen_s),
        "zone": "building_safe_zone",
        "track_id": 7,
        "class_name": "charging_cable",
        "confidence": 0.6,
        "best_confidence": 0.6,
        "fraction": 0.1,
        "peak_fraction": 0.1,
        "frames_seen": 3,
        "trajectory": [[0.0, 0.5, 0.5]],
        "details": {"membership": "mask_fraction", "threshold": 0.4},
        "instance": {"box": [0.1, 0.2, 0.3, 0.4], "score": 0.6},
    }
    values.update(fields)
    return IncidentRecord(**values)


def lifecycle(incident_id: str, started: datetime = T0) -> list[IncidentRecord]:
    """Every record one incident goes through: open, refreshes, escalation, a dip, close (paths, no bytes)."""
    paths = {
        stage: {"raw": f"block-7/cam1/2026-11-20/{incident_id}-{stage}_raw.jpg"} for stage in ("open", "alert", "close")
    }
    first = incident(incident_id, started, seen_s=0.0, keyframe_paths={"open": paths["open"]})
    refresh = replace(first, last_seen_at=started + timedelta(seconds=2), frames_seen=10, keyframe_paths={},
                      confidence=0.7, best_confidence=0.7, fraction=0.3, peak_fraction=0.3,
                      trajectory=[[0.0, 0.5, 0.5], [2.0, 0.52, 0.5]])  # fmt: skip
    alert = replace(refresh, last_seen_at=started + timedelta(seconds=4), frames_seen=20, severity="alert",
                    escalated_at=started + timedelta(seconds=4), fraction=0.62, peak_fraction=0.62,
                    confidence=0.65, result="danger: 62 % of charging_cable outside building_safe_zone",
                    keyframe_paths={"alert": paths["alert"]},
                    trajectory=[[0.0, 0.5, 0.5], [2.0, 0.52, 0.5], [4.0, 0.55, 0.5]])  # fmt: skip
    dip = replace(alert, last_seen_at=started + timedelta(seconds=6), frames_seen=30, keyframe_paths={},
                  fraction=0.5, confidence=0.55, result="danger: 50 % of charging_cable outside building_safe_zone",
                  trajectory=[*alert.trajectory, [6.0, 0.56, 0.5]])  # fmt: skip
    close = replace(
        dip, status="closed", ended_at=started + timedelta(seconds=11), keyframe_paths={"close": paths["close"]}
    )
    return [first, refresh, alert, dip, close]


def final_state(incident_id: str) -> dict[str, Any]:
    """What the store holds after all of ``lifecycle`` in any order."""
    records = lifecycle(incident_id)
    close = records[-1]
    return {
        "status": "closed",
        "severity": "alert",
        "result": close.result,
        "last_seen_at": close.last_seen_at,
        "ended_at": close.ended_at,
        "escalated_at": records[2].escalated_at,
        "confidence": 0.55,
        "best_confidence": 0.7,
        "fraction": 0.5,
        "peak_fraction": 0.62,
        "frames_seen": 30,
        "trajectory": close.trajectory,
        "keyframe_paths": {stage: dict(kinds) for r in records for stage, kinds in r.keyframe_paths.items()},
    }
