"""Small helpers shared by the actors: identity for liveness checks, bounded waits on remote calls."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

logger = logging.getLogger(__name__)

CONTROLLER_NAME = "trtseg-controller"
SINK_NAME = "trtseg-sink"


def identity(role: str, key: str) -> dict[str, Any]:
    """Who answers a ping: a new ``incarnation`` after every (re)start tells the watchdog about restarts."""
    import ray

    return {
        "role": role,
        "key": key,
        "incarnation": uuid.uuid4().hex,
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "started_at": time.time(),
    }


async def call(ref: Any, timeout_s: float, what: str) -> Any:
    """Await one remote call at most ``timeout_s``; TimeoutError names the call."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"{what} did not answer in {timeout_s:g} s") from None
