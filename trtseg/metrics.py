"""Prometheus metrics of the pipeline through ``ray.util.metrics`` (exported by every Ray node's agent).

Metric objects are created lazily inside the process that records them (an actor) and tagged by
``camera_id`` or ``actor``. Outside a Ray worker (unit tests, tools) recording is a no-op, so plain
classes can call these helpers without a cluster.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

LATENCY_BOUNDARIES_MS = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000]
ANALYTICS_BOUNDARIES_MS = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]
BATCH_BOUNDARIES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]

_lock = threading.Lock()
_metrics: dict[str, Any] = {}

# name -> (kind, description, tag keys, boundaries)
_DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "trtseg_frames_decoded": ("counter", "Frames taken from a camera's decoder.", ("camera_id",), None),
    "trtseg_frames_pushed": ("counter", "Annotated frames handed to a camera's pusher.", ("camera_id",), None),
    "trtseg_frames_dropped": ("counter", "Frames dropped to keep real time.", ("camera_id",), None),
    "trtseg_reconnects": ("gauge", "Reconnects of a camera's source so far.", ("camera_id",), None),
    "trtseg_fps_in": ("gauge", "Frames per second decoded.", ("camera_id",), None),
    "trtseg_fps_out": ("gauge", "Frames per second pushed.", ("camera_id",), None),
    "trtseg_stream_pushing": ("gauge", "1 while a camera's stream is encoded (push_mode).", ("camera_id",), None),
    "trtseg_stream_viewers": ("gauge", "Viewers of a camera within the on-demand idle time.", ("camera_id",), None),
    "trtseg_stream_starts": ("gauge", "On-demand encoder starts of a camera so far.", ("camera_id",), None),
    "trtseg_queue_depth": ("gauge", "Frames of a camera in flight in the pipeline.", ("camera_id",), None),
    "trtseg_inference_latency_ms": (
        "histogram",
        "From submitting a frame to its detections.",
        ("camera_id",),
        LATENCY_BOUNDARIES_MS,
    ),
    "trtseg_capture_to_push_ms": (
        "histogram",
        "From decoding a frame to handing its annotated copy to the encoder.",
        ("camera_id",),
        LATENCY_BOUNDARIES_MS,
    ),
    "trtseg_events": ("counter", "Event records sent to the sink.", ("camera_id",), None),
    "trtseg_clips_written": ("counter", "Incident clips written.", ("camera_id",), None),
    "trtseg_clip_failures": ("counter", "Incident clips that failed (disk full, unwritable).", ("camera_id",), None),
    "trtseg_clip_buffer_bytes": ("gauge", "Compressed video in a camera's clip buffer.", ("camera_id",), None),
    "trtseg_keyframe_failures": (
        "counter",
        "Key frame pictures that could not be written (disk full, unwritable); their records are stored without.",
        (),
        None,
    ),
    "trtseg_evidence_bytes": ("gauge", "Evidence on disk that retention saw at its last run.", (), None),
    "trtseg_evidence_over_cap": (
        "gauge",
        "1 while retention cannot bring the evidence under evidence.max_disk_gb.",
        (),
        None,
    ),
    "trtseg_evidence_deleted": ("counter", "Evidence deleted by retention ('clip' or 'keyframe').", ("kind",), None),
    "trtseg_evidence_delete_failures": ("counter", "Evidence files retention could not delete.", (), None),
    "trtseg_batch_size": ("histogram", "Frames per engine batch.", ("actor",), BATCH_BOUNDARIES),
    "trtseg_engine_ms": ("histogram", "Engine time of one batch.", ("actor",), LATENCY_BOUNDARIES_MS),
    "trtseg_batch_failures": ("counter", "Engine batches that failed.", ("actor",), None),
    "trtseg_incidents_opened": (
        "counter",
        "Incidents opened, by the severity they opened with.",
        ("camera_id", "rule", "severity"),
        None,
    ),
    "trtseg_incidents_escalated": ("counter", "Incidents escalated to an alert.", ("camera_id", "rule"), None),
    "trtseg_incidents_closed": ("counter", "Incidents closed.", ("camera_id", "rule", "severity"), None),
    "trtseg_zone_objects": ("gauge", "Tracked objects in a zone now.", ("camera_id", "zone", "class_name"), None),
    "trtseg_tracks": ("gauge", "Tracks of a camera's tracker now, by state.", ("camera_id", "state"), None),
    "trtseg_tracker_ms": ("histogram", "Tracker time of one inferred frame.", ("camera_id",), ANALYTICS_BOUNDARIES_MS),
    "trtseg_rules_ms": ("histogram", "Zone and rule time of one frame.", ("camera_id",), ANALYTICS_BOUNDARIES_MS),
}


@functools.cache
def _ray_module() -> Any | None:
    """Ray, or None where it is not installed: asked once, not on every figure (a failed import
    searches the whole path each time)."""
    try:
        import ray
    except ImportError:
        return None
    return ray


def _in_ray_worker() -> bool:
    ray = _ray_module()
    return ray is not None and bool(ray.is_initialized())


def _metric(name: str) -> Any | None:
    if not _in_ray_worker():
        return None
    with _lock:
        metric = _metrics.get(name)
        if metric is None:
            from ray.util import metrics

            kind, description, tags, boundaries = _DEFINITIONS[name]
            if kind == "counter":
                metric = metrics.Counter(name, description=description, tag_keys=tags)
            elif kind == "gauge":
                metric = metrics.Gauge(name, description=description, tag_keys=tags)
            else:
                metric = metrics.Histogram(name, description=description, boundaries=boundaries, tag_keys=tags)
            _metrics[name] = metric
        return metric


def _record(name: str, value: float, tags: dict[str, str]) -> None:
    try:
        metric = _metric(name)
        if metric is None:
            return
        kind = _DEFINITIONS[name][0]
        if kind == "counter":
            if value > 0:
                metric.inc(value, tags=tags)
        elif kind == "gauge":
            metric.set(value, tags=tags)
        else:
            metric.observe(value, tags=tags)
    except Exception:  # metrics must never break the pipeline
        logger.debug("metric not recorded name=%s", name, exc_info=True)


class CameraMetrics:
    """Per-camera figures, tagged ``camera_id``."""

    def __init__(self, camera_id: str) -> None:
        self._tags = {"camera_id": camera_id}

    def count(self, name: str, value: float = 1.0) -> None:
        """Add to one of the counters (frames_decoded, frames_pushed, frames_dropped, events)."""
        _record(f"trtseg_{name}", value, self._tags)

    def gauge(self, name: str, value: float) -> None:
        """Set one of the gauges (fps_in, fps_out, reconnects, queue_depth)."""
        _record(f"trtseg_{name}", value, self._tags)

    def inference_ms(self, value: float) -> None:
        _record("trtseg_inference_latency_ms", value, self._tags)

    def capture_to_push_ms(self, value: float) -> None:
        _record("trtseg_capture_to_push_ms", value, self._tags)


class EvidenceMetrics:
    """Evidence on disk: key frames the sink could not write, and each retention run's figures."""

    @staticmethod
    def keyframe_failures(count: int) -> None:
        _record("trtseg_keyframe_failures", float(count), {})

    @staticmethod
    def retention(report: Any) -> None:
        """One ``trtseg.clips.retention.RetentionReport`` (a skipped run leaves the gauges as they were)."""
        if report.skipped:
            return
        _record("trtseg_evidence_bytes", float(report.evidence_bytes), {})
        _record("trtseg_evidence_over_cap", 1.0 if report.over_cap else 0.0, {})
        _record("trtseg_evidence_deleted", float(report.clips_deleted), {"kind": "clip"})
        _record("trtseg_evidence_deleted", float(report.keyframes_deleted), {"kind": "keyframe"})
        _record("trtseg_evidence_delete_failures", float(report.delete_failures), {})


