"""The controller: the one named actor that owns the camera registry and supervises the pipeline.

It creates the sink and the segmentation actors, places every camera on a segmenter (and the
camera's decoder and pusher on that segmenter's node), answers the HTTP API, and runs a watchdog
that restores dead camera actors, notices new and lost nodes and rebalances cameras.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
import ray
from pydantic import ValidationError

from actors.common import call
from actors.lifecycle import CameraLifecycle, reason
from actors.segmenters import SegmenterPool
from actors.spawn import new_sink
from actors.supervisor import CameraEntry, kill_quietly
from trtseg.config import CameraConfig, SystemConfig
from trtseg.config.loader import format_validation_error
from trtseg.detections import Detections
from trtseg.pipeline import stream_targets
from trtseg.placement import plan
from trtseg.sources import redact_url, validate_source

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
SEGMENTER_START_TIMEOUT_S = 180.0
QUERY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 20.0


@ray.remote
class Controller(CameraLifecycle):
    """Camera registry, placement and supervision (contract: docs/CONTRACTS.md)."""

    def __init__(self, config: SystemConfig, home_node: str | None = None) -> None:
        self.config = config
        self.home_node = home_node
        self.cameras: dict[str, CameraEntry] = {}
        self.pool = SegmenterPool(config)
        self.sink: Any = None
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._started_at = time.time()
        self._checks = 0
        self._last_check_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> dict[str, Any]:
        """Create sink and segmenters, start the configured cameras and the watchdog."""
        async with self._lock:
            self.sink = new_sink(self.config, self.home_node)
            await call(self.sink.ping.remote(), START_TIMEOUT_S, "event sink")
            await self.pool.wait_ready(SEGMENTER_START_TIMEOUT_S)
            if not self.pool.entries:
                raise RuntimeError(f"no segmentation actor could be started: {self.pool.errors or 'no alive nodes'}")
            for camera in self.config.cameras:
                self.cameras[camera.id] = CameraEntry(camera)
            await asyncio.gather(*(self._start_camera(e) for e in self.cameras.values() if e.config.enabled))
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        logger.info("controller started cameras=%d segmenters=%d", len(self.cameras), len(self.pool.entries))
        return {"cameras": sorted(self.cameras), "segmenters": sorted(self.pool.entries)}

    async def shutdown(self) -> dict[str, Any]:
        """Stop in order: decoders, pushers (open events closed), sink (flushed), segmenters."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watchdog
        summary: dict[str, Any] = {}
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
        summary["cameras"] = len(entries)
        logger.info("controller shut down cameras=%d", len(entries))
        return summary

    def ping(self) -> dict[str, Any]:
        return {"role": "controller", "node_id": ray.get_runtime_context().get_node_id(), "home_node": self.home_node}

    # ------------------------------------------------------------------ registry
    async def list_cameras(self) -> list[dict[str, Any]]:
        entries = list(self.cameras.values())
        return list(await asyncio.gather(*(self._describe(e) for e in entries)))

    async def get_camera(self, camera_id: str) -> dict[str, Any] | None:
        entry = self.cameras.get(camera_id)
        return None if entry is None else await self._describe(entry)

    async def add_camera(self, camera: dict[str, Any]) -> dict[str, Any]:
        """Register and start a camera (live within seconds); ValueError: bad input, FileExistsError: id taken."""
        config = self._validate(camera)
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
        logger.info("camera added camera=%s node=%s", config.id, entry.node_id)
        return await self._describe(entry)

    async def update_camera(self, camera_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a camera's settings (merged onto the current ones) and restart its pipeline."""
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
            if config.enabled:
                await self._start_camera(entry, strict=True)
            else:
                entry.state = "disabled"
        logger.info("camera updated camera=%s", camera_id)
        return await self._describe(entry)

    async def remove_camera(self, camera_id: str) -> None:
        async with self._lock:
            entry = self.cameras.get(camera_id)
            if entry is None:
                raise KeyError(camera_id)
            await self._stop_camera(entry)
            del self.cameras[camera_id]
        logger.info("camera removed camera=%s", camera_id)

    # ------------------------------------------------------------------ views
    async def latest_jpeg(self, camera_id: str) -> bytes | None:
        entry = self._entry(camera_id)
        if entry.pusher is None:
            return None
        return await call(entry.pusher.latest_jpeg.remote(), QUERY_TIMEOUT_S, f"pusher of {camera_id}")

    async def stream_urls(self, camera_id: str) -> dict[str, str]:
        return stream_targets(self._entry(camera_id).config, self.config.pusher)

    async def infer_image(self, image: np.ndarray, conf: float = 0.25) -> Detections:
        """Segment one image on the least busy segmenter."""
        if not self.pool.entries:
            raise RuntimeError("no segmentation actor is running")
        counts = {key: 0 for key in self.pool.entries}
        for entry in self.cameras.values():
            if entry.segmenter in counts:
                counts[entry.segmenter] += 1
        key = min(counts, key=lambda k: counts[k] / self.pool.entries[k].slot.weight)
        return await call(self.pool.entries[key].handle.infer_image.remote(image, conf), 60.0, "infer_image")

    async def read_keyframe(self, event_id: str, kind: str) -> bytes | None:
        if self.sink is None:
            return None
        return await call(self.sink.read_keyframe.remote(event_id, kind), QUERY_TIMEOUT_S, "sink")

    def event_store_url(self) -> str:
        """The database URL with its credentials, for the API's own EventStore (never shown)."""
        return self.config.sink.database_url.get_secret_value()

    def config_summary(self) -> dict[str, Any]:
        """The running configuration with secrets and URL credentials hidden."""
        summary = self.config.model_dump(mode="json", exclude={"cameras"})
        summary["sink"]["database_url"] = redact_url(self.config.sink.database_url.get_secret_value())
        summary["cameras"] = [
            {
                **e.config.model_dump(mode="json"),
                "source": redact_url(e.config.source),
                "push": redact_url(e.config.push),
            }
            for e in self.cameras.values()
        ]
        return summary

    async def health(self) -> dict[str, Any]:
        """Each component's state and figures; ``ready`` when all are usable."""
        components: dict[str, Any] = {}
        seg_stats = await asyncio.gather(
            *(self._query(e.handle.stats.remote(), f"segmenter {k}") for k, e in self.pool.entries.items())
        )
        for key, stats in zip(self.pool.entries, seg_stats, strict=True):
            components[f"segmenter:{key}"] = stats
        components["sink"] = await self._query(self.sink.stats.remote(), "sink") if self.sink else {"state": "down"}
        cameras = await self.list_cameras()
        for camera in cameras:
            components[f"camera:{camera['id']}"] = {
                "state": camera["state"],
                "ready": camera["state"] in ("live", "connecting", "disabled"),
                **{k: camera[k] for k in ("node_id", "segmenter", "restores", "restarts")},
                "stats": camera["stats"],
            }
        components["controller"] = {
            "state": "ready" if not self._stopping else "stopping",
            "checks": self._checks,
            "last_check_error": self._last_check_error,
            "uptime_s": round(time.time() - self._started_at, 1),
        }
        ready = bool(self.pool.entries) and all(
            (c.get("ready") if "ready" in c else c.get("state") in ("ready", "live")) for c in components.values()
        )
        return {"ready": ready, "components": components}

    # ------------------------------------------------------------------ supervision
    async def check_now(self) -> dict[str, Any]:
        """One watchdog pass (tests and operators): nodes, segmenters, camera actors, placement."""
        async with self._lock:
            changed = await self.pool.sync()
            restored = await self._check_cameras()
            moved = await self._rebalance() if changed else []
        self._checks += 1
        return {"segmenters_changed": changed, "restored": restored, "moved": moved}

    async def placement(self) -> dict[str, Any]:
        """Camera -> (segmenter, node), and segmenter -> node."""
        return {
            "cameras": {cid: {"segmenter": e.segmenter, "node_id": e.node_id} for cid, e in self.cameras.items()},
            "segmenters": {key: e.slot.node_id for key, e in self.pool.entries.items()},
            "starting": self.pool.starting,
        }

    def camera_actors(self, camera_id: str) -> dict[str, Any]:
        """The camera's decoder and pusher handles (operators and tests)."""
        entry = self._entry(camera_id)
        return {"decoder": entry.decoder, "pusher": entry.pusher}

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
    def _entry(self, camera_id: str) -> CameraEntry:
        entry = self.cameras.get(camera_id)
        if entry is None:
            raise KeyError(camera_id)
        return entry

    def _validate(self, data: dict[str, Any]) -> CameraConfig:
        try:
            camera = CameraConfig.model_validate(data)
        except ValidationError as error:
            raise ValueError(format_validation_error(error, "camera")) from None
        try:
            validate_source(camera.source, self.config.api.file_source_dir)
        except ValueError as error:
            raise ValueError(f"camera '{camera.id}': source refused: {error}") from None
        return camera

    async def _query(self, ref: Any, what: str) -> dict[str, Any]:
        try:
            return dict(await call(ref, QUERY_TIMEOUT_S, what))
        except Exception as error:
            return {"state": "unavailable", "error": reason(error)}

    async def _describe(self, entry: CameraEntry) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        state = entry.state
        if entry.decoder is not None and entry.pusher is not None:
            decoder, pusher = await asyncio.gather(
                self._query(entry.decoder.stats.remote(), "decoder"), self._query(entry.pusher.stats.remote(), "pusher")
            )
            state = decoder.get("state", "unavailable")
            stats = {"decoder": decoder, "output": pusher}
        elif not entry.config.enabled:
            state = "disabled"
        return {
            "id": entry.config.id,
            "site": entry.config.site,
            "state": state,
            "config": entry.config.model_dump(mode="json"),
            "stats": stats,
            "node_id": entry.node_id,
            "segmenter": entry.segmenter,
            "restores": entry.restores,
            "restarts": entry.restarts,
            "error": entry.error,
        }
