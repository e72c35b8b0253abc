"""Migration 4 (evidence removal times, status indexes) on SQLite and MariaDB.

A database of schema version 3 is what the previous version left: migrations 1-3 applied, then the
columns and indexes of version 4 taken away again (migrations 1 and 3 create today's shape), holding
events and incidents written the way version 3 wrote them. Opened by this version it gains the
columns (NULL on every kept row, microseconds on MySQL) and indexes, keeps every row, and the marks
work; a database created by this version runs the step without changing anything.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.db.conftest import DATABASES, T0, record
from tests.db.incident_helpers import incident
from tests.services.mariadb import MariaDBServer
from trtseg.clips.retention import EvidenceRemoved
from trtseg.db import SCHEMA_VERSION, EventStore
from trtseg.db import schema as s
from trtseg.db.migrations import _V4_COLUMNS, _V4_INDEXES, _v4_evidence_removed, migrate
from trtseg.db.url import create_engine, ensure_mysql_database, normalise_url

MARKED_AT = datetime(2026, 12, 24, 9, 30, 15, 654321, tzinfo=UTC)


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def _indexes(engine: sa.Engine, table: str) -> set[str]:
    return {str(i["name"]) for i in sa.inspect(engine).get_indexes(table)}


def make_v3(url: str) -> None:
    """The schema version 3 left: today's tables less what migration 4 adds, and no version 4 row."""
    engine = create_engine(normalise_url(url))
    try:
        assert migrate(engine, target=3) == [1, 2, 3]
        with engine.begin() as conn:
            for table, name, _ in _V4_INDEXES:
                index = next(i for i in s.metadata.tables[table].indexes if i.name == name)
                index.drop(conn)
            for table, column in _V4_COLUMNS:
                conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        for table, column in _V4_COLUMNS:
            assert column not in _columns(engine, table)
        assert "ix_events_status" not in _indexes(engine, "events")
    finally:
        engine.dispose()


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a MariaDB database of its own (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    server: MariaDBServer = request.getfixturevalue("mysql_server")
    name = f"trtseg_test_{secrets.token_hex(5)}"
    request.addfinalizer(lambda: server.execute(f"DROP DATABASE IF EXISTS `{name}`"))
    ensure_mysql_database(normalise_url(server.url(name)))
    yield server.url(name)


def test_version_3_database_is_upgraded_keeping_its_rows(url: str) -> None:
    make_v3(url)
    store = EventStore(url)
    try:
        # What version 3 wrote: the upserts name only their own columns, so they run on the old shape.
        events = [record(started=T0 + timedelta(seconds=i), keyframe_raw_path=f"k/ev{i}_raw.jpg") for i in range(5)]
        events[0] = replace(events[0], status="closed", ended_at=events[0].last_seen_at)
        closed = incident("inc-closed", keyframe_paths={"open": {"raw": "k/inc-closed-open_raw.jpg"}})
        closed = replace(closed, status="closed", ended_at=closed.last_seen_at)
        store.write_batch(events, [closed, incident("inc-open")])

        assert store.migrate() == list(range(4, SCHEMA_VERSION + 1))
        assert store.migrate() == []
        for table, column in _V4_COLUMNS:
            assert column in _columns(store.engine, table)
        for table, name, _ in _V4_INDEXES:
            assert name in _indexes(store.engine, table)

        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM events")).scalar() == 5
            assert conn.execute(sa.text("SELECT COUNT(*) FROM incidents")).scalar() == 2
        kept = store.incidents.get("inc-closed")
        assert kept is not None and kept.status == "closed"
        assert kept.keyframe_paths == {"open": {"raw": "k/inc-closed-open_raw.jpg"}}
        assert kept.clip_removed_at is None and kept.keyframes_removed_at is None
        event = store.get(events[1].event_id)
        assert event is not None and event.keyframe_raw_path == "k/ev1_raw.jpg" and event.keyframes_removed_at is None

        assert store.open_ids() == {e.event_id for e in events[1:]}
        assert store.incidents.open_ids() == {"inc-open"}
        removed = EvidenceRemoved(["inc-closed"], ["inc-closed"], [events[0].event_id])
        counts = store.mark_removed(removed, at=MARKED_AT)
        assert counts == {"clips": 1, "incident_keyframes": 1, "event_keyframes": 1}
        marked = store.incidents.get("inc-closed")
        assert marked is not None and marked.clip_removed_at == MARKED_AT, "microseconds kept (DATETIME(6))"
        assert marked.keyframes_removed_at == MARKED_AT
        assert store.get(events[0].event_id).keyframes_removed_at == MARKED_AT  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_new_database_runs_step_4_without_changes(url: str) -> None:
    """Migrations 1 and 3 already create today's tables: step 4 finds its columns and indexes and adds none."""
    store = EventStore(url)
    try:
        assert store.migrate() == list(range(1, SCHEMA_VERSION + 1))
        before = {t: (_columns(store.engine, t), _indexes(store.engine, t)) for t in ("events", "incidents")}
        with store.engine.begin() as conn:  # run again, as a process that died before recording it would
            _v4_evidence_removed(conn)
        after = {t: (_columns(store.engine, t), _indexes(store.engine, t)) for t in ("events", "incidents")}
        assert after == before
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        store.close()


def test_step_4_is_idempotent_on_a_version_3_database(tmp_path: Path) -> None:
    """Applied twice (a crash between the DDL and its version row): the second time adds nothing."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    make_v3(url)
    engine = create_engine(normalise_url(url))
    try:
        for _ in range(2):
            with engine.begin() as conn:
                _v4_evidence_removed(conn)
        assert {"clip_removed_at", "keyframes_removed_at"} <= _columns(engine, "incidents")
        assert migrate(engine) == list(range(4, SCHEMA_VERSION + 1))
    finally:
        engine.dispose()
