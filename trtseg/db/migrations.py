"""Schema migrations, applied in order, recorded in ``schema_version``; safe from many processes.

A migration runs under a lock (MySQL ``GET_LOCK``; a file lock next to a SQLite database), checks
``schema_version`` again inside the lock and creates objects with ``checkfirst``, so re-running,
or two processes starting together, apply each step exactly once. New steps go at the end of
``MIGRATIONS`` and use explicit DDL (the tables in schema.py describe the newest shape).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trtseg.db.schema import cameras, events, schema_version
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


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events table with site/camera/class time indexes", _v1_events),
    Migration(2, "cameras table: the camera registry (run-time changes, tombstones)", _v2_cameras),
)
LATEST = MIGRATIONS[-1].version


def applied_versions(conn: Connection) -> set[int]:
    if not sa.inspect(conn).has_table("schema_version"):
        return set()
    return {int(v) for v in conn.execute(sa.select(schema_version.c.version)).scalars()}


def migrate(engine: Engine) -> list[int]:
    """Apply the missing migrations in order; returns the versions applied now (empty: up to date)."""
    done: list[int] = []
    with _locked(engine) as conn:
        schema_version.create(conn, checkfirst=True)
        conn.commit()
        have = applied_versions(conn)
        newer = sorted(v for v in have if v > LATEST)
        if newer:
            raise MigrationError(f"database schema version {newer[-1]} is newer than this code's {LATEST}; upgrade")
        for step in MIGRATIONS:
            if step.version in have:
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
