"""Viewers of on-demand streams: the API tells a camera's pusher that someone watches.

The JPEG and MJPEG views already reach the pusher (``latest_jpeg`` through the controller) and count
there. An HLS player reads files this API serves, which the pusher never sees, so each playlist GET
(and ``POST /cameras/{id}/watch``) calls the pusher's ``watch`` directly: at most once per
``TOUCH_EVERY_S`` per camera and replica (a player refreshes its playlist every segment), with the
pusher's handle cached, as asking the controller for it on every GET would put one more call on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from deployments.control import CameraNotFound, ControlError

logger = logging.getLogger(__name__)

TOUCH_EVERY_S = 1.0
HANDLE_TTL_S = 30.0  # a pusher restarted or moved by the controller is found again within this
WATCH_TIMEOUT_S = 5.0


class ViewerTouches:
    """Rate-limited ``watch`` calls on cameras' pusher actors, with their handles cached."""

    def __init__(self, every_s: float = TOUCH_EVERY_S, handle_ttl_s: float = HANDLE_TTL_S) -> None:
        self.every_s = every_s
        self.handle_ttl_s = handle_ttl_s
        self._handles: dict[str, tuple[float, Any]] = {}
        self._last: dict[str, tuple[float, dict[str, Any]]] = {}

    async def touch(self, control: Any, camera_id: str, viewer: str, force: bool = False) -> dict[str, Any] | None:
        """The pusher's on-demand state after the touch; None when no pusher answers (camera not running,
        controller down). Raises ``CameraNotFound`` for an unknown camera."""
        now = time.monotonic()
        last = self._last.get(camera_id)
        if last is not None and not force and now - last[0] < self.every_s:
            return last[1]
        handle = await self._pusher(control, camera_id, now)
        if handle is None:
            return None
        try:
            status = dict(await asyncio.wait_for(handle.watch.remote(viewer), WATCH_TIMEOUT_S))
        except Exception as error:  # a pusher restarting: the next touch asks the controller again
            self._handles.pop(camera_id, None)
            logger.warning("viewer touch failed camera_id=%s error=%s", camera_id, type(error).__name__)
            return None
        self._last[camera_id] = (now, status)
        return status

    async def _pusher(self, control: Any, camera_id: str, now: float) -> Any:
        cached = self._handles.get(camera_id)
        if cached is not None and now - cached[0] < self.handle_ttl_s:
            return cached[1]
        lookup = getattr(control, "camera_actors", None)
        if lookup is None:  # a control plane without actor handles: nothing to tell
            return None
        try:
            handle = (await lookup(camera_id)).get("pusher")
        except CameraNotFound:
            self._handles.pop(camera_id, None)
            self._last.pop(camera_id, None)
            raise
        except ControlError as error:
            logger.warning("no pusher handle camera_id=%s error=%s", camera_id, error)
            return None
        if handle is not None:
            self._handles[camera_id] = (now, handle)
        return handle
