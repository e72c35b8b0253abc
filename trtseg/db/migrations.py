"""Schema migrations, applied in order, recorded in ``schema_version``; safe from many processes.

A migration runs under a lock (MySQL ``GET_LOCK``; a file lock next to a SQLite database), checks
``schema_version`` again inside the lock and creates objects with ``checkfirst``, so re-running,
or two processes starting together, apply each step exactly once. New steps go at the end of
``MIGRATIONS`` and use explicit DDL (the tables in schema.py describe the newest shape).

Stored camera configurations (the ``cameras`` registry) are data in the shape of this code's
``CameraConfig``, whose sections refuse unknown keys: a step that changes configuration rewrites
them (``_rewrite_cameras``) so a stored camera keeps running after the upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine

from trtseg.db.schema import cameras, events, incidents, schema_version
from trtseg.db.url import sqlite_path

logger = logging.getLogger(__name__)

LOCK_NAME = "trtseg_migrate"
LOCK_TIMEOUT_S = 60
_memory_lock = threading.Lock()


class MigrationError(RuntimeError):
    """The schema cannot be brought to this code's version."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_events(conn: Connection) -> None:
    events.create(conn, checkfirst=True)  # with its indexes


def _v2_cameras(conn: Connection) -> None:
    cameras.create(conn, checkfirst=True)


def _v3_incidents(conn: Connection) -> None:
    incidents.create(conn, checkfirst=True)
    _rewrite_cameras(conn)


# What migration 4 adds, as that version defined it (explicit: schema.py may change after it). A
# database created from today's schema.py already has it all (migrations 1 and 3 create the tables in
# their newest shape), so each column and index is added only when its table lacks it.
_V4_COLUMNS: tuple[tuple[str, str], ...] = (
    ("incidents", "clip_removed_at"),
    ("incidents", "keyframes_removed_at"),
    ("events", "keyframes_removed_at"),
)
_V4_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("events", "ix_events_status", "status, event_id"),
    ("incidents", "ix_incidents_status", "status, incident_id"),
)


def _v4_evidence_removed(conn: Connection) -> None:
    """When retention deleted a row's evidence files (nullable UTC times; the rows themselves stay), and
    indexes that give the open rows' ids without reading the tables (what retention must keep)."""
    kind = "DATETIME(6)" if conn.dialect.name == "mysql" else "DATETIME"  # microseconds, like the other times
    for table, column in _V4_COLUMNS:
        if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind} NULL"))
    for table, name, columns in _V4_INDEXES:
        if name not in {i["name"] for i in sa.inspect(conn).get_indexes(table)}:
            conn.execute(sa.text(f"CREATE INDEX {name} ON {table} ({columns})"))


def _v5_deliveries(conn: Connection) -> None:
    from trtseg.outbound.schema import create_deliveries_table  # the outbox's own module owns its table

    create_deliveries_table(conn)


def _v6_webhooks(conn: Connection) -> None:
    from trtseg.db.webhooks import create_webhooks_table  # the webhook store's own module owns its table

    create_webhooks_table(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events table with site/camera/class time indexes", _v1_events),
    Migration(2, "cameras table: the camera registry (run-time changes, tombstones)", _v2_cameras),
    Migration(3, "incidents table; stored cameras rewritten with their analytics section", _v3_incidents),
    Migration(4, "evidence removal times on incidents and events; status indexes for open ids", _v4_evidence_removed),
    Migration(5, "deliveries: the outbox of MQTT and webhook messages", _v5_deliveries),
    Migration(6, "webhooks: receivers set through the API", _v6_webhooks),
)
LATEST = MIGRATIONS[-1].version


def applied_versions(conn: Connection) -> set[int]:
    if not sa.inspect(conn).has_table("schema_version"):
        return set()
    return {int(v) for v in conn.execute(sa.select(schema_version.c.version)).scalars()}


