"""CameraAnalytics: one camera's tracker, rules and incidents, fed in frame order.

Time here is an *analysis clock*: it advances with inferred frames only, by the capture-time gap
capped at ``max_gap_s``. Frames that come without detections (inference below the source rate, a
segmenter restarting) do not move it, so tracks coast over them and no incident closes or reopens
because inference paused; a timestamp that jumps forward costs at most one gap, and one that goes
back costs nothing. Incident times written to the database are capture times.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtseg.analytics.evidence import SNAPSHOT_EVERY_S, OutlineRecorder, Snapshot, keyframe_jpegs
from trtseg.analytics.geometry import ZoneRaster
from trtseg.analytics.incidents import IncidentBook, OpenIncident, result_text
from trtseg.analytics.records import IncidentRecord
from trtseg.analytics.relink import TrackRelinker, box_iou
from trtseg.analytics.rules import FrameView, build_evaluators
from trtseg.analytics.tracking import ObjectTracker
from trtseg.config.analytics import RuleBase
from trtseg.config.camera import CameraConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.keyframes import encode_jpeg

logger = logging.getLogger(__name__)

MIN_GAP_CAP_S = 1.0
RESUME_MIN_IOU = 0.3


def rule_class_problems(camera: CameraConfig, names: dict[int, str]) -> list[str]:
    """'field: reason' for each rule class the model does not know (checked where the model is known)."""
    known = set(names.values())
    problems = []
    for index, rule in enumerate(camera.analytics.rules):
        missing = [c for c in rule.classes if c not in known]
        if missing:
            problems.append(
                f"analytics.rules.{index}.classes: {', '.join(missing)} unknown to the model "
                f"(it has {', '.join(sorted(known))})"
            )
    return problems


@dataclass(slots=True)
class _Orphan:
    """An incident that was open when the previous tracker stopped, waiting for its object."""

    record: IncidentRecord
    rule: RuleBase
    box: np.ndarray | None


class CameraAnalytics:
    """Tracks objects and judges the camera's rules; not thread-safe (one per camera, frame order)."""

    def __init__(
        self,
        camera: CameraConfig,
        names: dict[int, str],
        jpeg_quality: int = 80,
        resume: Sequence[IncidentRecord] = (),
    ) -> None:
        self.camera = camera
        self.config = camera.analytics
        self.names = dict(names)
        self.jpeg_quality = jpeg_quality
        for problem in rule_class_problems(camera, names):
            logger.warning("rule class unknown camera=%s problem=%s", camera.id, problem)
        self.tracker = ObjectTracker(self.config.tracker)
        self.relinker = TrackRelinker()
        self.zones = {z.name: ZoneRaster(z.name, z.points) for z in self.config.zones}
        self._evaluators = build_evaluators(self.config, list(camera.classes))
        self._rules = {rule.name: rule for rule in self.config.rules}
        self.book = IncidentBook(camera.id, camera.site, self.config, self._render)
        self.outlines = OutlineRecorder(self._rule_shapes)  # the clip overlay's track, in each incident's details
        interval = 1.0 / camera.inference_fps if camera.inference_fps else 0.0
        self.max_gap_s = max(MIN_GAP_CAP_S, 3.0 * interval)
        self.clock = 0.0
        self._last_ts: float | None = None
        self._backwards_logged = False
        self._frame: Frame | None = None
        self._snapshot: Snapshot | None = None
        self._raw_jpeg: tuple[np.ndarray, bytes] | None = None
        self._zone_counts: dict[str, dict[str, int]] = {}
        self._orphans: list[_Orphan] = []
        self._orphan_deadline = 0.0
        self.figures: dict[str, float] = {
            "frames": 0,
            "objects": 0,
            "tracker_ms": 0.0,
            "rules_ms": 0.0,
            "tracker_ms_total": 0.0,
            "rules_ms_total": 0.0,
            "resumed": 0,
        }
        self._resume(resume)

    # ------------------------------------------------------------------ public
    def update(self, frame: Frame, detections: Detections | None) -> list[IncidentRecord]:
        """One frame in order; ``detections`` None when it was not inferred (tracks coast)."""
        if detections is None:
            return []
        self._advance(frame.capture_ts)
        started = time.perf_counter()
        if self.config.tracker.enabled:
            tracked = self.tracker.update(detections, self.clock)
        else:  # one 'track' per class, as events have it: incidents per (rule, class)
            tracked = Detections(**{**_fields(detections), "tracker_ids": -(detections.class_ids.astype(np.int64) + 1)})
        if len(tracked) and self.config.tracker.enabled:
            ids = self.relinker.identities(
                tracked.tracker_ids.tolist(), tracked.class_names, tracked.boxes, self.clock
            )  # fmt: skip
            tracked.tracker_ids = np.asarray(ids, np.int64)
        tracked_at = time.perf_counter()
        view = FrameView(tracked, self.zones, self.clock, frame.capture_ts)
        self._frame = frame
        out = self._adopt_orphans(view)
        observations = [o for evaluator in self._evaluators for o in evaluator.observe(view)]
        out += self.book.step(observations, self.clock, frame.capture_ts)
        self.outlines.observe(self.book.open, observations, frame.capture_ts, out)
        self._keep_evidence(frame, observations)
        self._count_zones(view)
        if self._evaluators and int(self.figures["frames"]) % 50 == 0:
            horizon = self.clock - 4.0 * (self.config.tracker.lost_track_s + MIN_GAP_CAP_S)
            for evaluator in self._evaluators:
                evaluator.forget_older_than(horizon)
        self._frame, self._raw_jpeg = None, None
        done = time.perf_counter()
        self._note_time(tracked_at - started, done - tracked_at, len(tracked))
        return out

    def close_all(self, now: float) -> list[IncidentRecord]:
        """Close every open incident (camera stopped, removed or changed); ``now`` is for the log only."""
        records = self.book.close_all(self.clock)
        records += [self._close_orphan(o) for o in self._orphans]
        self._orphans = []
        if records:
            logger.info("closed all incidents camera=%s count=%d now=%.3f", self.camera.id, len(records), now)
        return records

    def zone_counts(self) -> dict[str, dict[str, int]]:
        """Zone -> class -> tracked objects with at least half their mask inside, as of the last inferred frame."""
        return {zone: dict(counts) for zone, counts in self._zone_counts.items()}

    def stats(self) -> dict[str, Any]:
        tracker_stats = getattr(self.tracker, "stats", {})
        if callable(tracker_stats):
            tracker_stats = tracker_stats()
        return {
            **self.figures,
            "incidents_open": len(self.book.open) + len(self._orphans),
            "incidents_opened_alert": self.book.opened["alert"],
            "incidents_opened_detection": self.book.opened["detection"],
            "incidents_escalated": self.book.escalated,
            "tracks_relinked": self.relinker.relinked,
            "tracks": dict(tracker_stats) if isinstance(tracker_stats, dict) else {},
        }

    def shapes(self) -> list[tuple[str, list[tuple[float, float]], bool]]:
        """(name, points, closed) of every zone and line, for drawing."""
        zones = [(z.name, list(z.points), True) for z in self.config.zones]
        return zones + [(line.name, list(line.points), False) for line in self.config.lines]

    # ------------------------------------------------------------------ clock
    def _advance(self, ts: float) -> None:
        if self._last_ts is not None:
            step = ts - self._last_ts
            if step < 0 and not self._backwards_logged:
                logger.warning("capture time went back camera=%s by_s=%.3f", self.camera.id, -step)
                self._backwards_logged = True
            self.clock += min(max(step, 0.0), self.max_gap_s)
        self._last_ts = ts if self._last_ts is None else max(ts, self._last_ts)

    def _note_time(self, tracker_s: float, rules_s: float, objects: int) -> None:
        f = self.figures
        f["frames"] += 1
        f["objects"] = objects
        f["tracker_ms"], f["rules_ms"] = round(1000 * tracker_s, 4), round(1000 * rules_s, 4)
        f["tracker_ms_total"] += 1000 * tracker_s
        f["rules_ms_total"] += 1000 * rules_s

    # ------------------------------------------------------------------ evidence
    def _render(self, incident: OpenIncident, stage: str) -> dict[str, bytes]:
        if stage == "close" or self._frame is None:
            if incident.evidence is None:
                return {}
            snapshot, detections = incident.evidence
            image = snapshot.image
        else:
            image, detections = self._frame.image, incident.last_detection
        # Incidents opened (or closed) together share one picture: its raw JPEG is encoded once.
        if self._raw_jpeg is None or self._raw_jpeg[0] is not image:
            self._raw_jpeg = (image, encode_jpeg(image, self.jpeg_quality))
        return keyframe_jpegs(
            image, detections, self._rule_shapes(incident.rule), result_text(incident),
            incident.severity == "alert", self.jpeg_quality, raw=self._raw_jpeg[1],
        )  # fmt: skip

    def _rule_shapes(self, rule: RuleBase) -> list[tuple[str, list[tuple[float, float]], bool]]:
        zone, line = getattr(rule, "zone", None), getattr(rule, "line", None)
        return [s for s in self.shapes() if s[0] in (zone, line)]

    def _keep_evidence(self, frame: Frame, observations: list[Any]) -> None:
        """Point each incident met now at a snapshot of this frame (copied at most once a second)."""
        if not self.book.open:
            return
        met = [(self.book.open.get(o.key), o) for o in observations]
        met = [(incident, o) for incident, o in met if incident is not None]
        if not met:
            return
        stale = self._snapshot is None or frame.capture_ts - self._snapshot.ts >= SNAPSHOT_EVERY_S
        if stale or any(incident.evidence is None for incident, _ in met):
            self._snapshot = Snapshot(frame.capture_ts, np.array(frame.image, copy=True))
            for incident, obs in met:  # the picture and the object's mask of one and the same frame
                incident.evidence = (self._snapshot, obs.detections)

    def _count_zones(self, view: FrameView) -> None:
        counts: dict[str, dict[str, int]] = {}
        for name in self.zones:
            inside = view.inside(name) if len(view.tracked) else np.zeros(0)
            per_class: dict[str, int] = {}
            for row in np.flatnonzero(inside >= 0.5):
                per_class[view.names[row]] = per_class.get(view.names[row], 0) + 1
            counts[name] = per_class
        self._zone_counts = counts

    # ------------------------------------------------------------------ resume
    def _resume(self, records: Sequence[IncidentRecord]) -> None:
        """Incidents open in the database for this camera: count rules continue, per-track ones wait
        (up to their close_after_s) for a track of the same class where their object was last seen."""
        for record in records:
            rule = self._rules.get(record.rule)
            box = None
            if record.instance and record.instance.get("box"):
                box = np.asarray(record.instance["box"], np.float64)
            orphan = _Orphan(record, rule, box) if rule is not None else None
            if orphan is not None and record.track_id is None and rule.kind == "count":  # type: ignore[attr-defined]
                self.book.adopt(self._incident_from(record, rule, (rule.name, None)))
                self.figures["resumed"] += 1
            elif orphan is not None:
                self._orphans.append(orphan)
            else:
                self._orphans.append(_Orphan(record, RuleBase(name="removed"), box))
        if records:
            logger.info("incidents resumed camera=%s count=%d", self.camera.id, len(records))

    def _adopt_orphans(self, view: FrameView) -> list[IncidentRecord]:
        if not self._orphans:
            return []
        if not self._orphan_deadline:
            self._orphan_deadline = self.clock + max(o.rule.close_after_s for o in self._orphans)
        left: list[_Orphan] = []
        for orphan in self._orphans:
            row = self._orphan_row(orphan, view)
            key = (orphan.rule.name, None if row is None else view.ids[row])
            if row is not None and key not in self.book.open:
                incident = self._incident_from(orphan.record, orphan.rule, key)
                incident.last_met_clock = self.clock
                self.book.adopt(incident)
                self.figures["resumed"] += 1
            else:
                left.append(orphan)
        self._orphans = left
        if self.clock < self._orphan_deadline:
            return []
        closed, self._orphans = [self._close_orphan(o) for o in self._orphans], []
        return closed

    def _orphan_row(self, orphan: _Orphan, view: FrameView) -> int | None:
        if orphan.box is None or orphan.rule.name == "removed" or not len(view.tracked):
            return None
        same = [i for i, name in enumerate(view.names) if name == orphan.record.class_name]
        if not same:
            return None
        ious = box_iou(orphan.box, view.tracked.boxes[same].astype(np.float64))
        best = int(np.argmax(ious))
        return same[best] if ious[best] >= RESUME_MIN_IOU else None

    def _incident_from(self, record: IncidentRecord, rule: RuleBase, key: tuple[str, int | None]) -> OpenIncident:
        return OpenIncident(
            incident_id=record.incident_id,
            key=key,
            rule=rule,
            class_name=record.class_name,
            zone=record.zone,
            line=record.line,
            started_ts=record.started_at.timestamp(),
            last_seen_ts=record.last_seen_at.timestamp(),
            last_met_clock=self.clock,
            severity=record.severity,
            confidence=record.confidence,
            best_confidence=record.best_confidence,
            fraction=record.fraction,
            peak_fraction=record.peak_fraction,
            count=record.object_count,
            peak_count=record.peak_count,
            frames_seen=record.frames_seen,
            escalated_ts=None if record.escalated_at is None else record.escalated_at.timestamp(),
            trajectory=[list(p) for p in record.trajectory],
            details=dict(record.details),
            resumed_instance=record.instance,
            last_emit_ts=record.last_seen_at.timestamp(),
        )

    def _close_orphan(self, orphan: _Orphan) -> IncidentRecord:
        record = orphan.record
        logger.info("resumed incident closed unseen camera=%s incident_id=%s", self.camera.id, record.incident_id)
        return dataclasses.replace(record, status="closed", ended_at=record.last_seen_at, keyframes={})


def _fields(detections: Detections) -> dict[str, Any]:
    return {
        "boxes": detections.boxes,
        "scores": detections.scores,
        "class_ids": detections.class_ids,
        "masks": detections.masks,
        "names": detections.names,
        "frame_shape": detections.frame_shape,
    }
