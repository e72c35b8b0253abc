"""EventStore: the one class that reads and writes events (SQLAlchemy Core, no ORM).

Incidents live in the same database: ``EventStore.incidents`` is their IncidentStore
(trtseg.db.incidents) on the same engine, and ``write_batch`` writes events and incidents in one
transaction (the sink's batches hold both).

Writes are idempotent upserts on ``event_id`` whose update rules only move an event forward (a
closed event never reopens, best confidence only grows, last-seen only advances), so the sink can
replay a spooled batch any number of times in any order without harm.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine

from trtseg.db import schema as s
from trtseg.db.migrations import migrate as run_migrations
from trtseg.db.models import EventCount, EventOut, EventPage, EventQuery, GroupKey, as_utc, decode_cursor, encode_cursor
from trtseg.db.url import create_engine, ensure_mysql_database, is_sqlite, normalise_url
from trtseg.events import EventRecord

if TYPE_CHECKING:
    from trtseg.analytics.records import IncidentRecord
    from trtseg.clips.retention import EvidenceRemoved
    from trtseg.db.incidents import IncidentStore

logger = logging.getLogger(__name__)

_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
# Multi-row statements stay far below SQLite's bound-parameter limit (17 columns a row).
ROWS_PER_STATEMENT = 500
IDS_PER_STATEMENT = 500  # ids in one UPDATE ... WHERE id IN (...) of mark_removed
GROUP_KEYS: tuple[str, ...] = ("site", "camera_id", "class_name", "status", "day")


class RecordError(ValueError):
    """An event record the database cannot take as it is (retrying will not help)."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean 'database unreachable or busy' (worth a retry), not 'bad data'."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    transient = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError, sa.exc.TimeoutError)
    return isinstance(exc, transient)


def _naive_utc(value: datetime | None) -> datetime | None:
    value = as_utc(value)
    return None if value is None else value.replace(tzinfo=None)


