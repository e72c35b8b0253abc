"""The controller's side of the camera registry: load at start, write through, retry, catch up.

A mixin of ``Controller``. Cameras added, changed or removed through the API are written to the
registry (``trtseg.db.cameras``) as they happen, so a restarted controller, or a restarted system,
starts the same cameras. The database being down never loses a change in memory and never stops a
start: a failed write stays pending in the registry and the watchdog writes it later; a start
that cannot read the registry runs the YAML's cameras and applies the stored changes once the
database answers. Both show in ``health()`` under ``registry``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.lifecycle import CameraLifecycle
from actors.supervisor import CameraEntry
from trtseg.config import CameraConfig
from trtseg.db.cameras import CameraRegistry

logger = logging.getLogger(__name__)


class CameraPersistence(CameraLifecycle):
    """Keeps the controller's cameras in the registry (off with ``cluster.persist_cameras: false``)."""

    registry: CameraRegistry | None = None
    _registry_loaded: bool = False
    _lock: asyncio.Lock

    def _open_registry(self) -> None:
        if self.config.cluster.persist_cameras and self.registry is None:
            self.registry = CameraRegistry(self.config.sink.database_url, retry_max_s=self.config.sink.retry_max_s)

    async def _cameras_to_start(self) -> list[CameraConfig]:
        """The YAML's cameras merged with the stored changes; the YAML's alone while the database is down."""
        configured = list(self.config.cameras)
        if self.registry is None:
            return configured
        try:
            cameras = await asyncio.to_thread(self.registry.merged, configured)
        except Exception as error:
            logger.error(
                "camera registry unreadable: starting the configuration's cameras, stored changes follow "
                "when the database answers error=%s",
                error,
                extra={"error": str(error)[:300]},
            )
            self._registry_loaded = False
            return configured
        self._registry_loaded = True
        yaml = {c.id: c for c in configured}
        for camera in cameras:
            if yaml.get(camera.id) not in (None, camera):
                logger.info(
                    "camera from the registry overrides the configuration file camera=%s",
                    camera.id,
                    extra={"camera_id": camera.id},
                )
        hidden = sorted(set(yaml) - {c.id for c in cameras})
        logger.info(
            "cameras loaded configured=%d running=%d removed_by_operator=%s",
            len(configured),
            len(cameras),
            ",".join(hidden) or "-",
            extra={"configured": len(configured), "running": len(cameras), "hidden": hidden},
        )
        return cameras

    async def _persist(self, camera_id: str, config: CameraConfig | None) -> None:
        """Write a camera change through (``None``: removed); a failure leaves it pending, never raises."""
        if self.registry is None:
            return
        try:
            if config is None:
                stored = await asyncio.to_thread(self.registry.remove, camera_id)
            else:
                stored = await asyncio.to_thread(self.registry.save, config)
        except Exception:  # save/remove report failures as False; anything else is a bug, still not fatal
            logger.exception("camera registry write raised camera=%s", camera_id, extra={"camera_id": camera_id})
            return
        if not stored:
            logger.warning(
                "camera change kept in memory, not stored yet (database down); retried by the watchdog camera=%s",
                camera_id,
                extra={"camera_id": camera_id},
            )

    async def _sync_registry(self) -> list[str]:
        """A watchdog step: write pending changes; after a start without the database, apply what it holds."""
        if self.registry is None:
            return []
        registry = self.registry
        await asyncio.to_thread(registry.flush)
        if self._registry_loaded or not registry.retry_due():
            return []
        async with self._lock:  # read under the lock, so a camera change made meanwhile is in what is read
            try:
                desired = await asyncio.to_thread(registry.merged, list(self.config.cameras))
            except Exception:
                return []  # logged by the registry; tried again after its backoff
            self._registry_loaded = True
            changed = await self._reconcile(desired)
        logger.info(
            "camera registry readable again: stored changes applied cameras=%s",
            ",".join(changed) or "-",
            extra={"changed": changed},
        )
        return changed

    async def _reconcile(self, desired: list[CameraConfig]) -> list[str]:
        """Bring the running cameras to ``desired``; the ids started, changed or stopped."""
        wanted = {camera.id: camera for camera in desired}
        changed: list[str] = []
        for camera_id in [cid for cid in self.cameras if cid not in wanted]:
            await self._stop_camera(self.cameras.pop(camera_id))
            changed.append(camera_id)
        for camera in desired:
            entry = self.cameras.get(camera.id)
            if entry is not None and entry.config == camera:
                continue
            if entry is None:
                entry = self.cameras[camera.id] = CameraEntry(camera)
            else:
                await self._stop_camera(entry)
                entry.config = camera
            if camera.enabled:
                await self._start_camera(entry)
            else:
                entry.state = "disabled"
            changed.append(camera.id)
        return changed

    def _registry_health(self) -> dict[str, Any]:
        """``registry`` of ``health()``: ready when the stored cameras were read and no change waits."""
        if self.registry is None:
            return {"state": "off", "ready": True}
        status = self.registry.status()
        ready = self._registry_loaded and status["pending"] == 0
        return {"state": "ready" if ready else "degraded", "ready": ready, "loaded": self._registry_loaded, **status}

    async def _close_registry(self) -> None:
        """At shutdown: a last try to write pending changes; what cannot be written is named in the log."""
        registry, self.registry = self.registry, None
        if registry is None:
            return
        await asyncio.to_thread(registry.flush, True)
        lost = registry.status()["pending_ids"]
        if lost:
            logger.error(
                "camera changes not stored (database down at shutdown); the next start will not have them cameras=%s",
                ",".join(lost),
                extra={"lost": lost},
            )
        registry.close()
