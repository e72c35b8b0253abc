"""Migration 3 on a database of the previous schema (versions 1-2), on SQLite and MariaDB.

The database holds what the previous version left: cameras added through the registry (their JSON
without an ``analytics`` section, as that version wrote it; a tombstone; one hand-edited row that no
version accepts) and event records spooled on disk while the database was down. Opened by this
version, from either side that can come first (the sink, or the controller's registry): every
camera loads and validates, its JSON is rewritten in today's shape, the bad row is kept and named
in the log, every spooled record is written, and the incidents table exists.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.db.conftest import DATABASES, T0, record
from tests.db.incident_helpers import incident
from tests.db.test_sink import down_url, rows, sink_config
from tests.services.mariadb import MariaDBServer
from trtseg.config import CameraConfig
from trtseg.db import SCHEMA_VERSION, CameraRegistry, EventStore
from trtseg.db.cameras import _Change
from trtseg.db.migrations import migrate
from trtseg.db.url import create_engine, ensure_mysql_database, is_sqlite, normalise_url
from trtseg.events import EventRecord
from trtseg.keyframes import KeyframeStore
from trtseg.sink import EventSink

SAVED_AT = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=DATABASES)
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at schema version 2, as the previous version of trtseg left it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        server: MariaDBServer = request.getfixturevalue("mysql_server")
        name = f"trtseg_test_{secrets.token_hex(5)}"
        url = server.url(name)
        request.addfinalizer(lambda: server.execute(f"DROP DATABASE IF EXISTS `{name}`"))
        ensure_mysql_database(normalise_url(url))
    engine = create_engine(normalise_url(url))
    try:
        assert migrate(engine, target=2) == [1, 2]
        assert not sa.inspect(engine).has_table("incidents")
    finally:
        engine.dispose()
    yield url


def previous_json(camera: CameraConfig) -> dict[str, Any]:
    """A camera as the previous version stored it: everything of today's model but the analytics section."""
    data = camera.model_dump(mode="json")
    data.pop("analytics")
    return data


def store_previous_cameras(url: str) -> dict[str, CameraConfig]:
    """Cameras added, changed and removed through the registry of the previous version."""
    cameras = {
        "gate": CameraConfig(id="gate", site="block-7", source="rtsp://cams.local/gate"),
        "yard": CameraConfig(
            id="yard",
            site="block-9",
            source="rtsp://user:secret@cams.local/yard",
            classes=["charging_cable", "e_bike"],
            inference_fps=5,
            events={"min_hits": 2, "window": 3, "region": {"points": [(0.1, 0.1), (0.9, 0.1), (0.5, 0.8)]}},
        ),
        "lobby": CameraConfig(id="lobby", source="rtsp://cams.local/lobby", enabled=False, push="none"),
    }
    registry = CameraRegistry(url)
    registry._migrated = True  # the previous version's schema is in place; do not bring it forward here
    try:
        with registry.engine.begin() as conn:
            for second, (camera_id, camera) in enumerate(cameras.items()):
                registry._upsert(conn, _Change(camera_id, previous_json(camera), SAVED_AT + timedelta(seconds=second)))
            registry._upsert(conn, _Change("old-yaml-cam", None, SAVED_AT))  # removed by the operator
            hand_edited = {"id": "legacy", "source": "rtsp://cams.local/legacy", "fps_limit": 5}
            registry._upsert(conn, _Change("legacy", hand_edited, SAVED_AT))
    finally:
        registry.close()
    return cameras


def spool_previous_events(tmp_path: Path) -> list[EventRecord]:
    """Events the previous version's sink spooled while the database was down (none written)."""
    events = [
        record(started=T0 + timedelta(seconds=i), keyframe_raw_jpeg=b"\xff\xd8old%d" % i, site="spooled")
        for i in range(7)
    ]
    events.append(record(event_id=events[0].event_id, started=T0, status="closed", confidence=0.9, site="spooled"))
    sink = EventSink(sink_config(tmp_path, down_url()), start=False)
    try:
        sink.submit(events)
        assert sink.flush() == 0 and sink.stats()["spooled"] == len(events)
    finally:
        sink.close()
    return events


def stored_rows(url: str) -> dict[str, dict[str, Any]]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT camera_id, config, removed, updated_at FROM cameras")
            found = {}
            for row in conn.execute(query).mappings():
                config = row["config"]
                found[row["camera_id"]] = {
                    **row,
                    "config": json.loads(config) if isinstance(config, str | bytes) else config,
                }
            return found
    finally:
        engine.dispose()


