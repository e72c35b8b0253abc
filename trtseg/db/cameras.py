"""CameraRegistry: the cameras added, changed or removed at run time, kept in the event database.

The YAML configuration is what a deployment starts from; what the operator changes through the
HTTP API afterwards must survive a restart of the controller or of the whole system. Each change
is one row of the ``cameras`` table (same database and schema migrations as the events): the whole
validated ``CameraConfig`` as JSON, or a ``removed`` tombstone.

How the YAML's cameras and the stored rows merge at start (``merge_cameras``):

- a stored camera replaces the YAML camera with the same id (the operator's change is newer than
  the file; to give a camera back to the YAML, delete its row);
- a tombstone hides the YAML camera with the same id, so a deleted camera stays deleted;
- YAML cameras without a row are taken as the file says (edits of the file apply to them);
- stored cameras the YAML does not name follow the YAML's, in the order of their last change.

A row whose JSON no longer validates against today's ``CameraConfig`` is logged and skipped (the
YAML's camera with its id, if any, runs instead); it never stops a start. Writes that fail because
the database is down are kept as pending changes (the newest per camera) and written by ``flush``,
which the controller calls on every watchdog pass, with capped exponential backoff.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr, ValidationError
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from trtseg.config.camera import CameraConfig
from trtseg.db import schema as s
from trtseg.db.migrations import migrate as run_migrations
from trtseg.db.url import create_engine, ensure_mysql_database, is_sqlite, normalise_url

logger = logging.getLogger(__name__)

MIN_RETRY_S = 0.5
MAX_RETRY_S = 30.0


@dataclass(frozen=True)
class StoredCamera:
    """One valid row: a camera's configuration, or a tombstone (``config`` None)."""

    camera_id: str
    config: CameraConfig | None
    updated_at: datetime

    @property
    def removed(self) -> bool:
        return self.config is None


@dataclass(frozen=True)
class _Change:
    """A change waiting to be written: the newest one per camera wins."""

    camera_id: str
    config: dict[str, Any] | None  # None: removed
    at: datetime


def merge_cameras(configured: Sequence[CameraConfig], stored: Sequence[StoredCamera]) -> list[CameraConfig]:
    """The cameras to run: the YAML's, overridden, hidden or extended by the stored rows (module doc)."""
    rows = {row.camera_id: row for row in stored}
    merged: list[CameraConfig] = []
    for camera in configured:
        row = rows.get(camera.id)
        if row is None:
            merged.append(camera)
        elif row.config is not None:
            merged.append(row.config)
    named = {camera.id for camera in configured}
    extra = sorted((r for r in stored if r.camera_id not in named), key=lambda r: (r.updated_at, r.camera_id))
    merged.extend(row.config for row in extra if row.config is not None)
    return merged


def _describe(exc: BaseException) -> str:
    """A short error text without SQL or parameters (they hold camera URLs with credentials)."""
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else exc}"[:300]


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


