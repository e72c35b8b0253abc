"""IncidentStore: the one class that reads and writes incidents (SQLAlchemy Core, no ORM).

Writes are multi-row upserts on ``incident_id`` whose update rules only move an incident forward,
so the sink can replay a spooled batch any number of times, in any order, without harm:

- a closed incident never reopens (its status, end and figures of the close stay);
- severity only escalates (detection -> alert), ``escalated_at`` is set once;
- best confidence, peak fraction, peak count and frames seen only grow; last-seen only advances;
- the latest figures (result, confidence, fraction, count, trajectory, details) come from the
  record seen last (by ``last_seen_at``; on a tie a closing record beats an open one);
- key frame paths are filled in, never cleared; acknowledgement is never touched by an upsert,
  nor are ``clip_removed_at`` / ``keyframes_removed_at`` (set by ``mark_removed`` when retention
  deleted the files; the first time stays).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from trtseg.analytics.records import IncidentRecord
from trtseg.db import schema as s
from trtseg.db.incident_checks import ROW_FIELDS, incident_to_row
from trtseg.db.incident_models import AckResult, IncidentOut, IncidentPage, IncidentQuery
from trtseg.db.models import as_utc, decode_cursor, encode_cursor
from trtseg.db.store import mark_rows

if TYPE_CHECKING:
    from trtseg.clips.retention import EvidenceRemoved

logger = logging.getLogger(__name__)

# Rows per executemany: bounds the size of one multi-row INSERT that PyMySQL builds from it.
ROWS_PER_STATEMENT = 250
_PATHS = tuple(
    (stage, kind, s.keyframe_column(stage, kind)) for stage in s.KEYFRAME_STAGES for kind in s.KEYFRAME_KINDS
)


# Constants of the SET clause as SQL literals, not bound parameters: PyMySQL's executemany folds the
# rows into one multi-row INSERT only when the ON DUPLICATE KEY UPDATE part has no parameters.
CLOSED = sa.literal_column("'closed'")
ALERT = sa.literal_column("'alert'")


def _naive_utc(value: datetime | None) -> datetime | None:
    value = as_utc(value)
    return None if value is None else value.replace(tzinfo=None)


def _when(cond: Any, then: Any, other: Any) -> Any:
    return sa.case((cond, then), else_=other)


def _larger(new: Any, old: Any) -> Any:
    """The larger of two nullable numbers (a NULL loses); GREATEST would give NULL on MySQL."""
    return _when(old.is_(None), new, _when(new.is_(None), old, _when(new > old, new, old)))


def _forward_only(new: Any) -> list[tuple[str, Any]]:
    """The SET list of an upsert; ``new`` is the proposed row.

    Order matters on MySQL, whose ON DUPLICATE KEY UPDATE sees the columns assigned earlier in the
    same statement: everything that compares with the stored last-seen time, status or severity
    comes before those are assigned (SQLite always sees the old row).
    """
    t = s.incidents.c
    closed = t.status == CLOSED
    newer = sa.or_(
        new.last_seen_at > t.last_seen_at,
        sa.and_(new.last_seen_at == t.last_seen_at, new.status == CLOSED, t.status != CLOSED),
    )
    latest = [
        (name, _when(newer, getattr(new, name), getattr(t, name)))
        for name in ("result", "confidence", "fraction", "object_count")
    ]
    latest += [
        (name, _when(newer, sa.func.coalesce(getattr(new, name), getattr(t, name)), getattr(t, name)))
        for name in ("trajectory", "details", "instance")
    ]
    return [
        *latest,
        *((column, sa.func.coalesce(getattr(new, column), getattr(t, column))) for _, _, column in _PATHS),
        ("class_name", sa.func.coalesce(t.class_name, new.class_name)),
        ("escalated_at", sa.func.coalesce(t.escalated_at, new.escalated_at)),
        ("best_confidence", _when(new.best_confidence > t.best_confidence, new.best_confidence, t.best_confidence)),
        ("peak_fraction", _larger(new.peak_fraction, t.peak_fraction)),
        ("peak_count", _larger(new.peak_count, t.peak_count)),
        ("frames_seen", _when(new.frames_seen > t.frames_seen, new.frames_seen, t.frames_seen)),
        ("started_at", _when(new.started_at < t.started_at, new.started_at, t.started_at)),
        ("severity", _when(sa.or_(t.severity == ALERT, new.severity == ALERT), ALERT, t.severity)),
        ("ended_at", _when(closed, t.ended_at, _when(new.status == CLOSED, new.ended_at, t.ended_at))),
        ("last_seen_at", _when(new.last_seen_at > t.last_seen_at, new.last_seen_at, t.last_seen_at)),
        ("updated_at", new.updated_at),
        ("status", _when(closed, t.status, new.status)),
    ]


_OUT_FIELDS = ("id", "acknowledged_at", "acknowledged_by", "clip_removed_at", "keyframes_removed_at", "created_at")


def _out(row: Any) -> IncidentOut:
    data = {key: row[key] for key in (*ROW_FIELDS, *_OUT_FIELDS)}
    data["updated_at"] = row["updated_at"]
    data["trajectory"] = data["trajectory"] or []
    data["details"] = data["details"] or {}
    data["acknowledged"] = row["acknowledged_at"] is not None
    data["keyframe_paths"] = _paths(row)
    return IncidentOut.model_validate(data)


def _paths(row: Any) -> dict[str, dict[str, str]]:
    paths: dict[str, dict[str, str]] = {}
    for stage, kind, column in _PATHS:
        if row[column]:
            paths.setdefault(stage, {})[kind] = row[column]
    return paths


def _record(row: Any) -> IncidentRecord:
    """A stored row as the IncidentRecord a restarted camera resumes from (times aware, in UTC)."""
    data = {key: row[key] for key in ROW_FIELDS}
    for key in ("started_at", "last_seen_at", "ended_at", "escalated_at"):
        data[key] = as_utc(data[key])
    data["trajectory"] = [list(point) for point in data["trajectory"] or []]
    data["details"] = data["details"] or {}
    return IncidentRecord(**data, keyframe_paths=_paths(row))


class IncidentStore:
    """Incidents in MySQL/MariaDB or SQLite, on an engine shared with the EventStore (which migrates)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = "sqlite" if engine.dialect.name == "sqlite" else "mysql"
        self._statement: Any = None

    def __repr__(self) -> str:
        return f"IncidentStore({self.engine.url.render_as_string(hide_password=True)})"

    # ------------------------------------------------------------------ writes
    @staticmethod
    def rows(records: Iterable[IncidentRecord], now: datetime | None = None) -> list[dict[str, Any]]:
        """Checked column values of the records (RecordError names the first bad field)."""
        stamp = (now or datetime.now(UTC)).replace(tzinfo=None)
        return [incident_to_row(record, stamp) for record in records]

    def upsert(self, records: Iterable[IncidentRecord]) -> int:
        """Insert or move forward each incident, in one transaction; returns the number of records."""
        rows = self.rows(records)
        if rows:
            with self.engine.begin() as conn:
                self.upsert_rows(conn, rows)
        return len(rows)

    def upsert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Checked rows (``rows``) upserted on an open transaction.

        One parametrised statement, compiled once and cached, run as an executemany: SQLite prepares
        it once, PyMySQL sends each chunk as one multi-row INSERT. (A statement with the rows as
        literal VALUES would be compiled anew for every batch, which cost 85 % of the time.)
        """
        if self._statement is None:
            if self.dialect == "mysql":
                stmt = mysql.insert(s.incidents)
                self._statement = stmt.on_duplicate_key_update(_forward_only(stmt.inserted))
            else:
                lite = sqlite.insert(s.incidents)
                self._statement = lite.on_conflict_do_update(
                    index_elements=["incident_id"], set_=dict(_forward_only(lite.excluded))
                )
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            conn.execute(self._statement, rows[start : start + ROWS_PER_STATEMENT])

    def acknowledge(self, incident_ids: Sequence[str], by: str | None = None) -> AckResult:
        """Mark incidents acknowledged (the first acknowledgement stays); says which ids exist."""
        ids = list(dict.fromkeys(incident_ids))
        if not ids:
            return AckResult(acknowledged=[], not_found=[])
        t = s.incidents.c
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.engine.begin() as conn:
            conn.execute(
                s.incidents.update()
                .where(t.incident_id.in_(ids), t.acknowledged_at.is_(None))
                .values(acknowledged_at=now, acknowledged_by=by, updated_at=now)
            )
            found = set(conn.execute(sa.select(t.incident_id).where(t.incident_id.in_(ids))).scalars())
        result = AckResult(acknowledged=[i for i in ids if i in found], not_found=[i for i in ids if i not in found])
        logger.info(
            "incidents acknowledged count=%d not_found=%d by=%s",
            len(result.acknowledged),
            len(result.not_found),
            by or "-",
            extra={"acknowledged": len(result.acknowledged), "not_found": len(result.not_found)},
        )
        return result

    def mark_removed(self, removed: EvidenceRemoved, at: datetime | None = None) -> dict[str, int]:
        """Say on the rows that retention deleted their clips (``removed.clip_incidents``) and key frame files
        (``removed.keyframe_incidents``): batched UPDATEs in one transaction; a row already marked keeps its
        first time, unknown ids are ignored. Returns the rows marked now (``clips``, ``incident_keyframes``).
        ``EventStore.mark_removed`` marks events too, in the same transaction."""
        with self.engine.begin() as conn:
            return self.mark_removed_on(conn, removed, (at or datetime.now(UTC)))

    @staticmethod
    def mark_removed_on(conn: Connection, removed: EvidenceRemoved, at: datetime) -> dict[str, int]:
        """``mark_removed`` on an open transaction."""
        stamp = _naive_utc(at)
        assert stamp is not None
        table = s.incidents
        return {
            "clips": mark_rows(conn, table, "incident_id", "clip_removed_at", removed.clip_incidents, stamp),
            "incident_keyframes": mark_rows(
                conn, table, "incident_id", "keyframes_removed_at", removed.keyframe_incidents, stamp
            ),
        }

    # ------------------------------------------------------------------ reads
    def get(self, incident_id: str) -> IncidentOut | None:
        """One incident by its id, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(s.incidents).where(s.incidents.c.incident_id == incident_id)).mappings().first()
            )
        return None if row is None else _out(row)

    def query(self, query: IncidentQuery) -> IncidentPage:
        """A page of incidents matching the filters, in start-time order, with the next page's cursor."""
        t = s.incidents.c
        stmt = sa.select(s.incidents).where(*self._filters(query))
        if query.cursor:
            started, row_id = decode_cursor(query.cursor, query)
            at = _naive_utc(started)
            if query.order == "desc":
                stmt = stmt.where(sa.or_(t.started_at < at, sa.and_(t.started_at == at, t.id < row_id)))
            else:
                stmt = stmt.where(sa.or_(t.started_at > at, sa.and_(t.started_at == at, t.id > row_id)))
        order = (t.started_at.desc(), t.id.desc()) if query.order == "desc" else (t.started_at.asc(), t.id.asc())
        stmt = stmt.order_by(*order).limit(query.limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        more = len(rows) > query.limit
        items = [_out(r) for r in rows[: query.limit]]
        cursor = encode_cursor(items[-1].started_at, items[-1].id, query) if more and items else None
        return IncidentPage(items=items, next_cursor=cursor, limit=query.limit)

    def open_for_camera(self, camera_id: str) -> list[IncidentRecord]:
        """The camera's open incidents, oldest first: what its analytics resume from after a restart."""
        t = s.incidents.c
        stmt = (
            sa.select(s.incidents)
            .where(t.camera_id == camera_id, t.status == "open")
            .order_by(t.started_at.asc(), t.id.asc())
        )
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(stmt).mappings()]

    def open_ids(self) -> set[str]:
        """The ids of the open incidents (what retention must keep), from an index: no row is read."""
        t = s.incidents.c
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(t.incident_id).where(t.status == "open")).scalars())

    def open_counts(self) -> list[dict[str, Any]]:
        """Open incidents per site, camera, rule, severity and acknowledgement (the API's /metrics)."""
        t = s.incidents.c
        acknowledged = t.acknowledged_at.is_not(None).label("acknowledged")
        keys = (t.site, t.camera_id, t.rule, t.severity, acknowledged)
        stmt = sa.select(*keys, sa.func.count().label("count")).where(t.status == "open").group_by(*keys)
        with self.engine.connect() as conn:
            return [{**row, "acknowledged": bool(row["acknowledged"])} for row in conn.execute(stmt).mappings()]

    @staticmethod
    def _filters(query: IncidentQuery) -> list[Any]:
        t = s.incidents.c
        where: list[Any] = []
        for name in ("site", "camera_id", "rule", "zone", "class_name", "severity", "status"):
            value = getattr(query, name)
            if value is not None:
                where.append(getattr(t, name) == value)
        if query.acknowledged is not None:
            where.append(t.acknowledged_at.is_not(None) if query.acknowledged else t.acknowledged_at.is_(None))
        if query.since is not None:
            where.append(t.last_seen_at >= _naive_utc(query.since))
        if query.until is not None:
            where.append(t.started_at < _naive_utc(query.until))
        return where
