"""A camera's frames from its decoder to its segmenter and pusher over the node-local channel.

The decoder side (``ChannelHandoff``) writes each frame once into a slot of its ring
(``trtseg.channel.FrameSlots``), asks the segmenter for detections with a small note, and hands
frames to the pusher strictly in order, each with its detections, once they are there. The pusher
answers every frame with ``FrameDone``, which frees its slot. The serving sides
(``serve_frames`` for the pusher, ``serve_inference`` for the segmenter) read their connection
on a thread of their own (``trtseg.handoff_serve``). A failure loses no more than the frames in
flight, and the camera goes on: a pusher that is gone turns into frames counted as lost until it is
back, and frames never stop for a segmenter that is gone or stalled (``trtseg.handoff_segmenter``).
The messages are in ``trtseg.handoff_messages``; this module re-exports what the actors use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from trtseg.channel import ChannelClosed, Connection, DeviceImage, FrameSlots, PageLocker, printable
from trtseg.frames import Frame
from trtseg.handoff_messages import (
    LOG_EVERY,
    Endpoint,
    EndpointResolver,
    FrameDone,
    FrameNote,
    InferNote,
    InferReply,
    RingAnnounce,
)
from trtseg.handoff_segmenter import (
    PROBE_INTERVAL_S,
    STALL_TIMEOUT_S,
    Entry,
    HandoffFigures,
    Link,
    SegmenterHealth,
    SegmenterSide,
)
from trtseg.handoff_serve import FrameProcessor, InferSubmitter, serve_frames, serve_inference

__all__ = [
    "DETECTIONS_TIMEOUT_S",
    "LOG_EVERY",
    "PROBE_INTERVAL_S",
    "PUSH_TIMEOUT_S",
    "STALL_TIMEOUT_S",
    "ChannelHandoff",
    "Endpoint",
    "EndpointResolver",
    "FrameDone",
    "FrameNote",
    "FrameProcessor",
    "HandoffFigures",
    "InferNote",
    "InferReply",
    "InferSubmitter",
    "RingAnnounce",
    "serve_frames",
    "serve_inference",
]

logger = logging.getLogger(__name__)

DETECTIONS_TIMEOUT_S = 30.0  # as long as the object-store path waits for a frame's detections
PUSH_TIMEOUT_S = 30.0  # a frame the pusher has not answered by then is given up (its slot reused)
RECONNECT_INTERVAL_S = 1.0


# --------------------------------------------------------------------------- decoder side
class ChannelHandoff(SegmenterSide):
    """The decoder's end of the channel: ring, in-order release, reconnects, timeouts.

    ``pusher`` and ``segmenter`` resolve the other actors' endpoints (None: not known yet, asked
    again on the next call; after a failure, once ``RECONNECT_INTERVAL_S`` has passed); ``segmenter``
    may be None (no inference).
    ``thresholds``: the camera's (conf, iou, classes) sent with every inference note.
    ``node_id``: this process's node; an endpoint on another node sets ``needs_object_store``.
    ``locker``: page-locks the rings (frames decoded on the GPU are downloaded straight into them).
    Calls come from the decoder's driver thread; replies are read on one thread per connection.
    """

    def __init__(
        self,
        camera_id: str,
        pusher: EndpointResolver,
        segmenter: EndpointResolver | None,
        node_id: str,
        thresholds: tuple[float, float, tuple[str, ...] | None] = (0.25, 0.7, None),
        detections_timeout_s: float = STALL_TIMEOUT_S,
        push_timeout_s: float = PUSH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        locker: PageLocker | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._locker = locker
        self.node_id = node_id
        self.needs_object_store = False
        self.figures = HandoffFigures()
        self.last_push_error: str | None = None
        self._thresholds = thresholds
        self._detections_timeout_s = detections_timeout_s
        self._push_timeout_s = push_timeout_s
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._ring: FrameSlots | None = None
        self._free: list[int] = []
        self._ring_users: dict[str, int] = {}  # entries in flight per ring (old rings close at 0)
        self._retired: dict[str, FrameSlots] = {}
        self._pusher = Link("pusher", pusher)
        self._segmenter = Link("segmenter", segmenter)
        self._health = SegmenterHealth()
        self._closed = False

    # ------------------------------------------------------------------ driver thread
    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._entries)

    def has_room(self, limit: int) -> bool:
        with self._cond:
            return self._room_locked(limit)

    def _room_locked(self, limit: int) -> bool:
        return len(self._entries) < limit and (self._ring is None or bool(self._free))

    def wait_room(self, limit: int, timeout_s: float) -> bool:
        """Wait until a frame may be submitted (or ``timeout_s`` passes); expires what is overdue."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while True:
                self._expire_locked()
                if self._room_locked(limit):
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0 or self._closed:
                    return False
                self._cond.wait(min(remaining, 0.25))

    def submit(self, frame: Frame, slots_wanted: int) -> bool:
        """Hand one frame on; False when it could not be (no pusher yet: the frame is counted lost).

        ``slots_wanted`` sizes a new ring (frames in flight plus one being written)."""
        self.connect()
        with self._cond:
            self._expire_locked()
            if self._pusher.connection is None:
                self.figures.lost += 1
                return False
            ring = self._ring_for(frame.image, slots_wanted)
            if not self._free:
                raise RuntimeError("no free slot: call has_room/wait_room first")
            slot = self._free.pop()
            # From here on the frame is its slot: a GPU picture's device memory goes back at once.
            frame = dataclasses.replace(frame, image=ring.write(slot, frame.image))
            entry = Entry(frame, ring, slot, "ready", self._clock())
            self._ring_users[ring.info.ring_id] = self._ring_users.get(ring.info.ring_id, 0) + 1
            self._entries[frame.seq] = entry
            if frame.infer and self._segmenter.resolve is not None:
                self._ask_segmenter_locked(entry)
            self._release_locked()
            return True

    def connect(self) -> bool:
        """(Re)connect whatever is down and due; True when the pusher is connected (frames can go).

        A decoder takes no frame while this is False, so frames are dropped at its mailbox (counted
        as drops) rather than handed to nobody."""
        self._connect(self._pusher)
        if self._segmenter.resolve is not None:
            self._connect(self._segmenter)
        return self._pusher.connection is not None

    def expire(self) -> None:
        with self._cond:
            self._expire_locked()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every frame in flight is answered (or ``timeout_s`` passes)."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while self._entries:
                self._expire_locked()
                remaining = deadline - self._clock()
                if remaining <= 0 or not self._entries:
                    break
                self._cond.wait(min(remaining, 0.25))
            return not self._entries

    def stats(self) -> dict[str, Any]:
        with self._cond:
            states: dict[str, int] = {}
            for entry in self._entries.values():
                states[entry.state] = states.get(entry.state, 0) + 1
            return {
                "transport": "channel",
                "channel_completed": self.figures.completed,
                "channel_lost": self.figures.lost,
                "channel_push_errors": self.figures.push_errors,
                "channel_last_push_error": self.last_push_error,
                "channel_infer_failed": self.figures.infer_failed,
                "channel_infer_timeouts": self.figures.infer_timeouts,
                "channel_infer_skipped": self.figures.infer_skipped,
                "channel_segmenter_outages": self.figures.segmenter_outages,
                "channel_segmenter_state": self._segmenter_state_locked(),
                "channel_rings": self.figures.rings,
                "channel_ring_page_locked": self._ring.page_locked if self._ring is not None else None,
                "channel_states": states,
                "channel_pusher": self._link_stats(self._pusher),
                "channel_segmenter": self._link_stats(self._segmenter),
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            links = [self._pusher.connection, self._segmenter.connection]
            self._pusher.connection = self._segmenter.connection = None
            self._cond.notify_all()
        for connection in links:
            if connection is not None:
                connection.close()
        with self._cond:
            self._entries.clear()
            rings = [self._ring, *self._retired.values()]
            self._ring, self._retired, self._free = None, {}, []
        for ring in rings:
            if ring is not None:
                ring.close()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _link_stats(link: Link) -> dict[str, Any]:
        return {
            "connected": link.connection is not None,
            "address": printable(link.address) if link.address else None,
            "connects": link.connects,
            "last_error": link.last_error,
        }

    def _connect(self, link: Link) -> None:
        """(Re)connect ``link`` when it is down and a try is due; runs on the driver thread."""
        if link.connection is not None or link.resolve is None or self._closed:
            return
        now = self._clock()
        if now < link.next_try:
            return
        try:
            endpoint = link.resolve()
        except Exception as error:  # the actor is restarting or gone: try again later
            link.last_error = f"{type(error).__name__}: {error}"[:300]
            link.next_try = now + RECONNECT_INTERVAL_S
            self._link_down(link)
            return
        if endpoint is None:
            return  # its answer is pending: asked again on the next call
        link.next_try = now + RECONNECT_INTERVAL_S  # a refused connection is tried again after this
        if not endpoint.address or endpoint.node_id != self.node_id:
            self.needs_object_store = True
            link.last_error = (
                f"{link.name} is on node {endpoint.node_id[:12]}, not this one"
                if endpoint.address
                else f"{link.name} has no channel"
            )
            return
        try:
            connection = Connection.connect(endpoint.address)
        except ChannelClosed as error:
            link.last_error = str(error)
            self._link_down(link)
            return
        with self._cond:
            if self._closed:
                connection.close()
                return
            link.connection, link.address = connection, endpoint.address
            link.connects += 1
            if self._ring is not None:
                self._announce(connection, self._ring)
            if link is self._segmenter:
                self._segmenter_back_locked()
                for entry in self._entries.values():
                    if entry.state == "pending":
                        self._send_infer(entry)
        reader = self._read_pusher if link is self._pusher else self._read_segmenter
        threading.Thread(target=reader, args=(link, connection), name=f"handoff-{link.name}", daemon=True).start()
        logger.info(
            "channel connected camera=%s to=%s address=%s", self.camera_id, link.name, printable(endpoint.address)
        )

    def _ring_for(self, image: np.ndarray | DeviceImage, slots_wanted: int) -> FrameSlots:
        ring = self._ring
        if ring is not None and ring.fits(image):
            return ring
        if ring is not None:  # a new picture size: the old ring stays until its frames are answered
            self._retired[ring.info.ring_id] = ring
            self._close_retired_locked()
        ring = FrameSlots(tuple(image.shape), max(slots_wanted, 1), image.dtype, locker=self._locker)
        self._ring, self._free = ring, list(range(ring.info.slots - 1, -1, -1))
        self.figures.rings += 1
        for link in (self._pusher, self._segmenter):
            if link.connection is not None:
                self._announce(link.connection, ring)
        return ring

    def _announce(self, connection: Connection, ring: FrameSlots) -> None:
        with contextlib.suppress(ChannelClosed):  # the reader thread sees the closed connection and cleans up
            connection.send(RingAnnounce(ring.info), (ring.fd,))

    def _release_locked(self) -> None:
        """Send the frames at the head of the line whose detections are in, in order."""
        connection = self._pusher.connection
        for entry in self._entries.values():
            if entry.state == "sent":
                continue
            if entry.state != "ready" or connection is None:
                break
            frame = entry.frame
            note = FrameNote(
                entry.ring.info.ring_id,
                entry.slot,
                frame.camera_id,
                frame.seq,
                frame.capture_ts,
                frame.pts_s,
                frame.infer,
                frame.meta,
                entry.detections,
                entry.infer_failed,
            )
            try:
                connection.send(note)
            except ChannelClosed:
                break
            entry.state, entry.since = "sent", self._clock()

    def _finish_locked(self, seq: int) -> Entry | None:
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        ring_id = entry.ring.info.ring_id
        self._ring_users[ring_id] -= 1
        if self._ring is entry.ring:
            self._free.append(entry.slot)
        else:
            self._close_retired_locked()
        self._cond.notify_all()
        return entry

    def _close_retired_locked(self) -> None:
        for ring_id in [r for r in self._retired if self._ring_users.get(r, 0) <= 0]:
            self._retired.pop(ring_id).close()
            self._ring_users.pop(ring_id, None)

    def _expire_locked(self) -> None:
        now = self._clock()
        for seq, entry in list(self._entries.items()):
            age = now - entry.since
            if entry.state in ("pending", "inferring") and age > self._detections_timeout_s:
                entry.state, entry.infer_failed = "ready", True
                self.figures.infer_failed += 1
                self.figures.infer_timeouts += 1
                self._segmenter_stalled_locked(now)
            elif entry.state == "sent" and age > self._push_timeout_s:
                self._finish_locked(seq)
                self.figures.lost += 1
        self._release_locked()

    def _read_pusher(self, link: Link, connection: Connection) -> None:
        try:
            while True:
                message, _ = connection.recv()
                if isinstance(message, FrameDone):
                    with self._cond:
                        if self._finish_locked(message.seq) is not None:
                            self.figures.completed += 1
                            if message.error is not None:  # pushed or not, the pusher failed on it
                                self.figures.push_errors += 1
                                self.last_push_error = message.error
        except ChannelClosed as error:
            reason = str(error)
        except Exception as error:  # a message we cannot read: drop the connection, reconnect
            reason = f"{type(error).__name__}: {error}"
            logger.exception("pusher channel read failed camera=%s", self.camera_id)
        connection.close()
        with self._cond:
            if link.connection is connection:
                link.connection = None
                link.last_error = reason
            lost = [seq for seq, e in self._entries.items() if e.state == "sent"]
            for seq in lost:
                self._finish_locked(seq)
            self.figures.lost += len(lost)
            self._cond.notify_all()
        if not self._closed:
            logger.warning("pusher channel lost camera=%s frames_lost=%d reason=%s", self.camera_id, len(lost), reason)