class CameraRegistry:
    """Run-time camera changes in MySQL/MariaDB or SQLite; thread-safe."""

    def __init__(
        self, url: str | SecretStr, retry_max_s: float = MAX_RETRY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        self.url = normalise_url(raw)
        self.engine: Engine = create_engine(self.url)
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the pending changes and the figures below
        self._flush_lock = threading.Lock()  # one writer at a time, so changes are written in order
        self._pending: dict[str, _Change] = {}
        self._migrated = False
        self._db_up: bool | None = None
        self._last_error: str | None = None
        self._backoff_s = 0.0
        self._next_try = 0.0
        self._written = 0

    def __repr__(self) -> str:
        return f"CameraRegistry({self.url.render_as_string(hide_password=True)})"

    # ------------------------------------------------------------------ schema
    def migrate(self) -> list[int]:
        """Create the database (MySQL, when missing) and apply pending migrations; idempotent."""
        if not is_sqlite(self.url):
            ensure_mysql_database(self.url)
        done = run_migrations(self.engine)
        self._migrated = True
        return done

    # ------------------------------------------------------------------ writes
    def save(self, camera: CameraConfig) -> bool:
        """Store a camera's whole configuration; True when written now, False when left pending."""
        return self._record(_Change(camera.id, camera.model_dump(mode="json"), datetime.now(UTC)))

    def remove(self, camera_id: str) -> bool:
        """Store a tombstone for the camera; True when written now, False when left pending."""
        return self._record(_Change(camera_id, None, datetime.now(UTC)))

    def _record(self, change: _Change) -> bool:
        with self._lock:
            self._pending.pop(change.camera_id, None)  # re-inserted last: changes stay in time order
            self._pending[change.camera_id] = change
        self.flush()
        with self._lock:
            return change.camera_id not in self._pending or self._pending[change.camera_id] is not change

    def flush(self, force: bool = False) -> int:
        """Write the pending changes in order; the number written. Never raises: failures stay pending.

        While the database is down, attempts wait out a capped exponential backoff unless ``force``.
        """
        with self._flush_lock:
            with self._lock:
                waiting = list(self._pending.values())
            if not force and self._clock() < self._next_try:
                return 0
            if not waiting:
                if self._db_up is False:  # nothing to write, but the report should not stay stale
                    self._probe()
                return 0
            written = 0
            try:
                self._ensure_schema()
                for change in waiting:
                    with self.engine.begin() as conn:
                        self._upsert(conn, change)
                    with self._lock:
                        if self._pending.get(change.camera_id) is change:  # not replaced meanwhile
                            del self._pending[change.camera_id]
                        self._written += 1
                    written += 1
            except Exception as exc:  # a down database, or anything else: keep the change, report it
                self._failed(exc, "write")
            else:
                self._succeeded()
            if written:
                logger.info("camera registry written changes=%d", written, extra={"written": written})
            return written

    def _upsert(self, conn: Connection, change: _Change) -> None:
        row = {
            "camera_id": change.camera_id,
            "config": change.config,
            "removed": change.config is None,
            "updated_at": _naive_utc(change.at),
        }
        update = ("config", "removed", "updated_at")
        if is_sqlite(self.url):
            stmt = sqlite.insert(s.cameras).values(row)
            excluded = {k: stmt.excluded[k] for k in update}
            conn.execute(stmt.on_conflict_do_update(index_elements=["camera_id"], set_=excluded))
        else:
            stmt = mysql.insert(s.cameras).values(row)
            conn.execute(stmt.on_duplicate_key_update({k: stmt.inserted[k] for k in update}))

    # ------------------------------------------------------------------ reads
    def load(self) -> list[StoredCamera]:
        """Every valid row (pending changes applied on top); raises when the database cannot be read.

        Rows that do not validate against today's ``CameraConfig`` are logged and left out.
        """
        try:
            self._ensure_schema()
            t = s.cameras.c
            # The JSON is read as text and parsed row by row, so one damaged row cannot fail the query.
            stmt = sa.select(t.camera_id, sa.type_coerce(t.config, sa.Text()).label("config"), t.removed, t.updated_at)
            with self.engine.connect() as conn:
                rows = conn.execute(stmt.order_by(t.updated_at, t.camera_id)).all()
        except Exception as exc:
            self._failed(exc, "load")
            raise
        self._succeeded()
        found = {row.camera_id: stored for row in rows if (stored := _parse(row)) is not None}
        with self._lock:
            pending = list(self._pending.values())
        for change in pending:  # not written yet, but newer than what the database holds
            config = None if change.config is None else CameraConfig.model_validate(change.config)
            found[change.camera_id] = StoredCamera(change.camera_id, config, _naive_utc(change.at))
        return list(found.values())

    def merged(self, configured: Sequence[CameraConfig]) -> list[CameraConfig]:
        """The cameras to run at start: ``configured`` (the YAML's) merged with the stored rows."""
        return merge_cameras(configured, self.load())

    # ------------------------------------------------------------------ state
    def status(self) -> dict[str, Any]:
        """``db_up`` (None before the first attempt), ``pending`` changes and their camera ids, errors."""
        with self._lock:
            return {
                "db_up": self._db_up,
                "pending": len(self._pending),
                "pending_ids": sorted(self._pending),
                "written": self._written,
                "last_error": self._last_error,
                "retry_in_s": round(max(0.0, self._next_try - self._clock()), 1) if self._pending else 0.0,
            }

    def retry_due(self) -> bool:
        """False while backing off after a failure (the database was down a moment ago)."""
        return self._clock() >= self._next_try

    def close(self) -> None:
        """Release pooled connections (pending changes are lost with the process: see status())."""
        self.engine.dispose()

    def _probe(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            self._failed(exc, "ping")
        else:
            self._succeeded()

    def _ensure_schema(self) -> None:
        if not self._migrated:
            self.migrate()

    def _failed(self, exc: BaseException, what: str) -> None:
        error = _describe(exc)
        with self._lock:
            self._db_up = False
            self._last_error = error
            self._backoff_s = min(self._retry_max_s, max(MIN_RETRY_S, self._backoff_s * 2))
            self._next_try = self._clock() + self._backoff_s
            pending, retry = len(self._pending), self._backoff_s
        logger.warning(
            "camera registry %s failed pending=%d retry_in_s=%.1f error=%s",
            what,
            pending,
            retry,
            error,
            extra={"operation": what, "pending": pending, "retry_in_s": retry, "error": error},
        )

    def _succeeded(self) -> None:
        with self._lock:
            was_down = self._db_up is False
            self._db_up, self._last_error, self._backoff_s, self._next_try = True, None, 0.0, 0.0
        if was_down:
            logger.info("camera registry database answers again")


def _parse(row: Any) -> StoredCamera | None:
    """A row as a StoredCamera, or None (logged) when its JSON is not a valid camera any more."""
    updated_at = row.updated_at
    if row.removed:
        return StoredCamera(row.camera_id, None, updated_at)
    try:
        data = json.loads(row.config) if isinstance(row.config, str | bytes) else row.config
        config = CameraConfig.model_validate(data)
        if config.id != row.camera_id:
            raise ValueError(f"its JSON names camera '{config.id}'")
    except (ValueError, TypeError, ValidationError) as exc:  # JSONDecodeError and ValidationError are ValueErrors
        reason = str(exc).replace("\n", "; ")[:300]
        logger.warning(
            "stored camera skipped: not a valid camera configuration camera=%s reason=%s",
            row.camera_id,
            reason,
            extra={"camera_id": row.camera_id, "reason": reason},
        )
        return None
    return StoredCamera(row.camera_id, config, updated_at)
