"""The decoder's side of the channel towards its segmenter: asking for detections, and outages.

Frames never stop for the segmenter. While it is gone (its connection closed: the process died;
its endpoint refused or its actor dead) frames go straight on to the pusher without detections,
marked as failed inference (``infer_skipped``), until a connection to it (or its replacement) is
made again; analytics lets tracks coast over such frames. A segmenter that is alive but does not
answer holds a frame at most ``STALL_TIMEOUT_S``; after that it counts as stalled and frames go
on without waiting, one frame a ``PROBE_INTERVAL_S`` still asked about, until it answers again.
Before this, frames waited for a restarted segmenter: 6 to 9 s of a frozen stream on the demo.

``SegmenterSide`` is a base of ``trtseg.handoff.ChannelHandoff`` (one object, one lock), kept
apart so each file is about one thing; the shared types of the hand-off live here too.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from trtseg.channel import ChannelClosed, Connection, FrameSlots
from trtseg.frames import Frame
from trtseg.handoff_messages import LOG_EVERY, EndpointResolver, InferNote, InferReply

logger = logging.getLogger(__name__)

# How long a frame waits for its detections over the channel before it goes on without them and the
# segmenter counts as stalled: well above a loaded node's inference latency (p99 under 0.6 s on the
# H100 node at saturation, docs/BENCHMARKS.md), short enough that a hung segmenter costs one hiccup.
STALL_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 1.0  # a stalled segmenter is asked about one frame this often (its answer ends the stall)


@dataclass(slots=True)
class Entry:
    frame: Frame
    ring: FrameSlots
    slot: int
    state: str  # pending (needs a segmenter), inferring, ready, sent
    since: float
    detections: bytes | None = None
    infer_failed: bool = False


@dataclass(slots=True)
class Link:
    """One connection of the decoder (to the pusher or the segmenter) and its reader thread."""

    name: str
    resolve: EndpointResolver | None
    connection: Connection | None = None
    next_try: float = 0.0
    address: str | None = None
    connects: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class HandoffFigures:
    completed: int = 0
    lost: int = 0  # frames the pusher never answered (gone, or too slow)
    push_errors: int = 0  # frames the pusher answered with an error
    infer_failed: int = 0  # frames sent for inference that came back without detections
    infer_timeouts: int = 0
    infer_skipped: int = 0  # frames to infer passed on at once: the segmenter was gone or stalled
    segmenter_outages: int = 0  # times the segmenter was lost or stalled
    rings: int = 0


@dataclass(slots=True)
class SegmenterHealth:
    """Whether frames may wait for the segmenter: not while it is gone or stalled.

    ``down_since``: the connection closed, the endpoint refused or failed (the actor is dead or
    restarting). ``stalled_since``: a frame's detections did not come in time and nothing has been
    answered since. Both end when a connection is made, and a stall also with any answer.
    """

    down_since: float | None = None
    stalled_since: float | None = None
    last_probe: float = 0.0

    @property
    def state(self) -> str:
        if self.down_since is not None:
            return "down"
        return "stalled" if self.stalled_since is not None else "up"


class SegmenterSide:
    """Inference notes, the segmenter's replies and its outages; state and lock are the hand-off's."""

    camera_id: str
    figures: HandoffFigures
    _cond: threading.Condition
    _entries: OrderedDict[int, Entry]
    _segmenter: Link
    _health: SegmenterHealth
    _thresholds: tuple[float, float, tuple[str, ...] | None]
    _detections_timeout_s: float
    _clock: Callable[[], float]
    _closed: bool

    def _release_locked(self) -> None:
        raise NotImplementedError

    def reset_segmenter(self, segmenter: EndpointResolver | None) -> None:
        """Another segmenter from now on: frames waiting on the old one are pushed without detections."""
        with self._cond:
            old = self._segmenter.connection
            self._segmenter = Link("segmenter", segmenter)
            self._health = SegmenterHealth()  # a new one is given the benefit of the doubt
            self._give_up_waiting_locked(("pending", "inferring"))
            self._release_locked()
        if old is not None:
            old.close()

    def _send_infer(self, entry: Entry) -> None:
        if self._send_note(entry):
            entry.state = "inferring"  # else pending until the segmenter is connected (or it times out)

    def _send_note(self, entry: Entry) -> bool:
        connection = self._segmenter.connection
        if connection is None:
            return False
        conf, iou, classes = self._thresholds
        note = InferNote(self.camera_id, entry.frame.seq, entry.ring.info.ring_id, entry.slot, conf, iou, classes)
        try:
            connection.send(note)
        except ChannelClosed:
            return False
        return True

    def _segmenter_state_locked(self) -> str:
        """up, connecting (never connected or reconnecting after a reset), down, stalled, or none."""
        link = self._segmenter
        if link.resolve is None:
            return "none"
        state = self._health.state
        if state == "up" and link.connection is None:
            return "connecting"
        return state

    def _ask_segmenter_locked(self, entry: Entry) -> None:
        """A frame to infer waits for its detections, unless the segmenter is gone or stalled."""
        health = self._health
        if health.state == "up":
            entry.state = "pending"
            self._send_infer(entry)
            return
        entry.infer_failed = True  # 'ready': it goes on to the pusher without detections at once
        self.figures.infer_skipped += 1
        now = self._clock()
        if health.state == "stalled" and now - health.last_probe >= PROBE_INTERVAL_S:
            # Not waited for: an answer (the picture may be overwritten by then) only ends the stall.
            health.last_probe = now
            self._send_note(entry)
        if self.figures.infer_skipped == 1 or self.figures.infer_skipped % LOG_EVERY == 0:
            logger.warning(
                "frames go on without detections camera=%s segmenter=%s skipped=%d",
                self.camera_id,
                health.state,
                self.figures.infer_skipped,
            )

    def _give_up_waiting_locked(self, states: tuple[str, ...]) -> int:
        """Frames waiting in ``states`` go on without detections; how many."""
        waiting = [e for e in self._entries.values() if e.state in states]
        for entry in waiting:
            entry.state, entry.infer_failed = "ready", True
        self.figures.infer_failed += len(waiting)
        return len(waiting)

    def _link_down(self, link: Link) -> None:
        """A link could not be made: for the segmenter, frames stop waiting for it."""
        if link is not self._segmenter:
            return
        with self._cond:
            self._segmenter_down_locked()
            self._release_locked()

    def _segmenter_down_locked(self) -> None:
        health = self._health
        if health.down_since is None:
            health.down_since = self._clock()
            self.figures.segmenter_outages += int(health.stalled_since is None)
            logger.warning("segmenter unreachable, frames go on without detections camera=%s", self.camera_id)
        self._give_up_waiting_locked(("pending",))

    def _segmenter_back_locked(self) -> None:
        health = self._health
        if health.down_since is not None or health.stalled_since is not None:
            since = health.down_since if health.down_since is not None else health.stalled_since
            logger.info(
                "segmenter back camera=%s outage_s=%.2f skipped=%d",
                self.camera_id,
                self._clock() - (since or 0.0),
                self.figures.infer_skipped,
            )
        health.down_since = health.stalled_since = None

    def _segmenter_stalled_locked(self, now: float) -> None:
        """Detections did not come in time: the frames that follow do not wait until it answers."""
        health = self._health
        if health.stalled_since is None and health.down_since is None:
            health.stalled_since, health.last_probe = now, now
            self.figures.segmenter_outages += 1
            logger.warning(
                "segmenter stalled, frames go on without detections camera=%s timeout_s=%.1f",
                self.camera_id,
                self._detections_timeout_s,
            )
        self._give_up_waiting_locked(("pending", "inferring"))

    def _read_segmenter(self, link: Link, connection: Connection) -> None:
        try:
            while True:
                message, _ = connection.recv()
                if isinstance(message, InferReply):
                    with self._cond:
                        live = link is self._segmenter and link.connection is connection
                        if live and self._health.stalled_since is not None:
                            self._segmenter_back_locked()  # it answers again: frames wait for it again
                        entry = self._entries.get(message.seq)
                        if entry is not None and entry.state in ("pending", "inferring"):
                            entry.state, entry.detections = "ready", message.detections
                            if message.detections is None:
                                entry.infer_failed = True
                                self.figures.infer_failed += 1
                            self._release_locked()
        except ChannelClosed as error:
            reason = str(error)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            logger.exception("segmenter channel read failed camera=%s", self.camera_id)
        connection.close()
        with self._cond:
            current = link.connection is connection
            if current:
                link.connection = None
                link.last_error = reason
            # Frames sent to this connection wait no longer, and the next ones do not wait for it
            # (after a reset they wait on the new one).
            current = current and link is self._segmenter
            waiting = self._give_up_waiting_locked(("inferring",)) if current else 0
            if current and not self._closed:
                self._segmenter_down_locked()
            self._release_locked()
        if not self._closed:
            logger.warning("segmenter channel lost camera=%s frames=%d reason=%s", self.camera_id, waiting, reason)
