"""The unit that flows from a decoder through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Frame:
    """A decoded picture stamped where it entered the system.

    ``capture_ts`` is wall-clock seconds (time.time()) when the decoder produced the frame; latency
    figures (capture to push) are measured from it. ``pts_s`` is the stream's own timestamp,
    used to pace the pushed stream.
    """

    camera_id: str
    seq: int
    capture_ts: float
    image: np.ndarray  # H x W x 3, uint8, BGR
    pts_s: float = 0.0
    infer: bool = True  # False when the camera's inference interval skips this frame
    meta: dict[str, float] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
