"""TrackRelinker: one identity per object for the rules, across the tracker's id changes.

A tracker sometimes gives a standing object a new id: a person walks in front of a cable, the
detector answers with two overlapping cable masks for a few frames, and the cable's track is lost
while a new one takes over. For the rules that is the same object in the same place, and a new id
would restart its dwell timer or open a duplicate incident. So a track first seen where a track of
the same class was last seen a moment ago (box IoU at least ``min_iou`` with where that track would be
now at its last pace, or with where it was last seen, within ``window_s`` of analysis time, and absent
from this frame) inherits that track's identity. Where it was last seen counts because the pace is
taken from the last two boxes: a waiting person half hidden by a passer-by has a box that shrinks for
a frame, a "pace" that is only that jump, and comes back, under a new id, where they stood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of (N, 4) boxes."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    area_b = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


@dataclass(slots=True)
class _Seen:
    class_name: str
    box: np.ndarray
    clock: float
    velocity: np.ndarray  # px per second of each box coordinate, from the last two sightings

    def predicted(self, clock: float) -> np.ndarray:
        """Where the box would be now had the object kept its pace (a walker behind a pillar)."""
        return self.box + self.velocity * max(0.0, clock - self.clock)


class TrackRelinker:
    """Maps tracker ids to stable identities; not thread-safe (one per camera)."""

    def __init__(self, window_s: float = 3.0, min_iou: float = 0.4) -> None:
        self.window_s, self.min_iou = window_s, min_iou
        self._alias: dict[int, int] = {}
        self._seen: dict[int, _Seen] = {}  # identity -> where and when it was last seen
        self.relinked = 0

    def identities(self, ids: list[int], names: list[str], boxes: np.ndarray, clock: float) -> list[int]:
        """The identity of each of this frame's tracks (its own id unless it took over a lost one)."""
        out = [self._alias.get(i, i) for i in ids]
        present = set(out)
        for row, track in enumerate(ids):
            if track in self._alias or track in self._seen:
                continue
            candidates = [
                identity
                for identity, seen in self._seen.items()
                if identity not in present and seen.class_name == names[row] and clock - seen.clock <= self.window_s
            ]
            if candidates:
                ious = np.maximum(
                    box_iou(boxes[row], np.stack([self._seen[c].predicted(clock) for c in candidates])),
                    box_iou(boxes[row], np.stack([self._seen[c].box for c in candidates])),
                )
                best = int(np.argmax(ious))
                if ious[best] >= self.min_iou:
                    out[row] = self._alias[track] = candidates[best]
                    present.add(candidates[best])
                    self.relinked += 1
                    continue
            self._alias[track] = track
        for row, identity in enumerate(out):
            box = np.asarray(boxes[row], np.float64)
            before = self._seen.get(identity)
            velocity = np.zeros(4)
            if before is not None and clock - before.clock > 1e-6:
                velocity = 0.5 * before.velocity + 0.5 * (box - before.box) / (clock - before.clock)
            self._seen[identity] = _Seen(names[row], box, clock, velocity)
        self._forget(clock)
        return out

    def _forget(self, clock: float) -> None:
        """Identities unseen for a long time cannot be taken over any more; their aliases go with them."""
        horizon = clock - 4.0 * self.window_s
        stale = {identity for identity, seen in self._seen.items() if seen.clock < horizon}
        if stale:
            for identity in stale:
                del self._seen[identity]
            self._alias = {track: identity for track, identity in self._alias.items() if identity not in stale}
