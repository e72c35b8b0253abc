"""The object-store route's gate to its segmenter: frames never wait for one that is gone or stalled.

On the node-local channel the hand-off does this itself (``trtseg.handoff_segmenter``); here the
decoder hands each inferred frame to the pusher with a reference to its detections, which the
pusher waits for, so the decoder must not ask a segmenter that cannot answer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray

from trtseg.handoff import PROBE_INTERVAL_S, STALL_TIMEOUT_S

logger = logging.getLogger(__name__)


class InferGate:
    """The object-store route's view of its segmenter: whether a frame's detections are worth asking.

    A frame handed to the pusher with a detections reference is held there until it resolves, so
    while the segmenter is gone (a call failed with the actor dead or restarting) or stalled (the
    oldest call is older than ``stall_s``) frames go without one, until a probe (a ping when it was
    gone, the overdue call itself when it stalled) answers. ``poll(ref)`` says whether a reference
    is done (None: pending; else the exception it raised, or False when it succeeded).
    """

    def __init__(
        self,
        ping: Callable[[], Any],
        poll: Callable[[Any], BaseException | bool | None],
        stall_s: float = STALL_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping, self._poll, self._stall_s, self._clock = ping, poll, stall_s, clock
        self._calls: deque[tuple[float, Any]] = deque()
        self._probe: Any = None
        self._probe_at = 0.0
        self.state = "up"
        self.skipped = 0
        self.outages = 0

    def allows(self) -> bool:
        """True when the next frame to infer should ask the segmenter (and wait for it)."""
        now = self._clock()
        if self.state != "up":
            self._check_probe(now)
        else:
            self._check_calls(now)
        if self.state != "up":
            self.skipped += 1
        return self.state == "up"

    def sent(self, ref: Any) -> None:
        self._calls.append((self._clock(), ref))

    def _check_calls(self, now: float) -> None:
        while self._calls:
            since, ref = self._calls[0]
            outcome = self._poll(ref)
            if outcome is None:  # the oldest call is pending: stalled when it has been too long
                if now - since > self._stall_s:
                    self._calls.clear()
                    self._down("stalled", ref, now)
                return
            self._calls.popleft()
            if isinstance(outcome, ray.exceptions.RayActorError):
                self._calls.clear()
                self._down("down", None, now)
                return

    def _down(self, state: str, probe: Any, now: float) -> None:
        self.state, self.outages, self._probe, self._probe_at = state, self.outages + 1, probe, now
        logger.warning("segmenter %s, frames go on without detections (object store)", state)

    def _check_probe(self, now: float) -> None:
        if self._probe is None:
            if now - self._probe_at >= PROBE_INTERVAL_S:
                self._probe, self._probe_at = self._ping(), now
            return
        outcome = self._poll(self._probe)
        if outcome is None:
            return
        self._probe = None
        if outcome is False or not isinstance(outcome, ray.exceptions.RayActorError):
            self.state = "up"  # it answered (an engine error is an answer too)
            logger.info("segmenter back (object store) skipped=%d", self.skipped)


def poll_ref(ref: Any) -> BaseException | bool | None:
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return None
    try:
        ray.get(ref, timeout=0)
    except Exception as error:
        return error
    return False
