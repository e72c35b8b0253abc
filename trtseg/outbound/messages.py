"""Incident messages: which kind a stored IncidentRecord is ('new', 'update', 'end') and its JSON payload.

A record is the state of an incident the sink wrote; its stage (the key of ``keyframe_paths``, or
of ``keyframes`` before the sink stored them) says what just happened: 'open' -> a new incident,
'alert' -> it escalated (an update), and a closed status -> it ended. Records without a stage are
plain refreshes and make no message of their own (the outbox still turns the first record it ever
sees of an incident into its 'new', so a key frame that failed to render loses no notification).

The idempotency key ``{incident_id}:{kind}:{stage or status}`` is the same for every copy of one
message, whichever process builds it: the outbox stores each once per target, and receivers dedupe
on it (MQTT: the payload's ``idempotency_key``; webhooks: also the ``Idempotency-Key`` header).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from trtseg.analytics.records import KEYFRAME_STAGES, IncidentRecord
from trtseg.config.outbound import MessageKind

SCHEMA = 1  # the payload's "schema": raised when a field changes meaning
KEYFRAME_KINDS = ("raw", "annotated")
_STAGE_OF_KIND: dict[str, str] = {"new": "open", "update": "alert", "end": "close"}


@dataclass(frozen=True, slots=True)
class Message:
    """One message about one incident, ready for every target."""

    kind: MessageKind
    idempotency_key: str
    incident_id: str
    camera_id: str
    rule: str
    severity: str
    event_at: datetime  # when it happened (UTC): opened, escalated or ended
    payload: dict[str, Any]

    def body(self) -> str:
        """The JSON text sent (compact, UTF-8, keys in a fixed order)."""
        return json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False)


def record_stages(record: IncidentRecord) -> set[str]:
    """The key frame stages this record carries ('open', 'alert', 'close')."""
    return {s for s in (*record.keyframe_paths, *record.keyframes) if s in KEYFRAME_STAGES}


def message_kinds(record: IncidentRecord) -> list[MessageKind]:
    """The messages a record makes by itself, in order; [] for a plain refresh."""
    stages = record_stages(record)
    kinds: list[MessageKind] = []
    if "open" in stages:
        kinds.append("new")
    if "alert" in stages:
        kinds.append("update")
    if record.status == "closed":
        kinds.append("end")
    return kinds


def idempotency_key(incident_id: str, kind: MessageKind) -> str:
    """``{incident_id}:{kind}:{stage or status}``: 'x:new:open', 'x:update:alert', 'x:end:closed'."""
    return f"{incident_id}:{kind}:{'closed' if kind == 'end' else _STAGE_OF_KIND[kind]}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the database hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def event_time(record: IncidentRecord, kind: MessageKind) -> datetime:
    """When the message's event happened: the start, the escalation or the end."""
    if kind == "update" and record.escalated_at is not None:
        return _utc(record.escalated_at)
    if kind == "end":
        return _utc(record.ended_at or record.last_seen_at)
    if kind == "new":
        return _utc(record.started_at)
    return _utc(record.last_seen_at)


def incident_links(incident_id: str, stages: set[str], base_url: str) -> dict[str, Any]:
    """Links into the API for an incident (empty without a public base URL)."""
    if not base_url:
        return {}
    root = f"{base_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"
    return {
        "url": root,
        "keyframes": {
            stage: {kind: f"{root}/keyframe/{stage}/{kind}" for kind in KEYFRAME_KINDS}
            for stage in KEYFRAME_STAGES
            if stage in stages
        },
        "clip_url": f"{root}/clip",
    }


def build_message(record: IncidentRecord, kind: MessageKind, base_url: str = "") -> Message:
    """The message of ``kind`` about ``record`` (its payload has 'type' = kind and the idempotency key)."""
    key = idempotency_key(record.incident_id, kind)
    links = incident_links(record.incident_id, record_stages(record), base_url)
    stage = _STAGE_OF_KIND[kind]
    keyframes = links.get("keyframes", {})
    payload: dict[str, Any] = {
        "schema": SCHEMA,
        "type": kind,
        "idempotency_key": key,
        "incident_id": record.incident_id,
        "site": record.site,
        "camera_id": record.camera_id,
        "rule": record.rule,
        "rule_kind": record.rule_kind,
        "zone": record.zone,
        "line": record.line,
        "track_id": record.track_id,
        "class_name": record.class_name,
        "severity": record.severity,
        "status": record.status,
        "result": record.result,
        "started_at": _iso(record.started_at),
        "last_seen_at": _iso(record.last_seen_at),
        "escalated_at": _iso(record.escalated_at),
        "ended_at": _iso(record.ended_at),
        "confidence": record.confidence,
        "best_confidence": record.best_confidence,
        "fraction": record.fraction,
        "peak_fraction": record.peak_fraction,
        "object_count": record.object_count,
        "peak_count": record.peak_count,
        "frames_seen": record.frames_seen,
        "url": links.get("url"),
        "keyframe": keyframes.get(stage),  # this message's own picture, when it has one
        "keyframes": keyframes,
        "clip_url": links.get("clip_url"),  # 404 until the clip is cut (after the close and its post-roll)
    }
    return Message(
        kind=kind,
        idempotency_key=key,
        incident_id=record.incident_id,
        camera_id=record.camera_id,
        rule=record.rule,
        severity=record.severity,
        event_at=event_time(record, kind),
        payload=payload,
    )
