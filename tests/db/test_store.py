"""EventStore on SQLite and MariaDB: migrations, idempotent forward-only upserts, stored text verbatim."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.db.conftest import T0, mysql_store_for, record
from tests.services.mariadb import MariaDBServer
from tests.services.ports import free_port
from trtseg.db import SCHEMA_VERSION, EventStore, MigrationError, RecordError
from trtseg.db.schema import schema_version

ALL_VERSIONS = list(range(1, SCHEMA_VERSION + 1))
SQLISH = [
    "x'); DROP TABLE events; --",
    'a" OR "1"="1',
    "Robert'); DELETE FROM schema_version;--",
    "%_\\' \\\" ` ; /* */ 𝄞 ünï",
]


def _versions(store: EventStore) -> list[int]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(schema_version.c.version)).scalars())


def _count(store: EventStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM events")).scalar_one())


def test_migrate_is_idempotent_and_recorded(store: EventStore) -> None:
    assert _versions(store) == list(range(1, SCHEMA_VERSION + 1))
    assert store.migrate() == []
    inspector = sa.inspect(store.engine)
    assert {"events", "schema_version"} <= set(inspector.get_table_names())
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("events")}
    assert {("site", "started_at"), ("camera_id", "started_at"), ("class_name", "started_at")} <= indexed
    assert store.ping()


def test_migrate_from_many_threads_at_once(store: EventStore) -> None:
    """Each thread has its own engine (its own connections), like separate processes."""
    url = store.url.render_as_string(hide_password=False)
    with store.engine.begin() as conn:  # back to an empty schema
        conn.execute(sa.text("DROP TABLE events"))
        conn.execute(sa.text("DROP TABLE schema_version"))
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        other = EventStore(url)
        try:
            results.append(other.migrate())
        except BaseException as exc:
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(results) == [[], [], [], ALL_VERSIONS]
    assert _versions(store) == ALL_VERSIONS


@pytest.mark.slow
def test_migrate_from_several_processes(tmp_path: Path) -> None:
    """Real processes racing on one SQLite file: one applies every version, the others find them done."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    code = "import sys; from trtseg.db import EventStore; print(EventStore(sys.argv[1]).migrate())"
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=root, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = sorted(proc.communicate(timeout=120)[0].strip() for proc in procs)
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    assert outputs == [str(ALL_VERSIONS), "[]", "[]"]
    store = EventStore(url)
    assert _versions(store) == ALL_VERSIONS
    store.close()


def test_newer_schema_is_refused(store: EventStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1, description="future", applied_at=T0))
    with pytest.raises(MigrationError, match="newer"):
        store.migrate()


def test_upsert_is_idempotent(store: EventStore) -> None:
    first = record()
    assert store.upsert([first, first]) == 2
    store.upsert([first])
    assert _count(store) == 1
    got = store.get(first.event_id)
    assert got is not None
    assert got.started_at == T0  # microseconds and UTC survive
    assert got.instances == first.instances


def test_upsert_only_moves_forward(store: EventStore) -> None:
    opened = record(confidence=0.6, frames_seen=3, keyframe_raw_path="k/a_raw.jpg")
    store.upsert([opened])
    better = replace(
        opened,
        best_confidence=0.9,
        frames_seen=8,
        last_seen_at=opened.last_seen_at + timedelta(seconds=5),
        keyframe_raw_path="k/b_raw.jpg",
        instances=[{"score": 0.9}],
    )
    closed = replace(better, status="closed", ended_at=better.last_seen_at, keyframe_raw_path=None)
    store.upsert([better, closed])
    stale = replace(opened, status="open", best_confidence=0.7, keyframe_raw_path="k/stale.jpg")
    store.upsert([stale])  # an old state replayed late changes nothing that matters
    got = store.get(opened.event_id)
    assert got is not None
    assert got.status == "closed" and got.ended_at == better.last_seen_at
    assert got.best_confidence == pytest.approx(0.9)
    assert got.frames_seen == 8 and got.last_seen_at == better.last_seen_at
    assert got.keyframe_raw_path == "k/b_raw.jpg" and got.instances == [{"score": 0.9}]
    assert _count(store) == 1


