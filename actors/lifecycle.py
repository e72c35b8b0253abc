"""Starting, stopping and pinging one camera's actors: the part of the controller that touches them.

A mixin of ``Controller`` (it uses the controller's registry, pool, sink and configuration), kept in
its own module so each file stays about one thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from actors.common import call
from actors.spawn import new_camera_actors
from actors.supervisor import CameraEntry, is_dead, kill_quietly
from trtseg.config import SystemConfig
from trtseg.placement import plan

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class CameraLifecycle:
    """Camera actor management shared by the controller's registry calls and its watchdog."""

    config: SystemConfig
    cameras: dict[str, CameraEntry]
    pool: Any
    sink: Any

    async def _ping_camera(self, entry: CameraEntry) -> str | None:
        """None when the camera's actors answer (noting Ray's restarts), else what is dead."""
        if entry.decoder is None or entry.pusher is None:
            return "not started"
        for role, handle in (("decoder", entry.decoder), ("pusher", entry.pusher)):
            try:
                info = await call(handle.ping.remote(), PING_TIMEOUT_S, f"{role} of {entry.config.id}")
            except Exception as error:
                if is_dead(error):
                    return role
                entry.error = str(error)
                continue
            if entry.incarnations.get(role) not in (None, info["incarnation"]):
                entry.restarts += 1
                logger.info("camera actor was restarted by Ray camera=%s role=%s", entry.config.id, role)
            entry.incarnations[role] = info["incarnation"]
            if role == "decoder":
                entry.node_id = info["node_id"]  # where Ray really runs it (it may have moved it)
        return None

    # ------------------------------------------------------------------ camera actors
    async def _start_camera(self, entry: CameraEntry, strict: bool = False, segmenter: str | None = None) -> None:
        camera = entry.config
        if segmenter is None or segmenter not in self.pool.entries:
            current = {cid: e.segmenter for cid, e in self.cameras.items() if e.segmenter and cid != camera.id}
            result = plan([*current, camera.id], [e.slot for e in self.pool.entries.values()], current, rebalance=False)
            segmenter = result.assignment.get(camera.id)
        seg = self.pool.entries.get(segmenter) if segmenter else None
        entry.segmenter = segmenter
        entry.node_id = seg.slot.node_id if seg else None
        decoder, pusher = new_camera_actors(
            camera, self.config, seg.handle if seg else None, entry.node_id, seg.names if seg else {}, self.sink
        )
        entry.decoder, entry.pusher, entry.incarnations = decoder, pusher, {}
        entry.started_at = time.time()
        try:
            infos = await asyncio.gather(
                call(pusher.ping.remote(), START_TIMEOUT_S, f"pusher of {camera.id}"),
                call(decoder.ping.remote(), START_TIMEOUT_S, f"decoder of {camera.id}"),
            )
        except Exception as error:
            entry.state, entry.error = "failed", reason(error)
            logger.error("camera failed to start camera=%s error=%s", camera.id, entry.error)
            if strict:
                await self._stop_camera(entry)
                raise RuntimeError(f"camera '{camera.id}' failed to start: {entry.error}") from None
            return
        entry.incarnations = {"pusher": infos[0]["incarnation"], "decoder": infos[1]["incarnation"]}
        entry.node_id = infos[1]["node_id"]
        entry.state, entry.error = "started", None

    async def _stop_camera(self, entry: CameraEntry) -> None:
        await self._stop_decoder(entry)
        await self._stop_pusher(entry)
        entry.segmenter = entry.node_id = None
        entry.state = "stopped"

    async def _stop_decoder(self, entry: CameraEntry) -> None:
        if entry.decoder is not None:
            with contextlib.suppress(Exception):
                await call(entry.decoder.stop.remote(), STOP_TIMEOUT_S, f"decoder of {entry.config.id}")
            kill_quietly(entry.decoder)
            entry.decoder = None

    async def _stop_pusher(self, entry: CameraEntry) -> None:
        if entry.pusher is not None:
            with contextlib.suppress(Exception):
                await call(entry.pusher.close.remote(), STOP_TIMEOUT_S, f"pusher of {entry.config.id}")
            kill_quietly(entry.pusher)
            entry.pusher = None


def reason(error: BaseException) -> str:
    """The last line of an error (Ray's errors carry the remote traceback before it)."""
    text = str(getattr(error, "cause", None) or error)
    return text.strip().splitlines()[-1][:500] if text.strip() else type(error).__name__
