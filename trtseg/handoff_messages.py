"""The messages of the node-local frame channel (``trtseg.handoff``): what travels over its sockets.

Small pickled notes: pictures stay in the decoder's shared-memory ring (``trtseg.channel``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trtseg.channel import RingInfo
from trtseg.frames import Frame

LOG_EVERY = 100  # repeated failures are logged the first and then every 100th time, not each frame


@dataclass(frozen=True, slots=True)
class RingAnnounce:
    """A new ring of frame slots; its memory's file descriptor travels with the message."""

    info: RingInfo


@dataclass(frozen=True, slots=True)
class InferNote:
    """Segment the picture in ``slot`` of ring ``ring_id`` with the camera's thresholds."""

    camera_id: str
    seq: int
    ring_id: str
    slot: int
    conf: float
    iou: float
    classes: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class InferReply:
    """Detections of frame ``seq`` (pickled, relayed to the pusher as they are) or why there are none."""

    seq: int
    detections: bytes | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FrameNote:
    """One frame for the pusher: where its picture is, its stamps, and its detections if inferred."""

    ring_id: str
    slot: int
    camera_id: str
    seq: int
    capture_ts: float
    pts_s: float
    infer: bool
    meta: dict[str, float]
    detections: bytes | None
    infer_failed: bool

    def frame(self, image: np.ndarray) -> Frame:
        return Frame(self.camera_id, self.seq, self.capture_ts, image, self.pts_s, self.infer, self.meta)


@dataclass(frozen=True, slots=True)
class FrameDone:
    """The pusher is done with frame ``seq``: its slot may be written again."""

    seq: int
    latency_ms: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an actor's channel listens, and on which node (the channel does not leave a node).

    An empty address: the actor has no channel (the decoder uses the object store)."""

    address: str
    node_id: str


EndpointResolver = Callable[[], Endpoint | None]  # None: not known yet (ask again later)
