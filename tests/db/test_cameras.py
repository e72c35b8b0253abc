"""CameraRegistry on SQLite and MariaDB: upserts, tombstones, the merge with the YAML's cameras,
stored rows that no longer validate, and changes kept pending while the database is down."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.db.conftest import DATABASES, migrated
from tests.services.mariadb import PrivateMariaDB
from tests.services.ports import free_port
from trtseg.config import CameraConfig
from trtseg.db import SCHEMA_VERSION, CameraRegistry, EventStore, StoredCamera, merge_cameras
from trtseg.db.cameras import _Change
from trtseg.db.migrations import MIGRATIONS
from trtseg.db.schema import cameras as cameras_table
from trtseg.db.schema import schema_version

T0 = datetime(2026, 11, 20, 8, 0, 0)


def cam(camera_id: str, **extra: object) -> CameraConfig:
    return CameraConfig.model_validate({"id": camera_id, "source": f"rtsp://cams.local/{camera_id}", **extra})


def stored(camera_id: str, config: CameraConfig | None, second: int = 0) -> StoredCamera:
    return StoredCamera(camera_id, config, T0.replace(second=second))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=DATABASES)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CameraRegistry]:
    """A migrated, empty registry: a SQLite file, or a database of its own on MariaDB."""
    yield from migrated(request, tmp_path, CameraRegistry)


def _insert_raw(registry: CameraRegistry, camera_id: str, config_text: str) -> None:
    """A row as an older version of the code (or a hand edit) may have left it."""
    with registry.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO cameras (camera_id, config, removed, updated_at) VALUES (:i, :c, :r, :u)"),
            {"i": camera_id, "c": config_text, "r": False, "u": T0},
        )


# ---------------------------------------------------------------------------- merge rules (pure)
def test_merge_stored_wins_tombstones_hide_and_new_cameras_follow() -> None:
    yaml = [cam("a"), cam("b"), cam("c")]
    rows = [
        stored("z", cam("z"), second=1),  # added at run time, earlier
        stored("b", cam("b", confidence=0.6), second=2),  # changed at run time
        stored("c", None, second=3),  # a YAML camera the operator removed
        stored("y", cam("y"), second=4),  # added at run time, later
        stored("x", None, second=5),  # added and removed again at run time
    ]
    merged = merge_cameras(yaml, rows)
    assert [c.id for c in merged] == ["a", "b", "z", "y"]
    assert merged[0] is yaml[0], "a YAML camera without a row is taken as the file says"
    assert merged[1].confidence == 0.6, "the stored change wins over the YAML"
    assert merge_cameras(yaml, []) == yaml
    assert merge_cameras([], rows) == [rows[0].config, rows[1].config, rows[3].config]


# ---------------------------------------------------------------------------- on a database
def test_migrate_creates_the_cameras_table(registry: CameraRegistry) -> None:
    assert registry.migrate() == []
    assert "cameras" in sa.inspect(registry.engine).get_table_names()
    with registry.engine.connect() as conn:
        versions = sorted(conn.execute(sa.select(schema_version.c.version)).scalars())
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_an_existing_database_is_upgraded(tmp_path: Path) -> None:
    """A database made by the code before the registry (version 1 only) gets the table, events kept."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        MIGRATIONS[0].apply(conn)
        schema_version.create(conn)
        conn.execute(schema_version.insert().values(version=1, description="old", applied_at=T0))
    engine.dispose()
    registry = CameraRegistry(url)
    try:
        assert registry.migrate() == list(range(2, SCHEMA_VERSION + 1)), "every step after version 1"
        assert registry.save(cam("a"))
        assert [s.camera_id for s in registry.load()] == ["a"]
        assert EventStore(url).migrate() == [], "the event store sees the same, newest schema"
    finally:
        registry.close()


def test_save_is_an_upsert_of_the_whole_configuration(registry: CameraRegistry) -> None:
    region = {"points": [(0.1, 0.1), (0.9, 0.1), (0.5, 0.8)]}
    first = cam("gate", name="Gate ünï 𝄞", classes=["e_bike"], events={"min_hits": 2, "region": region})
    assert registry.save(first) is True
    second = first.model_copy(update={"confidence": 0.45})
    assert registry.save(second) is True
    rows = registry.load()
    assert [(r.camera_id, r.removed) for r in rows] == [("gate", False)]
    assert rows[0].config == second, "every field survives the round trip"
    assert rows[0].config is not None and rows[0].config.events.region is not None
    with registry.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cameras_table)).scalar_one() == 1
    assert registry.status() == {
        "db_up": True,
        "pending": 0,
        "pending_ids": [],
        "written": 2,
        "last_error": None,
        "retry_in_s": 0.0,
    }


