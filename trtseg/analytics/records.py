"""IncidentRecord: one state of one incident, what the sink stores (upserted on ``incident_id``).

An incident is one tracked object (or, for count rules, one zone) under one rule. Records only move
an incident forward (severity escalates, peaks grow, last-seen advances, closed stays closed), so the
sink may replay them in any order. Key frame JPEGs travel only at the stages that encode them
(open, alert, close); every other record is a small refresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

IncidentStatus = Literal["open", "closed"]
KEYFRAME_STAGES = ("open", "alert", "close")
RECORD_KIND = "incident"  # marks an incident in the sink's spool (events carry no marker)
_TIMES = ("started_at", "last_seen_at", "ended_at")


@dataclass(slots=True)
class IncidentRecord:
    """One state of one incident.

    ``track_id`` is None for count rules (keyed by zone and rule). ``fraction`` is the latest median
    share of the mask inside (or outside, per the rule) its zone, ``peak_fraction`` the largest seen.
    ``trajectory`` holds at most the configured number of [seconds since start, x, y] points, x and
    y normalised (the anchor of the object's box). ``keyframes`` maps a stage ('open', 'alert',
    'close') to {'raw': JPEG bytes, 'annotated': JPEG bytes} on the way to the sink, and
    ``keyframe_paths`` maps the same keys to the stored files' relative paths afterwards.
    """

    incident_id: str
    site: str
    camera_id: str
    rule: str
    rule_kind: str
    severity: str
    status: IncidentStatus
    result: str
    started_at: datetime
    last_seen_at: datetime
    zone: str | None = None
    line: str | None = None
    track_id: int | None = None
    class_name: str | None = None
    ended_at: datetime | None = None
    confidence: float = 0.0
    best_confidence: float = 0.0
    fraction: float | None = None
    peak_fraction: float | None = None
    object_count: int | None = None
    peak_count: int | None = None
    frames_seen: int = 0
    escalated_at: datetime | None = None
    trajectory: list[list[float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] | None = None
    keyframes: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False)
    keyframe_paths: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        """JSON of everything but the JPEG bytes (written to files first): the spool's format."""
        data = asdict(self)
        data.pop("keyframes")
        for key in (*_TIMES, "escalated_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        data["record"] = RECORD_KIND
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> IncidentRecord:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        data.pop("record", None)
        for key in (*_TIMES, "escalated_at"):
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)


def is_incident_payload(text: str) -> bool:
    """Whether a spooled JSON payload is an incident (events, older than incidents, carry no marker)."""
    return '"record":"incident"' in text[-40:] or json.loads(text).get("record") == RECORD_KIND