@pytest.mark.parametrize("first", ["sink", "registry"])
def test_previous_schema_is_upgraded_keeping_every_camera_and_record(
    old_url: str, tmp_path: Path, first: str, caplog: pytest.LogCaptureFixture
) -> None:
    cameras = store_previous_cameras(old_url)
    events = spool_previous_events(tmp_path)
    before = stored_rows(old_url)
    caplog.set_level(logging.INFO, logger="trtseg.db.migrations")

    registry = CameraRegistry(old_url)
    sink = EventSink(sink_config(tmp_path, old_url), start=False)
    try:
        if first == "registry":
            assert registry.migrate() == list(range(3, SCHEMA_VERSION + 1))
        assert sink.flush() == len(events), "every spooled record is written"
        assert sink.stats()["backlog"] == 0 and sink.stats()["rejected"] == 0
        if first == "sink":
            assert registry.migrate() == []

        loaded = {row.camera_id: row for row in registry.load()}
        assert sorted(loaded) == ["gate", "lobby", "old-yaml-cam", "yard"], "only the hand-edited row is skipped"
        for camera_id, camera in cameras.items():
            assert loaded[camera_id].config == camera, f"{camera_id} loads with every setting it had"
            CameraConfig.model_validate(loaded[camera_id].config.model_dump(mode="json"))  # type: ignore[union-attr]
        assert loaded["old-yaml-cam"].removed
        yaml = [CameraConfig(id="old-yaml-cam", source="rtsp://cams.local/x")]
        assert [c.id for c in registry.merged(yaml)] == ["gate", "yard", "lobby"], "tombstone and order kept"
    finally:
        sink.close()
        registry.close()

    after = stored_rows(old_url)
    for camera_id, camera in cameras.items():
        assert after[camera_id]["config"] == camera.model_dump(mode="json"), f"{camera_id} rewritten in today's shape"
        assert "analytics" in after[camera_id]["config"]
        assert after[camera_id]["updated_at"] == before[camera_id]["updated_at"], "the change time is the operator's"
    assert after["legacy"] == before["legacy"], "a row that does not validate is kept exactly as it was"
    assert after["old-yaml-cam"]["removed"] and after["old-yaml-cam"]["config"] is None
    problems = [r for r in caplog.records if r.levelno == logging.ERROR and "legacy" in r.getMessage()]
    assert problems and "fps_limit" in problems[0].getMessage(), "the kept row is named with its bad field"

    written = {row["event_id"]: row for row in rows(old_url)}
    assert sorted(written) == sorted({e.event_id for e in events})
    assert written[events[0].event_id]["status"] == "closed"
    keyframes = KeyframeStore(tmp_path / "keyframes")
    assert keyframes.read(written[events[3].event_id]["keyframe_raw_path"]) == b"\xff\xd8old3"

    store = EventStore(old_url)
    try:
        assert store.migrate() == []
        assert sa.inspect(store.engine).has_table("incidents")
        with store.engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert store.incidents.upsert([incident("inc-after-upgrade")]) == 1
        assert store.incidents.get("inc-after-upgrade") is not None
    finally:
        store.close()


def test_rewriting_is_idempotent_and_leaves_current_rows_alone(tmp_path: Path) -> None:
    """Cameras saved by this version are already in today's shape: the step writes nothing for them."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engine = create_engine(normalise_url(url))
    assert is_sqlite(engine.url)
    migrate(engine, target=2)
    registry = CameraRegistry(url)
    registry._migrated = True
    camera = CameraConfig(id="cam1", source="rtsp://cams.local/1")
    with registry.engine.begin() as conn:
        registry._upsert(conn, _Change("cam1", camera.model_dump(mode="json"), SAVED_AT))
        registry._upsert(conn, _Change("broken", None, SAVED_AT))
        conn.execute(sa.text("UPDATE cameras SET config = '{not json', removed = 0 WHERE camera_id = 'broken'"))
    from trtseg.db import migrations

    with engine.begin() as conn:
        outcome = migrations._rewrite_cameras(conn)
    assert outcome == {"rewritten": [], "unchanged": ["cam1"], "invalid": ["broken"]}
    assert migrate(engine) == list(range(3, SCHEMA_VERSION + 1))
    registry.close()
    engine.dispose()
    reopened = CameraRegistry(url)
    try:
        assert [r.camera_id for r in reopened.load()] == ["cam1"]
    finally:
        reopened.close()
