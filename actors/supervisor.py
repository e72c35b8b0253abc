"""Book-keeping of the controller's supervised actors, and how their failures are told apart."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from trtseg.config import CameraConfig
from trtseg.placement import SegmenterSlot

logger = logging.getLogger(__name__)


@dataclass
class SegmenterEntry:
    """A running segmentation actor."""

    slot: SegmenterSlot
    handle: Any
    incarnation: str | None = None
    names: dict[int, str] = field(default_factory=dict)
    failures: int = 0
    restarts: int = 0
    restarting_since: float | None = None  # monotonic time Ray first said it is restarting


@dataclass
class CameraEntry:
    """A registered camera and its running actors (None when stopped or disabled)."""

    config: CameraConfig
    decoder: Any = None
    pusher: Any = None
    segmenter: str | None = None
    node_id: str | None = None
    state: str = "stopped"
    error: str | None = None
    restores: int = 0  # times the controller re-created its actors
    restarts: int = 0  # times Ray restarted one of its actors on its own
    incarnations: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)


def is_dead(error: BaseException) -> bool:
    """True when the actor is gone for good (killed without restart, restarts used up, node lost)."""
    if isinstance(error, ray.exceptions.ActorDiedError):
        return True
    cause = getattr(error, "cause", None)
    return isinstance(cause, ray.exceptions.ActorDiedError)


def is_restarting(error: BaseException) -> bool:
    """True when Ray says the actor is restarting: it comes back on its own, so that is no missed ping.

    Counting it as one made the watchdog kill a segmenter Ray was about to bring back (three passes
    while a loaded node restarts it), and the replacement restarted its cameras."""
    unavailable = ray.exceptions.ActorUnavailableError
    return isinstance(error, unavailable) or isinstance(getattr(error, "cause", None), unavailable)


def kill_quietly(handle: Any) -> None:
    """Kill an actor for good; an actor that is already gone is fine."""
    if handle is None:
        return
    try:
        ray.kill(handle, no_restart=True)
    except Exception as error:
        logger.debug("kill failed (already gone?) error=%s", error)
