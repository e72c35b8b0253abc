"""The controller: the one named actor that owns the camera registry and supervises the pipeline.

It creates the sink and the segmentation actors, places every camera on a segmenter (and the
camera's decoder and pusher on that segmenter's node), answers the HTTP API, and runs a watchdog
that restores dead camera actors, notices new and lost nodes and rebalances cameras.

It also runs the retention of evidence (``trtseg.clips.evidence_retention``: clips and key frames by
age and disk cap) on a thread of its own process, marks the rows whose files it deleted, and reports
the evidence (clips failing, key frames failing, over the disk cap) in ``health()``: evidence failing
shows there and stops nothing. What it answers to readers (frames, key frames, configuration,
``health()``) is in ``actors.controller_views``.

Camera changes made through the API are written to the camera registry in the database
(``actors.persistence``), and Ray restarts the controller when its process dies. The actors it
created die with it (Ray fate-shares an actor with its owner), so a restarted controller cannot
find running ones to adopt: it starts afresh from the YAML's cameras merged with the registry,
which also means no camera ever runs twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from typing import Any

import ray
from pydantic import ValidationError

from actors.common import SINK_NAME, call
from actors.controller_views import READ_RETRIES, ControllerViews
from actors.lifecycle import reason
from actors.persistence import CameraPersistence
from actors.segmenters import SegmenterPool
from actors.spawn import new_sink
from actors.supervisor import CameraEntry, kill_quietly
from trtseg.analytics.camera import rule_class_problems
from trtseg.clips.evidence_retention import EvidenceRetention
from trtseg.config import CameraConfig, SystemConfig
from trtseg.config.loader import format_validation_error
from trtseg.placement import plan
from trtseg.sources import validate_source

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
SEGMENTER_START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
RESUME_RETRY_MAX_S = 30.0
# Camera changes are not retried on a restarted controller (unlike reads, ``READ_RETRIES``): a change
# that was stored before the crash would then fail as a conflict.


def _was_restarted() -> bool:
    """True in a controller process that Ray started again after the previous one died."""
    with warnings.catch_warnings():  # Ray's property uses a deprecated accessor of its own
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


@ray.remote
class Controller(ControllerViews, CameraPersistence):
    """Camera registry, placement and supervision (contract: docs/CONTRACTS.md)."""

    def __init__(self, config: SystemConfig, home_node: str | None = None) -> None:
        self.config = config
        self.home_node = home_node
        self.cameras: dict[str, CameraEntry] = {}
        self.pool = SegmenterPool(config)
        self.sink: Any = None
        self.evidence: EvidenceRetention | None = None
        self.registry = None
        self._registry_loaded = False
        self._lock = asyncio.Lock()
        self._start_task: asyncio.Future[dict[str, Any]] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_at = time.time()
        self._checks = 0
        self._last_check_error: str | None = None
        self._restarted = _was_restarted()
        if self._restarted:
            # Nobody else will call start(): this process replaces one that died. The call waits
            # in the actor's queue until this constructor has returned.
            logger.warning("controller restarted by Ray: rebuilding the pipeline", extra={"home_node": home_node})
            ray.get_runtime_context().current_actor.resume.remote()

    # ------------------------------------------------------------------ lifecycle
    @ray.method(max_task_retries=READ_RETRIES)
    async def start(self) -> dict[str, Any]:
        """Create sink and segmenters, start the cameras (YAML merged with the registry) and the watchdog.

        Idempotent: a second call (a retry, or ``resume`` racing the launcher) waits for the first.
        """
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._start_task)

    async def resume(self) -> None:
        """After Ray restarted this actor: start again, retrying with backoff until it works or shutdown."""
        delay = 1.0
        while not self._stopping:
            try:
                await self.start()
                return
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as error:
                logger.error(
                    "controller restart could not start the pipeline, retrying retry_in_s=%.0f error=%s",
                    delay,
                    reason(error),
                    extra={"retry_in_s": delay, "error": reason(error)},
                )
                await self._stop_all()
                self._start_task = None
                await asyncio.sleep(delay)
                delay = min(RESUME_RETRY_MAX_S, delay * 2)

    async def _start(self) -> dict[str, Any]:
        async with self._lock:
            self._open_registry()
            for camera in await self._cameras_to_start():
                self.cameras[camera.id] = CameraEntry(camera)  # listed (not yet started) while the rest starts
            if self._restarted:
                await self._release_stale_sink()
            self.sink = new_sink(self.config, self.home_node)
            await call(self.sink.ping.remote(), START_TIMEOUT_S, "event sink")
            self._start_retention()
            await self.pool.wait_ready(SEGMENTER_START_TIMEOUT_S)
            if not self.pool.entries:
                raise RuntimeError(f"no segmentation actor could be started: {self.pool.errors or 'no alive nodes'}")
            await asyncio.gather(*(self._start_camera(e) for e in self.cameras.values() if e.config.enabled))
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        logger.info(
            "controller started cameras=%d segmenters=%d restarted=%s",
            len(self.cameras),
            len(self.pool.entries),
            self._restarted,
            extra={"cameras": len(self.cameras), "segmenters": len(self.pool.entries), "restarted": self._restarted},
        )
        return {"cameras": sorted(self.cameras), "segmenters": sorted(self.pool.entries)}

    async def shutdown(self) -> dict[str, Any]:
        """Stop in order: decoders, pushers (open events closed), sink (flushed), segmenters.

        The launcher then kills this actor without restart (``actors.launch``), so a deliberate
        stop is never undone by Ray.
        """
        self._stopping = True
        for task in (self._start_task, self._watchdog):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        summary = await self._stop_all()
        await self._close_registry()
        logger.info("controller shut down cameras=%d", summary["cameras"])
        return summary

    async def _stop_all(self) -> dict[str, Any]:
        """Stop every camera, the sink and the segmenters (also after a failed start)."""
        summary: dict[str, Any] = {}
        await asyncio.to_thread(self._close_retention)
        async with self._lock:
            entries = list(self.cameras.values())
            await asyncio.gather(*(self._stop_decoder(e) for e in entries))
            await asyncio.gather(*(self._stop_pusher(e) for e in entries))
            if self.sink is not None:
                try:
                    summary["sink"] = await call(self.sink.close.remote(), STOP_TIMEOUT_S, "sink close")
                except Exception as error:
                    logger.error("sink did not close cleanly error=%s", error)
                kill_quietly(self.sink)
                self.sink = None
            await self.pool.close_all()
            self.cameras.clear()
        summary["cameras"] = len(entries)
        return summary

    def _start_retention(self) -> None:
        """Retention of clips and key frames on a thread (``trtseg.clips.evidence_retention``)."""
        if self.evidence is None:
            self.evidence = EvidenceRetention(self.config, self._retention_cameras).start()

    def _retention_cameras(self) -> list[CameraConfig] | None:
        """The cameras whose own retention days apply (retention's thread); None while the stored ones are
        unknown (the database was down at start): a stored camera that keeps longer must not lose evidence."""
        if self.registry is not None and not self._registry_loaded:
            return None
        return [entry.config for entry in list(self.cameras.values())]

    def _close_retention(self) -> None:
        evidence, self.evidence = self.evidence, None
        if evidence is not None:
            evidence.close()

    def _started(self) -> bool:
        task = self._start_task
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def _rebuilt_first(self) -> None:
        """A camera change reaching a restarted controller waits for the pipeline it rebuilds (or starts
        the rebuild itself when it came before ``resume``), so it applies to that pipeline, not before it."""
        if self._restarted and not self._started() and not self._stopping:
            await self.start()

    async def _release_stale_sink(self) -> None:
        """The previous process's sink dies with it, but may hold its name for a moment: wait, then kill."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while True:
            try:
                stale = await asyncio.to_thread(ray.get_actor, SINK_NAME, self.config.cluster.namespace)
            except ValueError:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the previous sink still holds the name '{SINK_NAME}'")
            kill_quietly(stale)
            await asyncio.sleep(0.2)

    @ray.method(max_task_retries=READ_RETRIES)
    def ping(self) -> dict[str, Any]:
        return {
            "role": "controller",
            "node_id": ray.get_runtime_context().get_node_id(),
            "home_node": self.home_node,
            "restarted": self._restarted,
        }

    # ------------------------------------------------------------------ registry
    @ray.method(max_task_retries=READ_RETRIES)
    async def list_cameras(self) -> list[dict[str, Any]]:
        entries = list(self.cameras.values())
        return list(await asyncio.gather(*(self._describe(e) for e in entries)))

    @ray.method(max_task_retries=READ_RETRIES)
    async def get_camera(self, camera_id: str) -> dict[str, Any] | None:
        entry = self.cameras.get(camera_id)
        return None if entry is None else await self._describe(entry)

    async def add_camera(self, camera: dict[str, Any]) -> dict[str, Any]:
        """Register, start and store a camera (live in seconds); ValueError: bad input, FileExistsError: id taken."""
        config = self._validate(camera)
        await self._rebuilt_first()
        async with self._lock:
            if config.id in self.cameras:
                raise FileExistsError(f"camera '{config.id}' already exists")
            entry = self.cameras[config.id] = CameraEntry(config)
            if config.enabled:
                try:
                    await self._start_camera(entry, strict=True)
                except Exception:
                    del self.cameras[config.id]
                    raise
            await self._persist(config.id, config)
        logger.info("camera added camera=%s node=%s", config.id, entry.node_id)
        return await self._describe(entry)

    async def update_camera(self, camera_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a camera's settings (merged onto the current ones) and restart its pipeline."""
        await self._rebuilt_first()
        async with self._lock:
            entry = self.cameras.get(camera_id)
            if entry is None:
                raise KeyError(camera_id)
            merged = {**entry.config.model_dump(), **dict(changes)}
            if merged.get("id") != camera_id:
                raise ValueError(f"a camera's id cannot change (got '{merged.get('id')}' for '{camera_id}')")
            config = self._validate(merged)
            await self._stop_camera(entry)
            entry.config = config
            try:
                if config.enabled:
                    await self._start_camera(entry, strict=True)
                else:
                    entry.state = "disabled"
            finally:  # the new settings are the camera's now, even when it failed to start with them
                await self._persist(camera_id, config)
        logger.info("camera updated camera=%s", camera_id)
        return await self._describe(entry)

    async def remove_camera(self, camera_id: str) -> None:
        await self._rebuilt_first()
        async with self._lock:
            entry = self.cameras.get(camera_id)
            if entry is None:
                raise KeyError(camera_id)
            await self._stop_camera(entry)
            del self.cameras[camera_id]
            await self._persist(camera_id, None)  # a tombstone: a camera of the YAML stays removed
        logger.info("camera removed camera=%s", camera_id)

    # ------------------------------------------------------------------ supervision
    async def check_now(self) -> dict[str, Any]:
        """One watchdog pass (tests and operators): registry, nodes, segmenters, camera actors, placement."""
        from_registry = await self._sync_registry()  # outside the lock: a down database must not stall the API
        async with self._lock:
            changed = await self.pool.sync()
            restored = await self._check_cameras()
            moved = await self._rebalance() if changed else []
        self._checks += 1
        return {"segmenters_changed": changed, "restored": restored, "moved": moved, "from_registry": from_registry}

    @ray.method(max_task_retries=READ_RETRIES)
    async def placement(self) -> dict[str, Any]:
        """Camera -> (segmenter, node), and segmenter -> node."""
        return {
            "cameras": {cid: {"segmenter": e.segmenter, "node_id": e.node_id} for cid, e in self.cameras.items()},
            "segmenters": {key: e.slot.node_id for key, e in self.pool.entries.items()},
            "starting": self.pool.starting,
        }

    @ray.method(max_task_retries=READ_RETRIES)
    def camera_actors(self, camera_id: str) -> dict[str, Any]:
        """The camera's decoder, pusher and segmenter handles (operators and tests)."""
        entry = self._entry(camera_id)
        segmenter = self.pool.entries.get(entry.segmenter or "")
        return {
            "decoder": entry.decoder,
            "pusher": entry.pusher,
            "segmenter": segmenter.handle if segmenter is not None else None,
        }

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.cluster.watchdog_interval_s)
            try:
                await self.check_now()
                self._last_check_error = None
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._last_check_error = f"{type(error).__name__}: {error}"
                logger.exception("watchdog pass failed")

    async def _rebalance(self) -> list[str]:
        slots = [e.slot for e in self.pool.entries.values()]
        running = {cid: e for cid, e in self.cameras.items() if e.config.enabled}
        current = {cid: e.segmenter for cid, e in running.items() if e.segmenter}
        result = plan(running, slots, current)
        nodes = {e.slot.key: e.slot.node_id for e in self.pool.entries.values()}
        moved = [
            cid
            for cid, entry in running.items()
            if result.assignment.get(cid) != entry.segmenter or nodes.get(entry.segmenter or "") != entry.node_id
        ]
        for camera_id in moved:
            entry = running[camera_id]
            await self._stop_camera(entry)
            await self._start_camera(entry, segmenter=result.assignment.get(camera_id))
        if moved:
            logger.info("cameras rebalanced moved=%s", ",".join(sorted(moved)))
        return sorted(moved)

    async def _check_cameras(self) -> list[str]:
        """Ping every camera's actors; restore cameras whose actors are dead for good."""
        restored: list[str] = []
        entries = [e for e in self.cameras.values() if e.config.enabled]
        results = await asyncio.gather(*(self._ping_camera(e) for e in entries))
        for entry, dead in zip(entries, results, strict=True):
            if dead:
                logger.warning("restoring camera camera=%s dead=%s", entry.config.id, dead)
                await self._stop_camera(entry)
                await self._start_camera(entry)
                entry.restores += 1
                restored.append(entry.config.id)
        return restored

    # ------------------------------------------------------------------ helpers
    def _validate(self, data: dict[str, Any]) -> CameraConfig:
        try:
            camera = CameraConfig.model_validate(data)
        except ValidationError as error:
            raise ValueError(format_validation_error(error, "camera")) from None
        try:
            validate_source(camera.source, self.config.api.file_source_dir)
        except ValueError as error:
            raise ValueError(f"camera '{camera.id}': source refused: {error}") from None
        names = self.model_names()
        problems = rule_class_problems(camera, names) if names else []  # such a rule could never fire
        if problems:
            raise ValueError(f"camera '{camera.id}': {'; '.join(problems)}")
        return camera
