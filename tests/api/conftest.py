"""Fixtures of the API tests: a real EventStore (SQLite, or MariaDB for `mysql` tests), real key frame
files, and the app built by ``create_app``. Tests without a Ray cluster get the real Ray adapter with
no controller behind it, which is the "controller down" case the API must answer with 503."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import ControlPlane, RayControlPlane
from trtseg.config import ApiConfig, PusherConfig
from trtseg.db import EventStore
from trtseg.events import EventRecord, new_event_id
from trtseg.keyframes import KeyframeStore

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A real small JPEG whose content depends on ``seed``."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def make_record(
    site: str = "block-7",
    camera_id: str = "cam1",
    class_name: str = "charging_cable",
    started: datetime = T0,
    status: str = "closed",
    confidence: float = 0.8,
    keyframes: KeyframeStore | None = None,
) -> EventRecord:
    """One event as the tracker would emit it, with key frames written when a store is given."""
    event_id = new_event_id(started.timestamp())
    paths: dict[str, str] = {}
    if keyframes is not None:
        data = {"raw": jpeg(seed=1), "annotated": jpeg(seed=2)}
        paths = keyframes.save(site, camera_id, started.date(), event_id, data)
    return EventRecord(
        event_id=event_id,
        site=site,
        camera_id=camera_id,
        class_name=class_name,
        status=status,  # type: ignore[arg-type]
        started_at=started,
        last_seen_at=started + timedelta(seconds=5),
        best_confidence=confidence,
        frames_seen=7,
        result="cable seen",
        ended_at=started + timedelta(seconds=10) if status == "closed" else None,
        instances=[{"class_name": class_name, "score": confidence, "box": [1.0, 2.0, 30.0, 40.0]}],
        keyframe_raw_path=paths.get("raw"),
        keyframe_annotated_path=paths.get("annotated"),
    )


def _mysql_store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    from sqlalchemy import make_url, text

    try:
        base_url = request.getfixturevalue("mysql_url")
    except pytest.FixtureLookupError:
        pytest.skip("the mysql_url fixture (tests/services/mariadb.py) is not available")
    base = make_url(str(base_url))
    name = f"trtseg_api_{uuid.uuid4().hex[:10]}"
    store = EventStore(base.set(database=name).render_as_string(hide_password=False))
    store.migrate()
    try:
        yield store
    finally:
        store.close()
        from sqlalchemy import create_engine

        engine = create_engine(base.set(database=None))
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    """A migrated, empty event store: SQLite in tmp_path, or a throwaway MariaDB database."""
    if request.param == "mysql":
        yield from _mysql_store(request)
        return
    sqlite_store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    sqlite_store.migrate()
    try:
        yield sqlite_store
    finally:
        sqlite_store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[EventStore]:
    """SQLite only, for tests about the HTTP layer rather than the database."""
    sqlite = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    sqlite.migrate()
    yield sqlite
    sqlite.close()


@pytest.fixture
def keyframe_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keyframes"
    path.mkdir()
    return path


@pytest.fixture
def hls_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hls"
    path.mkdir()
    return path


@pytest.fixture
def offline_control() -> ControlPlane:
    """The real Ray adapter with no controller actor behind it."""
    return RayControlPlane(namespace=f"trtseg-absent-{uuid.uuid4().hex[:6]}", timeout_s=5.0)


@dataclass
class AppFactory:
    """Builds a TestClient around create_app with the given pieces."""

    store: EventStore
    keyframe_dir: Path
    hls_dir: Path
    control: ControlPlane
    clients: list[TestClient]

    def __call__(self, control: ControlPlane | None = None, store: Any = None, **api: Any) -> TestClient:
        config = ApiConfig(**api)
        app = create_app(
            control or self.control,
            store or self.store,
            config,
            pusher=PusherConfig(hls_dir=self.hls_dir),
            keyframe_dir=self.keyframe_dir,
        )
        client = TestClient(app, raise_server_exceptions=False)
        self.clients.append(client)
        return client


@pytest.fixture
def make_client(
    sqlite_store: EventStore, keyframe_dir: Path, hls_dir: Path, offline_control: ControlPlane
) -> Iterator[Callable[..., TestClient]]:
    factory = AppFactory(sqlite_store, keyframe_dir, hls_dir, offline_control, [])
    yield factory
    for client in factory.clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """The app with default ApiConfig (no token), SQLite store, controller down."""
    return make_client()
