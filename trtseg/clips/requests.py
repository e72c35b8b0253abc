"""ClipRequester: which of a camera's incident records start or stop a clip (plain, no Ray).

The camera's output actor feeds it every batch of records it sends to the sink. An incident gets a
clip when its rule asks for one (``clip: true``; ``clip: false``: never), or, for a rule that does
not say (the default), when its severity is one of the camera's ``clips.severities``. It starts one
when it opens (from ``started_at``), or when it escalates to such a severity (from ``escalated_at``),
or when it is first seen open here (an incident resumed after a restart: the recorder ignores one it
already records). It stops at its close, from its ``ended_at`` (when it was last seen). Starting
twice or stopping an unknown incident is harmless
downstream, so this keeps only a bounded memory of the incidents it has seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from trtseg.analytics.records import IncidentRecord
from trtseg.config.clips import ClipConfig

SEEN_MEMORY = 4096


@dataclass(frozen=True, slots=True)
class ClipRequest:
    """``start`` (from ``ts``, before pre-capture) or ``stop`` (closed at ``ts``) the clip of an incident."""

    kind: Literal["start", "stop"]
    incident_id: str
    ts: float


class ClipRequester:
    """Not thread-safe: one per camera, fed in record order."""

    def __init__(self, config: ClipConfig, rules: Iterable[Any] = ()) -> None:
        """``rules``: the camera's analytics rules (``CameraConfig.analytics.rules``), for their ``clip``."""
        self.config = config
        self.rule_clips: dict[str, bool] = {
            rule.name: bool(rule.clip) for rule in rules if getattr(rule, "clip", None) is not None
        }
        self._started: OrderedDict[str, bool] = OrderedDict()  # incident -> a start was asked

    def wanted(self, severity: str, rule: str | None = None) -> bool:
        """Whether an incident of ``rule`` at ``severity`` gets a clip: the rule's ``clip`` when it says,
        else the camera's severities; never while the camera's clips are off (no buffer to cut from)."""
        if not self.config.enabled:
            return False
        chosen = self.rule_clips.get(rule) if rule is not None else None
        return chosen if chosen is not None else severity in self.config.severities

    def requests(self, records: Iterable[Any]) -> list[ClipRequest]:
        out: list[ClipRequest] = []
        for record in records:
            if not isinstance(record, IncidentRecord):
                continue  # events (the older per-class kind) get no clips
            incident_id = record.incident_id
            started = self._started.get(incident_id)  # None: not seen yet
            wanted = self.wanted(record.severity, record.rule)
            if wanted and not started and (record.status == "open" or "open" in record.keyframes):
                # Opened now or first seen (resumed after a restart): from its start. Seen before
                # without a clip: it escalated, from then on.
                from_escalation = started is False and "open" not in record.keyframes
                since = (record.escalated_at or record.last_seen_at) if from_escalation else record.started_at
                out.append(ClipRequest("start", incident_id, since.timestamp()))
                started = True
            if record.status == "closed":
                self._started.pop(incident_id, None)
                if wanted:
                    out.append(ClipRequest("stop", incident_id, (record.ended_at or record.last_seen_at).timestamp()))
                continue
            self._started[incident_id] = bool(started)
            self._started.move_to_end(incident_id)
            while len(self._started) > SEEN_MEMORY:
                self._started.popitem(last=False)
        return out
