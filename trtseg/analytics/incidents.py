"""Incident lifecycle: open, escalate, refresh, close; one incident per (rule, track) key.

Every rule kind shares this book. A key's condition must hold ``min_duration_s`` before it opens
(inertia); an open incident is refreshed while the condition holds (so its row's ``last_seen_at`` is
never older than ``refresh_s``), escalates from detection to alert at most once, and closes after
``close_after_s`` of analysed time without the condition. It is never closed and reopened because a
fraction flips near a threshold: hysteresis and medians live in the rules, and an incident only
closes on absence. After closing, a key opens again only once its ``cooldown_s`` has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trtseg.analytics.records import IncidentRecord
from trtseg.analytics.rules import Key, Observation
from trtseg.config.analytics import SEVERITY_RANK, AnalyticsConfig, PresenceRule, RuleBase
from trtseg.detections import Detections
from trtseg.events import new_event_id, utc

logger = logging.getLogger(__name__)

# A callable that renders the key frames of one incident at one stage: (incident, stage) -> JPEGs.
KeyframeRenderer = Callable[["OpenIncident", str], dict[str, bytes]]


@dataclass(slots=True)
class OpenIncident:
    """The live state of one open incident."""

    incident_id: str
    key: Key
    rule: RuleBase
    class_name: str | None
    zone: str | None
    line: str | None
    started_ts: float
    last_seen_ts: float
    last_met_clock: float
    severity: str
    confidence: float = 0.0
    best_confidence: float = 0.0
    fraction: float | None = None
    side: str | None = None
    peak_fraction: float | None = None
    count: int | None = None
    peak_count: int | None = None
    frames_seen: int = 0
    escalated_ts: float | None = None
    trajectory: list[list[float]] = field(default_factory=list)
    trajectory_stride: int = 1
    trajectory_skipped: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    resumed_instance: dict[str, Any] | None = None  # the stored instance of an incident resumed from the database
    last_emit_ts: float = 0.0
    last_seen: tuple[Detections, list[int]] | None = None  # the latest frame's objects and this key's rows
    evidence: Any = None  # what the key frame renderer needs for the close frame (set by the camera)

    @property
    def track_id(self) -> int | None:
        return self.key[1]

    @property
    def last_detection(self) -> Detections | None:
        """The object(s) in the latest frame that met the rule (sliced on demand)."""
        return None if self.last_seen is None else self.last_seen[0][self.last_seen[1]]


def result_text(incident: OpenIncident) -> str:
    """A sentence an operator reads: 'danger: 62 % of charging_cable outside building_safe_zone'."""
    rule = incident.rule
    label = rule.label or incident.severity
    if incident.severity == "alert" and isinstance(rule, PresenceRule) and rule.escalate and rule.escalate.label:
        label = rule.escalate.label
    what = incident.class_name or "object"
    if incident.count is not None:
        text = f"{label}: {incident.count} {what} in {incident.zone}"
    elif incident.fraction is not None and incident.zone is not None:
        text = f"{label}: {round(100 * incident.fraction)} % of {what} {incident.side} {incident.zone}"
    elif incident.line is not None:
        text = f"{label}: {what} crossed {incident.line} ({incident.details.get('direction', '')})"
    elif incident.zone is not None and "dwell_s" in incident.details:
        text = f"{label}: {what} in {incident.zone} for {incident.details['dwell_s']:.0f} s"
    else:
        text = f"{label}: {what} present"
    return text[:255]


class IncidentBook:
    """Open incidents of one camera and the pending and cooling-down keys around them."""

    def __init__(self, camera_id: str, site: str, config: AnalyticsConfig, render: KeyframeRenderer) -> None:
        self.camera_id, self.site, self.config = camera_id, site, config
        self._render = render
        self.open: dict[Key, OpenIncident] = {}
        self._pending: dict[Key, float] = {}  # key -> analysis clock since its condition holds
        self._cooldown_until: dict[Key, float] = {}
        self.opened: dict[str, int] = {"alert": 0, "detection": 0}
        self.escalated = 0

    def adopt(self, incident: OpenIncident) -> None:
        """Take over an incident resumed from the database under a (possibly new) key."""
        self.open[incident.key] = incident

    def step(self, observations: list[Observation], clock: float, ts: float) -> list[IncidentRecord]:
        """Apply one analysed frame's observations; returns the records to store."""
        out: list[IncidentRecord] = []
        met = {o.key for o in observations}
        for key in [k for k in self._pending if k not in met]:
            del self._pending[key]
        for obs in observations:
            incident = self.open.get(obs.key)
            if incident is None:
                incident = self._maybe_open(obs, clock, ts)
                if incident is None:
                    continue
                self._update(incident, obs, clock, ts)
                self.opened[incident.severity] += 1
                out.append(self._record(incident, "open", ts, stage="open"))
                if incident.escalated_ts is not None:
                    out[-1].escalated_at = utc(incident.escalated_ts)
                continue
            escalated = self._update(incident, obs, clock, ts)
            if escalated:
                self.escalated += 1
                out.append(self._record(incident, "open", ts, stage="alert"))
            elif ts - incident.last_emit_ts >= self.config.refresh_s:
                out.append(self._record(incident, "open", ts))
        for key, incident in list(self.open.items()):
            if clock - incident.last_met_clock >= incident.rule.close_after_s:
                out.append(self.close(key, clock))
        return out

    def close(self, key: Key, clock: float) -> IncidentRecord:
        incident = self.open.pop(key)
        if incident.rule.cooldown_s > 0:
            self._cooldown_until[key] = clock + incident.rule.cooldown_s
        logger.info(
            "incident closed camera=%s incident_id=%s rule=%s track=%s frames_seen=%d",
            self.camera_id,
            incident.incident_id,
            incident.rule.name,
            incident.track_id,
            incident.frames_seen,
        )
        return self._record(incident, "closed", incident.last_seen_ts, stage="close")

    def close_all(self, clock: float) -> list[IncidentRecord]:
        return [self.close(key, clock) for key in list(self.open)]

    # ------------------------------------------------------------------ internals
    def _maybe_open(self, obs: Observation, clock: float, ts: float) -> OpenIncident | None:
        if clock < self._cooldown_until.get(obs.key, float("-inf")):
            return None
        since = self._pending.setdefault(obs.key, clock)
        if clock - since + 1e-9 < obs.rule.min_duration_s:
            return None
        del self._pending[obs.key]
        self._cooldown_until.pop(obs.key, None)
        rule = obs.rule
        incident = OpenIncident(
            incident_id=new_event_id(ts),
            key=obs.key,
            rule=rule,
            class_name=obs.class_name,
            zone=getattr(rule, "zone", None),
            line=getattr(rule, "line", None),
            started_ts=ts - (clock - since),
            last_seen_ts=ts,
            last_met_clock=clock,
            severity=rule.severity,
        )
        self.open[obs.key] = incident
        logger.info(
            "incident opened camera=%s incident_id=%s rule=%s track=%s severity=%s",
            self.camera_id,
            incident.incident_id,
            rule.name,
            obs.key[1],
            rule.severity,
        )
        return incident

    def _update(self, incident: OpenIncident, obs: Observation, clock: float, ts: float) -> bool:
        """Fold one observation in; True when it escalated the incident now."""
        incident.last_seen_ts = max(incident.last_seen_ts, ts)
        incident.last_met_clock = clock
        incident.frames_seen += 1
        incident.confidence = obs.confidence
        incident.best_confidence = max(incident.best_confidence, obs.confidence)
        incident.class_name = obs.class_name or incident.class_name
        if obs.fraction is not None:
            incident.fraction, incident.side = round(obs.fraction, 4), obs.side
            incident.peak_fraction = max(incident.peak_fraction or 0.0, incident.fraction)
        if obs.count is not None:
            incident.count = obs.count
            incident.peak_count = max(incident.peak_count or 0, obs.count)
        incident.details.update(obs.details)
        if obs.anchor is not None:
            self._add_point(incident, ts, obs.anchor)
        if obs.source is not None and obs.index:
            incident.last_seen = (obs.source, obs.index)
        if obs.alert and SEVERITY_RANK[incident.severity] < SEVERITY_RANK["alert"]:
            incident.severity, incident.escalated_ts = "alert", ts
            logger.info("incident escalated camera=%s incident_id=%s", self.camera_id, incident.incident_id)
            return incident.frames_seen > 1  # escalated at opening: the open record carries it
        return False

    def _add_point(self, incident: OpenIncident, ts: float, point: tuple[float, float]) -> None:
        """Append a trajectory point; when full, keep every other point and sample half as often."""
        incident.trajectory_skipped += 1
        if incident.trajectory_skipped < incident.trajectory_stride:
            return
        incident.trajectory_skipped = 0
        incident.trajectory.append([round(ts - incident.started_ts, 3), point[0], point[1]])
        if len(incident.trajectory) > self.config.trajectory_points:
            incident.trajectory = incident.trajectory[::2]
            incident.trajectory_stride *= 2

    def _record(self, incident: OpenIncident, status: str, ts: float, stage: str | None = None) -> IncidentRecord:
        incident.last_emit_ts = ts
        record = IncidentRecord(
            incident_id=incident.incident_id,
            site=self.site,
            camera_id=self.camera_id,
            rule=incident.rule.name,
            rule_kind=incident.rule.kind,  # type: ignore[attr-defined]
            severity=incident.severity,
            status=status,  # type: ignore[arg-type]
            result=result_text(incident),
            started_at=utc(incident.started_ts),
            last_seen_at=utc(incident.last_seen_ts),
            ended_at=utc(incident.last_seen_ts) if status == "closed" else None,
            zone=incident.zone,
            line=incident.line,
            track_id=incident.track_id,
            class_name=incident.class_name,
            confidence=round(incident.confidence, 4),
            best_confidence=round(incident.best_confidence, 4),
            fraction=incident.fraction,
            peak_fraction=incident.peak_fraction,
            object_count=incident.count,
            peak_count=incident.peak_count,
            frames_seen=incident.frames_seen,
            escalated_at=None if incident.escalated_ts is None else utc(incident.escalated_ts),
            trajectory=[list(p) for p in incident.trajectory],
            details=dict(incident.details),
            instance=_instance(incident),
        )
        if stage is not None:
            try:
                record.keyframes = {stage: self._render(incident, stage)}
            except Exception:  # a key frame is evidence, not a reason to lose the incident
                logger.exception("key frame failed camera=%s incident_id=%s", self.camera_id, incident.incident_id)
        return record


def _instance(incident: OpenIncident) -> dict[str, Any] | None:
    """The object as last seen (class, score, box, mask outline): what resuming after a restart matches on."""
    if incident.last_detection is None or len(incident.last_detection) == 0:
        return incident.resumed_instance
    return incident.last_detection[0].to_records()[0]