class SegmenterMetrics:
    """Per-segmenter figures, tagged ``actor``."""

    def __init__(self, actor: str) -> None:
        self._tags = {"actor": actor}

    def batch(self, size: int, seconds: float) -> None:
        """Observer for ``Batcher``: one engine batch of ``size`` frames took ``seconds``."""
        _record("trtseg_batch_size", float(size), self._tags)
        _record("trtseg_engine_ms", 1000.0 * seconds, self._tags)

    def failure(self) -> None:
        _record("trtseg_batch_failures", 1.0, self._tags)


class AnalyticsMetrics:
    """Per-camera analytics figures (tracking, zones, incidents), tagged ``camera_id``.

    The camera's pusher calls these: ``incidents`` with the records of every frame, ``zone_counts``
    with ``CameraAnalytics.zone_counts()``, ``tracker_ms``/``rules_ms`` with the frame's timings.
    """

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self._tags = {"camera_id": camera_id}
        self._zones: set[tuple[str, str]] = set()

    def incident_opened(self, rule: str, severity: str) -> None:
        _record("trtseg_incidents_opened", 1.0, {**self._tags, "rule": rule, "severity": severity})

    def incident_escalated(self, rule: str) -> None:
        _record("trtseg_incidents_escalated", 1.0, {**self._tags, "rule": rule})

    def incident_closed(self, rule: str, severity: str) -> None:
        _record("trtseg_incidents_closed", 1.0, {**self._tags, "rule": rule, "severity": severity})

    def incidents(self, records: Iterable[Any]) -> None:
        """Count opens, escalations and closes from IncidentRecords by the key frame stages they carry
        (pictures are taken exactly at 'open', 'alert' and 'close', once each per incident)."""
        for record in records:
            stages = getattr(record, "keyframes", None) or {}
            if "open" in stages:
                self.incident_opened(record.rule, record.severity)
            if "alert" in stages:
                self.incident_escalated(record.rule)
            if "close" in stages:
                self.incident_closed(record.rule, record.severity)

    def zone_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Objects per zone and class now; pairs that emptied are set to 0 (a gauge keeps its last value)."""
        seen: set[tuple[str, str]] = set()
        for zone, classes in counts.items():
            for class_name, count in classes.items():
                seen.add((zone, class_name))
                _record("trtseg_zone_objects", float(count), {**self._tags, "zone": zone, "class_name": class_name})
        for zone, class_name in self._zones - seen:
            _record("trtseg_zone_objects", 0.0, {**self._tags, "zone": zone, "class_name": class_name})
        self._zones = seen

    def tracks(self, active: int, lost: int) -> None:
        """The tracker's confirmed-and-matched (``active``) and coasting (``lost``) tracks now."""
        _record("trtseg_tracks", float(active), {**self._tags, "state": "active"})
        _record("trtseg_tracks", float(lost), {**self._tags, "state": "lost"})

    def tracker_ms(self, value: float) -> None:
        _record("trtseg_tracker_ms", value, self._tags)

    def rules_ms(self, value: float) -> None:
        _record("trtseg_rules_ms", value, self._tags)
