"""Query and response models of the event store; the HTTP API uses them directly.

Pagination is keyset (started_at, id): stable under inserts and cheap at any depth. The cursor is
opaque base64 of the last row's key, the sort order and a digest of the filters, so a cursor can
only continue the query it came from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from abc import abstractmethod
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trtseg.db.schema import CAMERA_LEN, CLASS_LEN, SITE_LEN

SortOrder = Literal["asc", "desc"]
GroupKey = Literal["site", "camera_id", "class_name", "status", "day"]
MAX_LIMIT = 500


class CursorError(ValueError):
    """A pagination cursor that is malformed or belongs to another query."""


class Paged(Protocol):
    """A listing query a cursor can be tied to (events, incidents)."""

    def digest(self) -> str: ...


def as_utc(value: datetime | None) -> datetime | None:
    """Aware datetimes converted to UTC; naive ones taken as UTC already.

    Raises ``ValueError`` (a validation error for callers) for a time that has no UTC equivalent,
    such as 9999-12-31T23:00-05:00.
    """
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


class WindowQuery(BaseModel):
    """The part every listing query shares (events, incidents): a time window in UTC, the order, the page
    size and a cursor that must belong to the same filters (``digest``, defined by each listing)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(default=None, description="At or after (UTC if naive).")
    until: datetime | None = Field(default=None, description="Before (UTC if naive).")
    order: SortOrder = Field(default="desc", description="By start time: 'desc' newest first, or 'asc'.")
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT, description=f"Items per page, 1..{MAX_LIMIT}.")
    cursor: str | None = Field(default=None, max_length=512, description="next_cursor of the previous page.")

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("'since' must be earlier than 'until'")
        if self.cursor is not None:
            decode_cursor(self.cursor, self)  # fail at validation time with a clear message
        return self

    @abstractmethod
    def digest(self) -> str:
        """Short fingerprint of the filters and order (what a cursor is tied to)."""


class EventQuery(WindowQuery):
    """Filters, order and page of an event listing."""

    site: str | None = Field(default=None, min_length=1, max_length=SITE_LEN, description="Only this site.")
    camera_id: str | None = Field(default=None, min_length=1, max_length=CAMERA_LEN, description="Only this camera.")
    class_name: str | None = Field(default=None, min_length=1, max_length=CLASS_LEN, description="Only this class.")
    status: Literal["open", "closed"] | None = Field(default=None, description="Only open or only closed events.")
    since: datetime | None = Field(default=None, description="Events that started at or after (UTC if naive).")
    until: datetime | None = Field(default=None, description="Events that started before (UTC if naive).")

    def digest(self) -> str:
        """Short fingerprint of the filters and order (what a cursor is tied to)."""
        key = [self.site, self.camera_id, self.class_name, self.status, _iso(self.since), _iso(self.until), self.order]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


class EventOut(BaseModel):
    """One stored event as the API returns it."""

    id: int
    event_id: str
    site: str
    camera_id: str
    class_name: str
    status: Literal["open", "closed"]
    started_at: datetime
    ended_at: datetime | None
    last_seen_at: datetime
    result: str
    best_confidence: float
    frames_seen: int
    keyframe_raw_path: str | None
    keyframe_annotated_path: str | None
    instances: list[dict[str, Any]] | None
    keyframes_removed_at: datetime | None = Field(
        default=None, description="When retention deleted the key frame files (their paths stay; null: kept)."
    )
    created_at: datetime
    updated_at: datetime

    @field_validator("started_at", "ended_at", "last_seen_at", "keyframes_removed_at", "created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return as_utc(value)


class EventPage(BaseModel):
    """One page of events and the cursor of the next one (None on the last page)."""

    items: list[EventOut]
    next_cursor: str | None = None
    limit: int


class EventCount(BaseModel):
    """Events in one group of a ``counts`` call; keys absent from group_by are None."""

    site: str | None = None
    camera_id: str | None = None
    class_name: str | None = None
    status: str | None = None
    day: str | None = None
    count: int


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def encode_cursor(started_at: datetime, row_id: int, query: Paged) -> str:
    started = as_utc(started_at)
    assert started is not None
    payload = {"s": started.isoformat(), "i": int(row_id), "q": query.digest()}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: Paged) -> tuple[datetime, int]:
    """The (started_at, id) a cursor continues after; CursorError when it is not this query's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        started = as_utc(datetime.fromisoformat(payload["s"]))
        row_id = int(payload["i"])
        digest = str(payload["q"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CursorError("cursor is malformed; pass next_cursor of the previous page unchanged") from exc
    if digest != query.digest():
        raise CursorError("cursor belongs to a query with other filters or order; start again without it")
    assert started is not None
    return started, row_id
