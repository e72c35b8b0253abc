"""Small helpers shared by the actors: identity for liveness checks, bounded waits on remote calls."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

from trtseg.handoff import Endpoint

logger = logging.getLogger(__name__)

CONTROLLER_NAME = "trtseg-controller"
SINK_NAME = "trtseg-sink"


CAMERA_ACTOR_CV_THREADS = 1


def limit_cv_threads(threads: int = CAMERA_ACTOR_CV_THREADS) -> None:
    """Cap OpenCV's thread pool in a per-camera actor process.

    OpenCV starts one worker per core in every process; with a decoder and a pusher per camera,
    32 cameras on 16 cores would run over a thousand of them, and their hand-offs cost more than
    the drawing and colour conversion they split (measured on the H100 node: the pusher's CPU per
    frame fell when capped; docs/BENCHMARKS.md).
    """
    import cv2

    cv2.setNumThreads(threads)


def identity(role: str, key: str) -> dict[str, Any]:
    """Who answers a ping: a new ``incarnation`` after every (re)start tells the watchdog about restarts."""
    import ray

    return {
        "role": role,
        "key": key,
        "incarnation": uuid.uuid4().hex,
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],  # NVDEC decoders follow their segmenter's GPU
        "started_at": time.time(),
    }


async def call(ref: Any, timeout_s: float, what: str) -> Any:
    """Await one remote call at most ``timeout_s``; TimeoutError names the call."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"{what} did not answer in {timeout_s:g} s") from None


class EndpointPoll:
    """Asks an actor for its channel endpoint without ever blocking the caller.

    Each call returns the endpoint once the actor has answered (None while the call is pending, e.g.
    while a segmenter still loads its model); a failed call raises once and is asked anew next time.
    A restarted actor listens on a new address, so the hand-off asks again after a lost connection.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._pending: Any = None

    def __call__(self) -> Endpoint | None:
        import ray

        if self._pending is None:
            self._pending = self._handle.endpoint.remote()
        ready, _ = ray.wait([self._pending], timeout=0)
        if not ready:
            return None
        ref, self._pending = self._pending, None
        return ray.get(ref)