def _text(record: EventRecord, name: str, limit: int, required: bool = True) -> str | None:
    value = getattr(record, name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise RecordError(f"event {record.event_id!r}: {name} must be a non-empty string")
    if len(value) > limit:
        raise RecordError(f"event {record.event_id!r}: {name} is {len(value)} characters, at most {limit}")
    return value


def record_to_row(record: EventRecord, now: datetime) -> dict[str, Any]:
    """Checked column values of one record; RecordError names the first bad field."""
    if not isinstance(record.event_id, str) or not _EVENT_ID.match(record.event_id):
        raise RecordError(f"event_id {record.event_id!r} must be 1-32 letters, digits, '_' or '-'")
    if record.status not in ("open", "closed"):
        raise RecordError(f"event {record.event_id!r}: status must be 'open' or 'closed', got {record.status!r}")
    confidence = float(record.best_confidence)
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        raise RecordError(f"event {record.event_id!r}: best_confidence must be in 0..1, got {confidence}")
    if int(record.frames_seen) < 0:
        raise RecordError(f"event {record.event_id!r}: frames_seen must be >= 0")
    for name in ("started_at", "last_seen_at"):
        if not isinstance(getattr(record, name), datetime):
            raise RecordError(f"event {record.event_id!r}: {name} must be a datetime")
    try:
        json.dumps(record.instances, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"event {record.event_id!r}: instances are not plain JSON ({exc})") from exc
    return {
        "event_id": record.event_id,
        "site": _text(record, "site", s.SITE_LEN),
        "camera_id": _text(record, "camera_id", s.CAMERA_LEN),
        "class_name": _text(record, "class_name", s.CLASS_LEN),
        "status": record.status,
        "started_at": _naive_utc(record.started_at),
        "ended_at": _naive_utc(record.ended_at),
        "last_seen_at": _naive_utc(record.last_seen_at),
        "result": _text(record, "result", s.RESULT_LEN),
        "best_confidence": confidence,
        "frames_seen": int(record.frames_seen),
        "keyframe_raw_path": _text(record, "keyframe_raw_path", s.PATH_LEN, required=False),
        "keyframe_annotated_path": _text(record, "keyframe_annotated_path", s.PATH_LEN, required=False),
        "instances": record.instances,
        "created_at": now,
        "updated_at": now,
    }


def mark_rows(conn: Any, table: sa.Table, key: str, column: str, ids: Iterable[str], at: datetime) -> int:
    """Set ``column`` to ``at`` (naive UTC) on the rows whose ``key`` is in ``ids`` and where it is still NULL
    (the first removal time stays), a few hundred ids per UPDATE; ``updated_at`` is the time of the write.
    Returns the rows marked now."""
    wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
    target, keys = table.c[column], table.c[key]
    now = datetime.now(UTC).replace(tzinfo=None)
    marked = 0
    for start in range(0, len(wanted), IDS_PER_STATEMENT):
        chunk = wanted[start : start + IDS_PER_STATEMENT]
        result = conn.execute(
            table.update().where(keys.in_(chunk), target.is_(None)).values({column: at, "updated_at": now})
        )
        marked += max(0, result.rowcount or 0)
    return marked


def _forward_only(new: Any) -> list[tuple[str, Any]]:
    """The SET list of an upsert; ``new`` is the proposed row. Order matters on MySQL, whose
    ON DUPLICATE KEY UPDATE sees columns assigned earlier: columns that test the old best
    confidence or status come before those two are assigned."""
    t = s.events.c
    improved = new.best_confidence > t.best_confidence
    closed = t.status == "closed"

    def when(cond: Any, then: Any, other: Any) -> Any:
        return sa.case((cond, then), else_=other)

    return [
        (
            "keyframe_raw_path",
            when(
                improved,
                sa.func.coalesce(new.keyframe_raw_path, t.keyframe_raw_path),
                sa.func.coalesce(t.keyframe_raw_path, new.keyframe_raw_path),
            ),
        ),
        (
            "keyframe_annotated_path",
            when(
                improved,
                sa.func.coalesce(new.keyframe_annotated_path, t.keyframe_annotated_path),
                sa.func.coalesce(t.keyframe_annotated_path, new.keyframe_annotated_path),
            ),
        ),
        ("instances", when(improved, new.instances, sa.func.coalesce(t.instances, new.instances))),
        ("best_confidence", when(improved, new.best_confidence, t.best_confidence)),
        ("frames_seen", when(new.frames_seen > t.frames_seen, new.frames_seen, t.frames_seen)),
        ("last_seen_at", when(new.last_seen_at > t.last_seen_at, new.last_seen_at, t.last_seen_at)),
        ("result", when(closed, t.result, new.result)),
        ("ended_at", when(closed, t.ended_at, new.ended_at)),
        ("updated_at", new.updated_at),
        ("status", when(closed, t.status, new.status)),
    ]


class EventStore:
    """Events in MySQL/MariaDB or SQLite, behind one code path."""

    def __init__(self, url: str | SecretStr) -> None:
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        self.url = normalise_url(raw)
        self.engine: Engine = create_engine(self.url)
        self.dialect = "sqlite" if is_sqlite(self.url) else "mysql"
        self._incidents: IncidentStore | None = None

    @property
    def incidents(self) -> IncidentStore:
        """The incidents of this database (same engine; ``migrate`` creates their table too)."""
        if self._incidents is None:
            from trtseg.db.incidents import IncidentStore  # it imports this module's RecordError

            self._incidents = IncidentStore(self.engine)
        return self._incidents

    def __repr__(self) -> str:
        return f"EventStore({self.url.render_as_string(hide_password=True)})"

    # ------------------------------------------------------------------ schema
    def migrate(self) -> list[int]:
        """Create the database (MySQL, when missing) and apply pending migrations; idempotent."""
        if self.dialect == "mysql":
            ensure_mysql_database(self.url)
        return run_migrations(self.engine)

    def ping(self) -> bool:
        """True when the database answers now."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("database ping failed store=%r error=%s", self, type(exc).__name__)
            return False

    # ------------------------------------------------------------------ writes
    def upsert(self, records: Iterable[EventRecord]) -> int:
        """Insert or move forward each event, in one transaction; returns the number of records."""
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [record_to_row(r, now) for r in records]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                conn.execute(self._upsert_statement(rows[start : start + ROWS_PER_STATEMENT]))
        return len(rows)

    def write_batch(self, events: Sequence[EventRecord], incidents: Sequence[IncidentRecord]) -> int:
        """Upsert events and incidents in one transaction, one statement per table (per few hundred rows);
        returns the number of records. Every record is checked before anything is written."""
        now = datetime.now(UTC).replace(tzinfo=None)
        event_rows = [record_to_row(r, now) for r in events]
        incident_rows = self.incidents.rows(incidents, now)
        if not event_rows and not incident_rows:
            return 0
        with self.engine.begin() as conn:
            for start in range(0, len(event_rows), ROWS_PER_STATEMENT):
                conn.execute(self._upsert_statement(event_rows[start : start + ROWS_PER_STATEMENT]))
            if incident_rows:
                self.incidents.upsert_rows(conn, incident_rows)
        return len(event_rows) + len(incident_rows)

    def mark_removed(self, removed: EvidenceRemoved, at: datetime | None = None) -> dict[str, int]:
        """Say on the rows that retention deleted their evidence files (a ``trtseg.clips.retention.EvidenceRemoved``):
        events' and incidents' ``keyframes_removed_at``, incidents' ``clip_removed_at``, in one transaction
        of batched UPDATEs. Idempotent: a row already marked keeps its first time; unknown ids are
        ignored. Returns the rows marked now per kind (``clips``, ``incident_keyframes``, ``event_keyframes``)."""
        stamp = _naive_utc(at or datetime.now(UTC))
        assert stamp is not None
        with self.engine.begin() as conn:
            counts = self.incidents.mark_removed_on(conn, removed, stamp)
            counts["event_keyframes"] = mark_rows(
                conn, s.events, "event_id", "keyframes_removed_at", removed.keyframe_events, stamp
            )
        if any(counts.values()):
            logger.info("evidence removal marked on rows %s", " ".join(f"{k}={v}" for k, v in counts.items()))
        return counts

    def mark_keyframes_removed(self, event_ids: Iterable[str], at: datetime | None = None) -> int:
        """Mark events whose key frame files were deleted (first time kept); returns the rows marked now."""
        stamp = _naive_utc(at or datetime.now(UTC))
        assert stamp is not None
        with self.engine.begin() as conn:
            return mark_rows(conn, s.events, "event_id", "keyframes_removed_at", event_ids, stamp)

    def _upsert_statement(self, rows: list[dict[str, Any]]) -> Any:
        if self.dialect == "mysql":
            stmt = mysql.insert(s.events).values(rows)
            return stmt.on_duplicate_key_update(_forward_only(stmt.inserted))
        stmt = sqlite.insert(s.events).values(rows)
        return stmt.on_conflict_do_update(index_elements=["event_id"], set_=dict(_forward_only(stmt.excluded)))

    # ------------------------------------------------------------------ reads
    def get(self, event_id: str) -> EventOut | None:
        """One event by its id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.events).where(s.events.c.event_id == event_id)).mappings().first()
        return None if row is None else EventOut.model_validate(dict(row))

    def query(self, query: EventQuery) -> EventPage:
        """A page of events matching the filters, in start-time order, with the next page's cursor."""
        t = s.events.c
        stmt = sa.select(s.events).where(
            *self._filters(query.site, query.camera_id, query.class_name, query.status, query.since, query.until)
        )
        if query.cursor:
            started, row_id = decode_cursor(query.cursor, query)
            started_naive = _naive_utc(started)
            if query.order == "desc":
                stmt = stmt.where(
                    sa.or_(t.started_at < started_naive, sa.and_(t.started_at == started_naive, t.id < row_id))
                )
            else:
                stmt = stmt.where(
                    sa.or_(t.started_at > started_naive, sa.and_(t.started_at == started_naive, t.id > row_id))
                )
        order = (t.started_at.desc(), t.id.desc()) if query.order == "desc" else (t.started_at.asc(), t.id.asc())
        stmt = stmt.order_by(*order).limit(query.limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        more = len(rows) > query.limit
        items = [EventOut.model_validate(r) for r in rows[: query.limit]]
        cursor = encode_cursor(items[-1].started_at, items[-1].id, query) if more and items else None
        return EventPage(items=items, next_cursor=cursor, limit=query.limit)

    def open_ids(self) -> set[str]:
        """The ids of the open events (what retention must keep), from an index: no row is read."""
        t = s.events.c
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(t.event_id).where(t.status == "open")).scalars())

    def counts(
        self,
        group_by: Sequence[GroupKey] = ("site", "class_name", "day"),
        since: datetime | None = None,
        until: datetime | None = None,
        site: str | None = None,
        camera_id: str | None = None,
        class_name: str | None = None,
    ) -> list[EventCount]:
        """Number of events per group (by start time; 'day' is the UTC date) for charts."""
        keys = list(dict.fromkeys(group_by))
        bad = [k for k in keys if k not in GROUP_KEYS]
        if bad or not keys:
            raise ValueError(f"group_by must be a non-empty subset of {', '.join(GROUP_KEYS)}; got {list(group_by)}")
        t = s.events.c
        columns = [sa.func.date(t.started_at).label("day") if k == "day" else getattr(t, k).label(k) for k in keys]
        stmt = (
            sa.select(*columns, sa.func.count().label("count"))
            .where(*self._filters(site, camera_id, class_name, None, as_utc(since), as_utc(until)))
            .group_by(*columns)
            .order_by(*columns)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        out: list[EventCount] = []
        for row in rows:
            data = dict(row)
            if isinstance(data.get("day"), date):
                data["day"] = data["day"].isoformat()
            out.append(EventCount.model_validate(data))
        return out

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    @staticmethod
    def _filters(
        site: str | None,
        camera_id: str | None,
        class_name: str | None,
        status: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> list[Any]:
        t = s.events.c
        where: list[Any] = []
        for column, value in ((t.site, site), (t.camera_id, camera_id), (t.class_name, class_name), (t.status, status)):
            if value is not None:
                where.append(column == value)
        if since is not None:
            where.append(t.started_at >= _naive_utc(since))
        if until is not None:
            where.append(t.started_at < _naive_utc(until))
        return where
