"""Which messages a target gets: its filters, the kinds a record makes given what was sent, the cooldown.

Cooldown is per (target, camera, rule): the *opening* message of an incident for a target (its first
message there, normally its 'new') is suppressed when another incident of the same camera and rule
was notified to that target less than ``cooldown_s`` before (by event time). A suppressed incident
stays suppressed on that target: its 'update' and 'end' are suppressed too. Suppressed messages are
stored as 'suppressed' rows, so they are counted and a restart knows them; the last notified opening
per key is read back from the outbox table when first needed, so the cooldown survives a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from trtseg.analytics.records import IncidentRecord
from trtseg.config.analytics import SEVERITY_RANK
from trtseg.config.outbound import MessageKind, TargetFilter
from trtseg.outbound.messages import message_kinds

CooldownKey = tuple[str, str, str]  # (target, camera_id, rule)


@dataclass(frozen=True, slots=True)
class Sent:
    """What the outbox holds of one incident's message on one target."""

    state: str  # pending | delivered | failed | suppressed
    severity: str
    opening: bool


History = dict[str, Sent]  # kind -> its row, for one (target, incident)


def accepts(target: TargetFilter, kind: MessageKind, record: IncidentRecord) -> bool:
    """The target's filters: kind, severity, camera and rule."""
    if kind not in target.kinds:
        return False
    if SEVERITY_RANK.get(record.severity, 0) < SEVERITY_RANK[target.min_severity]:
        return False
    if target.cameras and record.camera_id not in target.cameras:
        return False
    return not (target.rules and record.rule not in target.rules)


def candidate_kinds(record: IncidentRecord, history: History) -> list[MessageKind]:
    """The messages a record makes on a target that holds ``history`` of its incident.

    Besides the record's own (``message_kinds``): an open incident's first record there becomes its
    'new' (the opening key frame may have failed, or the target was added later), and an escalation
    seen without its key frame still makes the 'update' when the 'new' went out as a detection.
    """
    kinds = message_kinds(record)
    if record.status != "open":
        return kinds
    if not history and not kinds:
        kinds = ["new"]
    new = history.get("new")
    escalated = record.severity == "alert" and record.escalated_at is not None
    if escalated and "update" not in kinds and "update" not in history and new is not None and new.severity != "alert":
        kinds.append("update")
    return kinds


def suppressed_incident(history: History) -> bool:
    """Whether the incident's opening message on this target was suppressed (so all its messages are)."""
    return any(sent.opening and sent.state == "suppressed" for sent in history.values())


class Cooldown:
    """The last notified opening per (target, camera, rule); ``load`` reads one from the outbox on a miss."""

    def __init__(self, load: Callable[[CooldownKey], tuple[datetime, str] | None]) -> None:
        self._load = load
        self._last: dict[CooldownKey, tuple[datetime, str] | None] = {}
        self._lock = threading.Lock()

    def suppresses(
        self,
        key: CooldownKey,
        cooldown_s: float,
        incident_id: str,
        at: datetime,
        uncommitted: tuple[datetime, str] | None = None,
    ) -> bool:
        """True when another incident of the key was notified less than ``cooldown_s`` from ``at``.

        ``uncommitted``: an opening of the same key earlier in the batch being enqueued (noted only
        once that batch is committed, so a failed write leaves no trace here).
        """
        if cooldown_s <= 0:
            return False
        with self._lock:
            if key not in self._last:
                self._last[key] = self._load(key)
            last = self._last[key]
        return any(
            seen is not None and seen[1] != incident_id and abs((at - seen[0]).total_seconds()) < cooldown_s
            for seen in (last, uncommitted)
        )

    def note(self, key: CooldownKey, incident_id: str, at: datetime) -> None:
        """Record a notified opening (after it is committed)."""
        with self._lock:
            last = self._last.get(key)
            if last is None or at >= last[0]:
                self._last[key] = (at, incident_id)

    def forget(self) -> None:
        """Drop the cache (it is read again from the outbox)."""
        with self._lock:
            self._last.clear()
