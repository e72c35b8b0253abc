"""Query and response models of the incident store; the HTTP API uses them directly.

They mirror the event models (trtseg.db.models): keyset pagination on (started_at, id) with an
opaque cursor tied to the filters. The time filters select incidents *active* in the window (seen
at or after ``since``, started before ``until``), because an incident can last for hours: one that
began before ``since`` and is still open belongs in "incidents since 08:00".
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trtseg.db.models import WindowQuery, as_utc
from trtseg.db.schema import ACK_BY_LEN, CAMERA_LEN, CLASS_LEN, INCIDENT_ID_LEN, NAME_LEN, SITE_LEN

INCIDENT_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{INCIDENT_ID_LEN}}}$"
_INCIDENT_ID = re.compile(INCIDENT_ID_PATTERN)
MAX_ACK_IDS = 500
Severity = Literal["alert", "detection"]
Stage = Literal["open", "alert", "close"]
Kind = Literal["raw", "annotated"]


class IncidentQuery(WindowQuery):
    """Filters, order and page of an incident listing."""

    site: str | None = Field(default=None, min_length=1, max_length=SITE_LEN, description="Only this site.")
    camera_id: str | None = Field(default=None, min_length=1, max_length=CAMERA_LEN, description="Only this camera.")
    rule: str | None = Field(default=None, min_length=1, max_length=NAME_LEN, description="Only this rule.")
    zone: str | None = Field(default=None, min_length=1, max_length=NAME_LEN, description="Only this zone.")
    class_name: str | None = Field(default=None, min_length=1, max_length=CLASS_LEN, description="Only this class.")
    severity: Severity | None = Field(default=None, description="Only 'alert' or only 'detection' incidents.")
    status: Literal["open", "closed"] | None = Field(default=None, description="Only open or only closed incidents.")
    acknowledged: bool | None = Field(default=None, description="Only acknowledged (true) or unacknowledged (false).")
    since: datetime | None = Field(default=None, description="Incidents last seen at or after (UTC if naive).")
    until: datetime | None = Field(default=None, description="Incidents started before (UTC if naive).")

    def digest(self) -> str:
        """Short fingerprint of the filters and order (what a cursor is tied to)."""
        key = [
            "incidents",
            self.site,
            self.camera_id,
            self.rule,
            self.zone,
            self.class_name,
            self.severity,
            self.status,
            self.acknowledged,
            None if self.since is None else self.since.isoformat(),
            None if self.until is None else self.until.isoformat(),
            self.order,
        ]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


class IncidentOut(BaseModel):
    """One stored incident as the API returns it."""

    id: int
    incident_id: str
    site: str
    camera_id: str
    rule: str
    rule_kind: str
    zone: str | None
    line: str | None
    track_id: int | None = Field(description="The tracked object; null for count rules (keyed by zone and rule).")
    class_name: str | None
    severity: Severity
    status: Literal["open", "closed"]
    result: str = Field(description="What happened, in words, e.g. 'danger: 62 % of charging_cable outside ...'.")
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    escalated_at: datetime | None = Field(description="When it became an alert (null: never, or opened as one).")
    confidence: float = Field(description="Latest detection confidence.")
    best_confidence: float
    fraction: float | None = Field(description="Latest median share of the mask inside/outside its zone.")
    peak_fraction: float | None
    object_count: int | None = Field(description="Objects in the zone now (count rules).")
    peak_count: int | None
    frames_seen: int
    trajectory: list[list[float]] = Field(
        default_factory=list, description="[seconds since start, x, y] points, x and y in 0..1 of the frame."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    instance: dict[str, Any] | None = None
    keyframe_paths: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Stage ('open', 'alert', 'close') -> kind ('raw', 'annotated') -> path under the key frame "
        "directory; fetch them with GET /incidents/{incident_id}/keyframe/{stage}/{kind}.",
    )
    acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    clip_removed_at: datetime | None = Field(
        default=None,
        description="When retention deleted the incident's clip (null: not removed; it may never have had one).",
    )
    keyframes_removed_at: datetime | None = Field(
        default=None,
        description="When retention first deleted key frame files of the incident (their paths stay listed).",
    )
    created_at: datetime
    updated_at: datetime

    @field_validator(
        "started_at",
        "last_seen_at",
        "ended_at",
        "escalated_at",
        "acknowledged_at",
        "clip_removed_at",
        "keyframes_removed_at",
        "created_at",
        "updated_at",
    )
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


class IncidentPage(BaseModel):
    """One page of incidents and the cursor of the next one (None on the last page)."""

    items: list[IncidentOut]
    next_cursor: str | None = None
    limit: int


class AckRequest(BaseModel):
    """Acknowledge one incident: who did it (free text, e.g. an operator's name)."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(default=None, min_length=1, max_length=ACK_BY_LEN, description="Who acknowledges.")


class BulkAckRequest(AckRequest):
    """Acknowledge several incidents at once."""

    ids: list[str] = Field(
        min_length=1,
        max_length=MAX_ACK_IDS,
        description=f"Incident ids, 1..{MAX_ACK_IDS}.",
        json_schema_extra={"items": {"pattern": INCIDENT_ID_PATTERN}},
    )

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        bad = [i for i in value if not _INCIDENT_ID.match(i)]
        if bad:
            raise ValueError(f"not incident ids: {', '.join(repr(i[:60]) for i in bad[:5])}")
        return list(dict.fromkeys(value))


class AckResult(BaseModel):
    """Which of the requested incidents were acknowledged (now or before) and which do not exist."""

    acknowledged: list[str]
    not_found: list[str]
