"""Streams on demand: whether a camera's picture is annotated and encoded now, and the encoder's life.

A site with a hundred cameras is watched by a few people at a time, and x264 for a stream nobody
watches is the largest cost of a camera after inference (issue 21). ``CameraConfig.push_mode`` says
what a camera does: ``always`` encodes every frame (the default), ``on_demand`` encodes from the
moment a viewer asks (HLS playlist, MJPEG, latest JPEG, ``POST /cameras/{id}/watch``) until
``PusherConfig.on_demand_idle_s`` pass without one, ``never`` encodes nothing. Detections, tracking,
rules, incidents, key frames and clips run on every frame whatever the mode (``CameraOutput``).

``DemandGate`` is the state machine (thread-safe: viewers touch it from the actor's query threads,
the frame thread reads it). ``StreamEncoder`` starts a ``StreamPusher`` when the gate opens and
closes it in the background when it shuts, so the frame path never waits for FFmpeg to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trtseg.config.camera import CameraConfig
from trtseg.config.pusher import PusherConfig
from trtseg.decode import DEFAULT_FPS
from trtseg.ffmpeg_presets import hls_playlist, output_kind
from trtseg.frames import Frame
from trtseg.push import StreamPusher

logger = logging.getLogger(__name__)

PUSH_MODES = ("always", "on_demand", "never")
CLOSE_WAIT_S = 12.0  # closing a camera waits this long for an encoder stopped just before

PusherFactory = Callable[[CameraConfig, PusherConfig, tuple[int, int], float], StreamPusher]


class DemandGate:
    """Whether pictures are wanted now: always, never, or while a viewer asked within ``idle_s``."""

    def __init__(self, mode: str, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in PUSH_MODES:
            raise ValueError(f"push_mode must be one of {', '.join(PUSH_MODES)}, got '{mode}'")
        if idle_s <= 0:
            raise ValueError(f"on_demand_idle_s must be positive, got {idle_s}")
        self.mode = mode
        self.idle_s = float(idle_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._viewers: dict[str, float] = {}  # viewer -> when it last asked
        self._last_watch: float | None = None
        self._open = mode == "always"
        self.starts = 0
        self.stops = 0

    def watch(self, viewer: str = "api") -> bool:
        """A viewer asks for the picture. Returns whether the gate was open already (pictures flowing)."""
        now = self._clock()
        with self._lock:
            self._viewers[viewer or "api"] = now
            self._last_watch = now
            was_open = self._open
            if self.mode == "on_demand" and not self._open:
                self._open = True
                self.starts += 1
                logger.info("stream on demand starts viewer=%s starts=%d", viewer, self.starts)
            return was_open

    def active(self) -> bool:
        """Called for every frame: encode it? Shuts an on-demand gate after ``idle_s`` without a viewer."""
        if self.mode != "on_demand":
            return self._open
        with self._lock:
            if self._open and (self._last_watch is None or self._clock() - self._last_watch > self.idle_s):
                self._open = False
                self.stops += 1
                logger.info("stream on demand stops idle_s=%g stops=%d", self.idle_s, self.stops)
            return self._open

    def viewers(self) -> int:
        """Distinct viewers that asked within the idle time."""
        now = self._clock()
        with self._lock:
            self._viewers = {v: t for v, t in self._viewers.items() if now - t <= self.idle_s}
            return len(self._viewers)

    def stats(self) -> dict[str, Any]:
        last = self._last_watch
        return {
            "push_mode": self.mode,
            "demanded": self._open,
            "viewers": self.viewers(),
            "starts": self.starts,
            "stops": self.stops,
            "idle_s": self.idle_s,
            "last_watch_age_s": None if last is None else round(self._clock() - last, 3),
        }


def remove_hls_files(playlist: Path) -> int:
    """Delete a camera's HLS playlist and segments: a stopped on-demand stream leaves no stale playlist
    that a new viewer would be served instead of waiting for the fresh one."""
    removed = 0
    directory = playlist.parent
    if not directory.is_dir():
        return 0
    for path in [playlist, playlist.with_name(playlist.name + ".tmp"), *directory.glob("seg_*.ts")]:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as error:  # the next encoder overwrites the playlist anyway
            logger.warning("cannot remove HLS file path=%s error=%s", path.name, error)
    return removed


class StreamEncoder:
    """One camera's encoder across on-demand starts and stops (a new ``StreamPusher`` per start)."""

    def __init__(self, camera: CameraConfig, pusher: PusherConfig, factory: PusherFactory = StreamPusher) -> None:
        self.camera = camera
        self.pusher_config = pusher
        self._factory = factory
        self.kind = output_kind(camera.push)
        self._pusher: StreamPusher | None = None
        self._last_stats: dict[str, Any] | None = None
        self._closer: threading.Thread | None = None
        self._files_lock = threading.Lock()
        self._generation = 0
        self.encoded = 0  # frames handed to an encoder, over every start
        self._cleans_files = camera.push_mode != "always" and self.kind == "hls"
        if self._cleans_files:
            remove_hls_files(hls_playlist(camera.id, pusher))  # left by an earlier run

    @property
    def running(self) -> bool:
        """An encoder process is meant to run now (``push: none`` never has one)."""
        return self._pusher is not None and self.kind != "none"

    def hls_ready(self) -> bool:
        """The playlist on disk is the running encoder's (stale files are removed before each start)."""
        return self.running and self.kind == "hls" and hls_playlist(self.camera.id, self.pusher_config).is_file()

    def push(self, frame: Frame, annotated: np.ndarray) -> bool:
        """Hand the frame to the encoder, started first if needed; False while the previous encoder still
        finishes (a viewer came back within its close): its last playlist write must not land over the
        new encoder's, so the new one starts on the first frame after it has gone."""
        if self._pusher is None:
            closer = self._closer
            if closer is not None and closer.is_alive():
                return False
            self._start(frame)
        assert self._pusher is not None
        self._pusher.push(annotated, frame.pts_s)
        self.encoded += 1
        return True

    def stop(self) -> None:
        """Close the encoder without waiting for it (FFmpeg flushes and exits in the background)."""
        pusher, self._pusher = self._pusher, None
        if pusher is None:
            return
        generation = self._generation
        self._closer = threading.Thread(
            target=self._finish, args=(pusher, generation), name=f"push-stop-{self.camera.id}", daemon=True
        )
        self._closer.start()

    def close(self) -> None:
        """Stop and wait for the encoder (camera stopped or removed)."""
        pusher, self._pusher = self._pusher, None
        if pusher is not None:
            pusher.close()
            self._last_stats = pusher.stats()
        if self._closer is not None:
            self._closer.join(CLOSE_WAIT_S)

    def stats(self, idle_state: str) -> dict[str, Any]:
        """The running encoder's figures, or the last one's with ``state`` = ``idle_state``."""
        if self._pusher is not None:
            return self._pusher.stats()
        if self._last_stats is not None:
            return {**self._last_stats, "state": idle_state, "pid": None, "fps": 0.0}
        return {"state": idle_state}

    def _start(self, frame: Frame) -> None:
        with self._files_lock:
            self._generation += 1
            if self._cleans_files:
                remove_hls_files(hls_playlist(self.camera.id, self.pusher_config))
        fps = float(frame.meta.get("fps") or DEFAULT_FPS)
        size = (frame.width, frame.height)
        self._pusher = self._factory(self.camera, self.pusher_config, size, min(max(fps, 1.0), 240.0))

    def _finish(self, pusher: StreamPusher, generation: int) -> None:
        try:
            pusher.close()
        except Exception:  # the frame path has moved on; the log says why this encoder did not end well
            logger.exception("encoder did not close camera=%s", self.camera.id)
        self._last_stats = pusher.stats()
        with self._files_lock:
            if self._cleans_files and generation == self._generation:
                remove_hls_files(hls_playlist(self.camera.id, self.pusher_config))
