"""The controller's read side: frames, stream URLs, one-off inference, key frames, configuration and health.

A mixin of ``Controller`` (it reads the controller's cameras, pool, sink and state, and changes nothing),
kept in its own module so each file stays about one thing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import ray

from actors.common import call
from actors.lifecycle import reason
from actors.supervisor import CameraEntry
from trtseg.clips.evidence_retention import EvidenceRetention, evidence_component
from trtseg.config import SystemConfig
from trtseg.detections import Detections
from trtseg.pipeline import stream_targets
from trtseg.sources import redact_url

QUERY_TIMEOUT_S = 5.0
# Calls that only read are retried on the restarted controller when its process died under them.
READ_RETRIES = 3


class ControllerViews:
    """What the HTTP API and operators read from the controller (contract: docs/CONTRACTS.md)."""

    config: SystemConfig
    cameras: dict[str, CameraEntry]
    pool: Any
    sink: Any
    evidence: EvidenceRetention | None
    _stopping: bool
    _restarted: bool
    _checks: int
    _last_check_error: str | None
    _started_at: float

    @ray.method(max_task_retries=READ_RETRIES)
    async def latest_jpeg(self, camera_id: str) -> bytes | None:
        entry = self._entry(camera_id)
        if entry.pusher is None:
            return None
        return await call(entry.pusher.latest_jpeg.remote(), QUERY_TIMEOUT_S, f"pusher of {camera_id}")

    @ray.method(max_task_retries=READ_RETRIES)
    async def stream_urls(self, camera_id: str) -> dict[str, str]:
        return stream_targets(self._entry(camera_id).config, self.config.pusher)

    @ray.method(max_task_retries=READ_RETRIES)
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

    @ray.method(max_task_retries=READ_RETRIES)
    async def read_keyframe(self, event_id: str, kind: str) -> bytes | None:
        if self.sink is None:
            return None
        return await call(self.sink.read_keyframe.remote(event_id, kind), QUERY_TIMEOUT_S, "sink")

    @ray.method(max_task_retries=READ_RETRIES)
    async def read_incident_keyframe(self, incident_id: str, stage: str, kind: str) -> bytes | None:
        if self.sink is None:
            return None
        return await call(self.sink.read_incident_keyframe.remote(incident_id, stage, kind), QUERY_TIMEOUT_S, "sink")

    @ray.method(max_task_retries=READ_RETRIES)
    def model_names(self) -> dict[int, str]:
        """Class id -> name of the model the segmenters run (empty before one is ready)."""
        names: dict[int, str] = {}
        for entry in self.pool.entries.values():
            names.update(entry.names)
        return names

    @ray.method(max_task_retries=READ_RETRIES)
    def event_store_url(self) -> str:
        """The database URL with its credentials, for the API's own EventStore (never shown)."""
        return self.config.sink.database_url.get_secret_value()

    @ray.method(max_task_retries=READ_RETRIES)
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

    @ray.method(max_task_retries=READ_RETRIES)
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
        components["evidence"] = evidence_component(cameras, self.evidence, components["sink"])
        components["registry"] = self._registry_health()
        components["controller"] = {
            "state": "stopping" if self._stopping else ("ready" if self._started() else "starting"),
            "restarted": self._restarted,
            "checks": self._checks,
            "last_check_error": self._last_check_error,
            "uptime_s": round(time.time() - self._started_at, 1),
        }
        ready = bool(self.pool.entries) and all(
            (c.get("ready") if "ready" in c else c.get("state") in ("ready", "live")) for c in components.values()
        )
        return {"ready": ready, "components": components}

    # ------------------------------------------------------------------ helpers
    def _entry(self, camera_id: str) -> CameraEntry:
        entry = self.cameras.get(camera_id)
        if entry is None:
            raise KeyError(camera_id)
        return entry

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
