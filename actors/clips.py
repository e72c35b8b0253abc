"""ClipLink: a camera's output actor asks its decoder actor for incident clips.

The decoder actor holds the camera's packet ring and clip recorder; the output (pusher) actor sees
the incidents. The decoder announces its handle to the pusher (``PusherActor.set_decoder``) when it
starts and every few seconds after, so a pusher that Ray restarted learns it again; until then,
requests wait here (bounded). Calls are fire-and-forget: the frame loop never waits on them, and
their failures are counted and logged when collected.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from trtseg.clips.requests import ClipRequest, ClipRequester
from trtseg.config.clips import ClipConfig

logger = logging.getLogger(__name__)

QUEUE_MAX = 256


class ClipLink:
    """Thread-safe: records come from the frame loop, the decoder's handle from a query thread."""

    def __init__(
        self, config: ClipConfig, camera_id: str, queue_max: int = QUEUE_MAX, rules: Iterable[Any] = ()
    ) -> None:
        """``rules``: the camera's analytics rules, whose ``clip`` overrides ``config.severities``."""
        self.camera_id = camera_id
        self._requester = ClipRequester(config, rules)
        self._decoder: Any = None
        self._queue: deque[ClipRequest] = deque()
        self._queue_max = queue_max
        self._calls: list[Any] = []
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.figures = {"requests": 0, "sent": 0, "dropped": 0, "errors": 0}

    def set_decoder(self, decoder: Any) -> None:
        """The camera's decoder actor; requests that waited for it are sent now."""
        with self._lock:
            self._decoder = decoder
            while self._queue:
                self._send(self._queue.popleft())

    def send(self, records: Iterable[Any]) -> None:
        """Turn a batch of records into clip requests to the decoder actor (never blocks, never raises)."""
        try:
            requests = self._requester.requests(records)
        except Exception:
            self.figures["errors"] += 1
            logger.exception("clip requests failed camera=%s", self.camera_id)
            return
        if not requests:
            self.reap()
            return
        with self._lock:
            self.figures["requests"] += len(requests)
            for request in requests:
                if self._decoder is not None:
                    self._send(request)
                elif len(self._queue) < self._queue_max:
                    self._queue.append(request)
                else:
                    self.figures["dropped"] += 1
        self.reap()

    def _send(self, request: ClipRequest) -> None:
        decoder = self._decoder
        try:
            method = decoder.clip_start if request.kind == "start" else decoder.clip_stop
            self._calls.append(method.remote(request.incident_id, request.ts))
            self.figures["sent"] += 1
        except Exception as error:
            self._failed(error)

    def reap(self, wait_s: float = 0.0) -> None:
        """Collect finished calls (waiting up to ``wait_s``), counting the failed ones."""
        import ray

        with self._lock:
            calls, self._calls = self._calls, []
        if not calls:
            return
        ready, waiting = ray.wait(calls, num_returns=len(calls), timeout=wait_s)
        for ref in ready:
            try:
                ray.get(ref, timeout=0)
            except Exception as error:
                self._failed(error)
        with self._lock:
            self._calls.extend(waiting)

    def _failed(self, error: BaseException) -> None:
        self.figures["errors"] += 1
        self.last_error = f"{type(error).__name__}: {error}"[:300]
        if self.figures["errors"] == 1 or self.figures["errors"] % 100 == 0:
            logger.warning(
                "clip request failed camera=%s errors=%d error=%s", self.camera_id, self.figures["errors"], error
            )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self.figures,
                "queued": len(self._queue),
                "in_flight": len(self._calls),
                "decoder_known": self._decoder is not None,
                "last_error": self.last_error,
            }