def test_sql_looking_text_is_stored_verbatim(store: EventStore) -> None:
    records = [
        record(
            started=T0 + timedelta(minutes=i),
            site=text,
            camera_id=f"cam-{i}",
            class_name=text,
            keyframe_raw_path=text,
            keyframe_annotated_path=text,
        )
        for i, text in enumerate(SQLISH)
    ]
    for rec, text in zip(records, SQLISH, strict=True):
        rec.result = text
        rec.instances = [{"class_name": text, "note": text}]
    store.upsert(records)
    for rec, text in zip(records, SQLISH, strict=True):
        got = store.get(rec.event_id)
        assert got is not None
        assert (got.site, got.class_name, got.result, got.keyframe_raw_path) == (text, text, text, text)
        assert got.instances == [{"class_name": text, "note": text}]
    assert _count(store) == len(SQLISH)
    assert store.get("x' OR '1'='1") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": "x'; DROP TABLE events;--"}, "event_id"),
        ({"site": "s" * 129}, "site"),
        ({"camera_id": ""}, "camera_id"),
        ({"status": "reopened"}, "status"),
        ({"best_confidence": float("nan")}, "best_confidence"),
        ({"best_confidence": 1.5}, "best_confidence"),
        ({"instances": [{"x": object()}]}, "instances"),
        ({"keyframe_raw_path": "p" * 513}, "keyframe_raw_path"),
    ],
)
def test_bad_records_are_refused_whole(store: EventStore, change: dict, message: str) -> None:
    good = record()
    bad = replace(record(started=T0 + timedelta(hours=1)), **change)
    with pytest.raises(RecordError, match=message):
        store.upsert([good, bad])
    assert _count(store) == 0


def test_sqlite_file_in_new_directory_and_text_json_column(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'events.db'}")
    store.migrate()
    store.upsert([record(instances=[{"n": 12}], frames_seen=12)])
    columns = {c["name"]: c["type"] for c in sa.inspect(store.engine).get_columns("events")}
    assert isinstance(columns["instances"], sa.Text)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT typeof(instances) FROM events")).scalar_one() == "text"
    store.close()


@pytest.mark.mysql
def test_mysql_creates_database_and_uses_json(mysql_server: MariaDBServer) -> None:
    store, name = mysql_store_for(mysql_server)
    try:
        assert store.migrate() == ALL_VERSIONS
        with store.engine.connect() as conn:
            ddl = conn.execute(sa.text("SHOW CREATE TABLE events")).one()[1]
        assert "json_valid(`instances`)" in ddl or "`instances` json" in ddl  # MariaDB / MySQL spelling
        assert "datetime(6)" in ddl
    finally:
        store.close()
        mysql_server.execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_down_database_fails_fast() -> None:
    store = EventStore(f"mysql://root@127.0.0.1:{free_port()}/trtseg")
    started = time.monotonic()
    assert store.ping() is False
    with pytest.raises(sa.exc.OperationalError):
        store.migrate()
    assert time.monotonic() - started < 12
    store.close()


def test_unsupported_urls_are_refused() -> None:
    from trtseg.db import DatabaseUrlError

    with pytest.raises(DatabaseUrlError, match="unsupported"):
        EventStore("postgresql://u@h/db")
    with pytest.raises(DatabaseUrlError, match="parsed"):
        EventStore("not a url")
    with pytest.raises(DatabaseUrlError, match="must name a database"):
        EventStore("mysql://root@127.0.0.1:1/").migrate()
    with pytest.raises(DatabaseUrlError, match="database name"):
        EventStore("mysql://root@127.0.0.1:1/bad`name").migrate()


def test_large_batches_are_split_into_statements(store: EventStore) -> None:
    records = [record(started=T0 + timedelta(milliseconds=i), camera_id=f"c{i % 7}") for i in range(1203)]
    assert store.upsert(records + records[:10]) == 1213
    assert _count(store) == 1203
