"""The controller's use of the camera registry, without Ray: what a start runs, write-through,
a start while the database cannot be read and the catch-up once it can, and what health reports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.persistence import CameraPersistence
from actors.supervisor import CameraEntry
from tests.services.ports import free_port
from trtseg.config import CameraConfig, SystemConfig
from trtseg.db import CameraRegistry


def cam(camera_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": camera_id, "source": f"rtsp://cams.local/{camera_id}", **extra}


class FakeController(CameraPersistence):
    """The parts of the controller the mixin uses; camera actors are only recorded."""

    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        self.cameras: dict[str, CameraEntry] = {}
        self.pool = None
        self.sink = None
        self.registry = None
        self._registry_loaded = False
        self._lock = asyncio.Lock()
        self.started: list[str] = []
        self.stopped: list[str] = []

    async def start(self) -> None:
        self._open_registry()
        for camera in await self._cameras_to_start():
            self.cameras[camera.id] = CameraEntry(camera)
            await self._start_camera(self.cameras[camera.id])

    async def _start_camera(self, entry: CameraEntry, strict: bool = False, segmenter: str | None = None) -> None:
        entry.state = "started"
        self.started.append(entry.config.id)

    async def _stop_camera(self, entry: CameraEntry) -> None:
        entry.state = "stopped"
        self.stopped.append(entry.config.id)


def _config(url: str, *cameras: dict[str, Any], persist: bool = True) -> SystemConfig:
    return SystemConfig.model_validate(
        {"cluster": {"persist_cameras": persist}, "sink": {"database_url": url}, "cameras": list(cameras)}
    )


def test_a_new_controller_starts_what_the_previous_one_stored(tmp_path: Path) -> None:
    config = _config(f"sqlite:///{tmp_path / 'events.db'}", cam("yaml-1"), cam("yaml-2"))
    first = FakeController(config)
    asyncio.run(first.start())
    assert first._registry_health()["state"] == "ready"
    asyncio.run(first._persist("runtime", CameraConfig.model_validate(cam("runtime"))))
    asyncio.run(first._persist("yaml-1", CameraConfig.model_validate(cam("yaml-1", confidence=0.5))))
    asyncio.run(first._persist("yaml-2", None))
    asyncio.run(first._close_registry())

    second = FakeController(config)
    asyncio.run(second.start())
    assert second.started == ["yaml-1", "runtime"]
    assert second.cameras["yaml-1"].config.confidence == 0.5


def test_start_without_the_database_then_catch_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry cannot be read at start: the YAML's cameras run; once it can, its changes apply."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    registry = CameraRegistry(url)
    registry.save(CameraConfig.model_validate(cam("runtime")))
    registry.save(CameraConfig.model_validate(cam("changed", confidence=0.55)))
    registry.remove("removed")
    registry.close()

    controller = FakeController(_config(url, cam("kept"), cam("changed"), cam("removed")))
    controller._open_registry()
    assert controller.registry is not None

    def unreadable() -> list[Any]:
        raise ConnectionError("database down")

    monkeypatch.setattr(controller.registry, "load", unreadable)
    asyncio.run(controller.start())
    assert controller.started == ["kept", "changed", "removed"]
    health = controller._registry_health()
    assert health["state"] == "degraded" and health["ready"] is False and health["loaded"] is False

    monkeypatch.undo()
    changed = asyncio.run(controller._sync_registry())
    assert sorted(changed) == ["changed", "removed", "runtime"]
    assert list(controller.cameras) == ["kept", "changed", "runtime"]
    assert controller.cameras["changed"].config.confidence == 0.55
    assert controller.stopped == ["removed", "changed"]
    assert controller._registry_health()["state"] == "ready"
    assert asyncio.run(controller._sync_registry()) == [], "applied once"


def test_a_write_the_database_refuses_stays_pending_and_shows_in_health() -> None:
    controller = FakeController(_config(f"mysql://root@127.0.0.1:{free_port()}/trtseg", cam("a")))
    asyncio.run(controller.start())  # unreadable: the YAML's camera runs
    assert controller.started == ["a"]
    asyncio.run(controller._persist("b", CameraConfig.model_validate(cam("b"))))
    health = controller._registry_health()
    assert health["db_up"] is False and health["pending"] == 1 and health["pending_ids"] == ["b"]
    assert health["ready"] is False
    assert asyncio.run(controller._sync_registry()) == [], "still down: nothing applied, nothing lost"
    assert controller._registry_health()["pending"] == 1
    asyncio.run(controller._close_registry())


def test_persistence_can_be_turned_off(tmp_path: Path) -> None:
    controller = FakeController(_config(f"sqlite:///{tmp_path / 'events.db'}", cam("a"), persist=False))
    asyncio.run(controller.start())
    asyncio.run(controller._persist("b", CameraConfig.model_validate(cam("b"))))
    assert controller.registry is None
    assert controller._registry_health() == {"state": "off", "ready": True}
    assert asyncio.run(controller._sync_registry()) == []
    assert not (tmp_path / "events.db").exists(), "nothing was written"