def test_remove_leaves_a_tombstone_that_hides_the_yaml_camera(registry: CameraRegistry) -> None:
    yaml = [cam("north"), cam("south")]
    assert registry.remove("south") is True
    assert [c.id for c in registry.merged(yaml)] == ["north"]
    rows = registry.load()
    assert [(r.camera_id, r.removed, r.config) for r in rows] == [("south", True, None)]
    registry.save(cam("south", confidence=0.5))  # added again at run time
    merged = registry.merged(yaml)
    assert [c.id for c in merged] == ["north", "south"] and merged[1].confidence == 0.5


def test_merged_adds_runtime_cameras_and_applies_changes(registry: CameraRegistry) -> None:
    yaml = [cam("a"), cam("b")]
    registry.save(cam("later"))
    registry.save(cam("b", enabled=False))
    merged = registry.merged(yaml)
    assert [c.id for c in merged] == ["a", "b", "later"]
    assert merged[1].enabled is False
    assert merged[0] == yaml[0]


def test_stored_rows_that_no_longer_validate_are_logged_and_skipped(
    registry: CameraRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    good = cam("good")
    registry.save(good)
    old_shape = {**cam("old").model_dump(mode="json"), "fps_magic": 3}  # a field this code does not know
    _insert_raw(registry, "old", json.dumps(old_shape))
    _insert_raw(registry, "bad", json.dumps({**cam("bad").model_dump(mode="json"), "confidence": 7}))
    _insert_raw(registry, "other", json.dumps(cam("someone-else").model_dump(mode="json")))  # id mismatch
    if registry.url.drivername == "sqlite":
        _insert_raw(registry, "broken", "{not json")  # MariaDB's JSON column refuses this itself
    yaml = [cam("bad", confidence=0.3)]
    with caplog.at_level(logging.WARNING, logger="trtseg.db.cameras"):
        merged = registry.merged(yaml)
    assert [c.id for c in merged] == ["bad", "good"]
    assert merged[0].confidence == 0.3, "the YAML's camera runs when its stored change is unusable"
    skipped = {r.camera_id for r in caplog.records if "skipped" in r.getMessage()}  # type: ignore[attr-defined]
    expected = {"old", "bad", "other"} | ({"broken"} if registry.url.drivername == "sqlite" else set())
    assert skipped == expected


def test_changes_wait_while_the_database_is_down_then_are_flushed() -> None:
    """Nothing listens on the port: writes fail fast, stay pending (newest per camera), back off."""
    clock = FakeClock()
    registry = CameraRegistry(f"mysql://root@127.0.0.1:{free_port()}/trtseg", retry_max_s=8.0, clock=clock)
    try:
        assert registry.save(cam("a")) is False
        status = registry.status()
        assert status["db_up"] is False and status["pending"] == 1 and status["last_error"]
        assert status["retry_in_s"] > 0
        assert registry.retry_due() is False
        # While backing off, changes are queued without waiting on a connection attempt.
        assert registry.remove("b") is False
        assert registry.save(cam("a", confidence=0.9)) is False
        assert registry.status()["pending_ids"] == ["a", "b"]
        assert registry.flush() == 0
        with pytest.raises(sa.exc.OperationalError):
            registry.load()
        clock.now += 100
        assert registry.retry_due()
        assert registry.flush() == 0  # tried, failed again: the backoff grows up to retry_max_s
        assert 0 < registry.status()["retry_in_s"] <= 8.0
    finally:
        registry.close()


def test_load_includes_changes_not_written_yet(tmp_path: Path) -> None:
    registry = CameraRegistry(f"sqlite:///{tmp_path / 'events.db'}")
    try:
        registry.save(cam("a"))
        # As a write that failed a moment ago would have left it (the database answers reads again).
        registry._pending["b"] = _Change("b", cam("b").model_dump(mode="json"), datetime.now(UTC))
        assert [c.id for c in registry.merged([])] == ["a", "b"]
    finally:
        registry.close()


@pytest.mark.mysql
@pytest.mark.slow
def test_mariadb_down_then_back_pending_changes_are_written(private_mariadb: PrivateMariaDB) -> None:
    registry = CameraRegistry(private_mariadb.url("trtseg_cameras"), retry_max_s=1.0)
    try:
        registry.migrate()
        assert registry.save(cam("kept")) is True
        private_mariadb.stop()
        assert registry.save(cam("added")) is False
        assert registry.remove("kept") is False
        assert registry.status()["db_up"] is False and registry.status()["pending"] == 2
        private_mariadb.start()
        assert registry.flush(force=True) == 2
        assert registry.status()["pending"] == 0 and registry.status()["db_up"] is True
        rows = {r.camera_id: r for r in registry.load()}
        assert rows["kept"].removed and not rows["added"].removed
        assert [c.id for c in registry.merged([cam("kept")])] == ["added"]
    finally:
        registry.close()
