"""Event stores of the database tests: SQLite in tmp_path, or a fresh MariaDB database per test."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from tests.services.mariadb import MariaDBServer
from trtseg.db import EventStore
from trtseg.events import EventRecord, new_event_id

T0 = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=UTC)


def record(
    started: datetime = T0,
    site: str = "block-7",
    camera_id: str = "cam1",
    class_name: str = "charging_cable",
    status: str = "open",
    confidence: float = 0.7,
    frames_seen: int = 3,
    event_id: str | None = None,
    **extra: object,
) -> EventRecord:
    """One event state as the tracker emits it (without JPEG bytes)."""
    fields: dict[str, object] = {
        "instances": [{"class_name": class_name, "score": confidence, "box": [1.0, 2.0, 3.0, 4.0]}],
        **extra,
    }
    return EventRecord(
        event_id=event_id or new_event_id(started.timestamp()),
        site=site,
        camera_id=camera_id,
        class_name=class_name,
        status=status,  # type: ignore[arg-type]
        started_at=started,
        last_seen_at=started + timedelta(seconds=2),
        ended_at=started + timedelta(seconds=2) if status == "closed" else None,
        best_confidence=confidence,
        frames_seen=frames_seen,
        result=f"{class_name} detected",
        **fields,  # type: ignore[arg-type]
    )


def mysql_store_for(server: MariaDBServer) -> tuple[EventStore, str]:
    name = f"trtseg_test_{secrets.token_hex(5)}"
    return EventStore(server.url(name)), name


class Migratable(Protocol):
    """What the database fixtures set up: an ``EventStore`` or a ``CameraRegistry``."""

    def migrate(self) -> object: ...
    def close(self) -> None: ...


M = TypeVar("M", bound=Migratable)


def migrated(request: pytest.FixtureRequest, tmp_path: Path, factory: Callable[[str], M]) -> Iterator[M]:
    """``factory(url)`` migrated on a SQLite file, or on a database of its own on MariaDB (dropped after)."""
    if request.param == "sqlite":
        sqlite_db = factory(f"sqlite:///{tmp_path / 'events.db'}")
        sqlite_db.migrate()
        yield sqlite_db
        sqlite_db.close()
        return
    server: MariaDBServer = request.getfixturevalue("mysql_server")
    name = f"trtseg_test_{secrets.token_hex(5)}"
    mysql_db = factory(server.url(name))
    try:
        mysql_db.migrate()
        yield mysql_db
    finally:
        mysql_db.close()
        server.execute(f"DROP DATABASE IF EXISTS `{name}`")


DATABASES = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """A migrated, empty store: a SQLite file, or a database of its own on MariaDB (created by migrate)."""
    yield from migrated(request, tmp_path, EventStore)
