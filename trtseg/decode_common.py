"""Small parts every camera decoder shares: its rate meters and the packet tap it feeds.

Kept apart from ``trtseg.decode`` so the decoder module stays about its session and loop; both
names are re-exported there (``from trtseg.decode import RateMeter`` keeps working).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Protocol


class RateMeter:
    """Events per second over a sliding window, for the stats of a live pipeline."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._stamps: deque[float] = deque(maxlen=4096)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._stamps.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._stamps and now - self._stamps[0] > self._window_s:
                self._stamps.popleft()
            if len(self._stamps) < 2:
                return 0.0
            return (len(self._stamps) - 1) / max(now - self._stamps[0], 1e-6)


class PacketTap(Protocol):
    """Sees the video stream's packets as demuxed, before they are decoded (``trtseg.clips.PacketRing``).

    Called on the decode thread: it must be quick and must not block; what it raises is counted
    (``tap_errors``) and decoding goes on.
    """

    def begin_session(self, stream: Any) -> None: ...

    def packet(self, packet: Any) -> None: ...