def _rewrite_cameras(conn: Connection) -> dict[str, list[str]]:
    """Validate every stored camera against today's ``CameraConfig`` and write it back in today's shape.

    A row that does not validate is kept exactly as it is and logged as an error naming the camera
    and the fields: deleting it would lose the operator's camera for good, and rewriting it would
    have to guess. The registry goes on skipping it at load (the YAML's camera with its id, if any,
    runs instead) until it is fixed with ``PUT /cameras/{id}``, and a later version that can read it
    still finds it. Returns the ids rewritten, unchanged and kept invalid.
    """
    from trtseg.config.camera import CameraConfig  # configuration models are only needed here

    t = cameras.c
    stmt = sa.select(t.camera_id, sa.type_coerce(t.config, sa.Text()).label("config"), t.removed)
    outcome: dict[str, list[str]] = {"rewritten": [], "unchanged": [], "invalid": []}
    for row in conn.execute(stmt.order_by(t.camera_id)).all():
        if row.removed or row.config is None:
            continue
        try:
            stored: Any = json.loads(row.config) if isinstance(row.config, str | bytes) else row.config
            camera = CameraConfig.model_validate(stored)
            if camera.id != row.camera_id:
                raise ValueError(f"its JSON names camera '{camera.id}'")
        except (ValueError, TypeError, ValidationError) as exc:  # JSONDecodeError and ValidationError included
            reason = str(exc).replace("\n", "; ")[:500]
            outcome["invalid"].append(row.camera_id)
            logger.error(
                "stored camera does not validate; row kept unchanged, the camera does not run until it is "
                "fixed (PUT /cameras/{id}) camera=%s reason=%s",
                row.camera_id,
                reason,
                extra={"camera_id": row.camera_id, "reason": reason},
            )
            continue
        dumped = camera.model_dump(mode="json")
        if dumped == stored:
            outcome["unchanged"].append(row.camera_id)
            continue
        conn.execute(cameras.update().where(t.camera_id == row.camera_id).values(config=dumped))
        outcome["rewritten"].append(row.camera_id)
    logger.info(
        "stored cameras rewritten rewritten=%d unchanged=%d invalid=%d invalid_ids=%s",
        len(outcome["rewritten"]),
        len(outcome["unchanged"]),
        len(outcome["invalid"]),
        ",".join(outcome["invalid"]) or "-",
        extra={key: len(ids) for key, ids in outcome.items()},
    )
    return outcome


def migrate(engine: Engine, target: int | None = None) -> list[int]:
    """Apply the missing migrations in order, up to ``target`` (default: all); returns the versions
    applied now (empty: up to date). ``target`` exists for upgrade tests that build an older schema."""
    done: list[int] = []
    with _locked(engine) as conn:
        schema_version.create(conn, checkfirst=True)
        conn.commit()
        have = applied_versions(conn)
        newer = sorted(v for v in have if v > LATEST)
        if newer:
            raise MigrationError(f"database schema version {newer[-1]} is newer than this code's {LATEST}; upgrade")
        for step in MIGRATIONS:
            if step.version in have or (target is not None and step.version > target):
                continue
            step.apply(conn)
            conn.execute(
                schema_version.insert().values(
                    version=step.version, description=step.description, applied_at=datetime.now(UTC)
                )
            )
            conn.commit()
            done.append(step.version)
            logger.info("migration applied version=%d description=%s", step.version, step.description)
    return done


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection held under the migration lock of this database."""
    if engine.dialect.name == "mysql":
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT GET_LOCK(:n, :t)"), {"n": LOCK_NAME, "t": LOCK_TIMEOUT_S}).scalar()
            if got != 1:
                raise MigrationError(f"could not take the migration lock within {LOCK_TIMEOUT_S} s")
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": LOCK_NAME})
        return
    path = sqlite_path(engine.url)
    if path is None:
        with _memory_lock, engine.connect() as conn:
            yield conn
        return
    lock_path = path.with_name(path.name + ".migrate.lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
