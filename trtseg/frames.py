"""The unit that flows from a decoder through the pipeline."""

from __future__ import annotations

from collections.abc import Callable
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


class BufferRing:
    """A few reusable arrays of one shape, handed out in turn.

    A fresh multi-megabyte NumPy array is mapped from the kernel page by page on first write: a new
    720p BGR picture per frame cost 3-5 ms of CPU in page faults, ten times its copy into a reused
    buffer (docs/BENCHMARKS.md). A buffer handed out is overwritten ``slots`` hand-outs later, so
    the owner sizes the ring for everything that may still read it (queued, being written, shown).
    """

    def __init__(self, slots: int, allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty) -> None:
        """``allocate(shape, dtype)`` makes one buffer (e.g. page-locked memory for GPU copies)."""
        if slots < 1:
            raise ValueError(f"a ring needs at least one slot, got {slots}")
        self.slots = slots
        self._allocate = allocate
        self._buffers: list[np.ndarray] = []
        self._next = 0

    def next(self, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8) -> np.ndarray:
        """The next buffer of ``shape`` (the ring is reallocated when the shape or dtype changes)."""
        wanted = np.dtype(dtype)
        if not self._buffers or self._buffers[0].shape != tuple(shape) or self._buffers[0].dtype != wanted:
            self._buffers = [self._allocate(tuple(shape), wanted) for _ in range(self.slots)]
            self._next = 0
        buffer = self._buffers[self._next]
        self._next = (self._next + 1) % self.slots
        return buffer
