"""Turns per-frame detections into events: results, not every frame, go to the database.

Per camera and class of interest an event opens when the class is seen in at least K of the last
N inferred frames (``camera.events``), keeps its best frame as key frame, and closes after
``close_after_s`` seconds of capture time without the class. Time comes only from frames (and the
``now`` given to ``close_all``), so the tracker is deterministic and testable with any clock. An open
event still seen is re-reported every ``REFRESH_EVERY_S`` so its row's ``last_seen_at`` stays fresh.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import cv2
import numpy as np

from trtseg.config.camera import CameraConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.keyframes import encode_jpeg

logger = logging.getLogger(__name__)

EventStatus = Literal["open", "closed"]
IMPROVE_EVERY_S = 1.0  # an improved key frame is reported at most this often per event
REFRESH_EVERY_S = 5.0  # an open event still seen is re-reported this often, so last_seen_at stays fresh


def new_event_id(now_s: float | None = None) -> str:
    """32 hex characters, time-ordered like a UUIDv7: 48-bit milliseconds then 80 random bits."""
    millis = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    return f"{millis:012x}{secrets.token_hex(10)}"


def utc(ts: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(slots=True)
class EventRecord:
    """One state of one event: what the sink stores (upserted on ``event_id``)."""

    event_id: str
    site: str
    camera_id: str
    class_name: str
    status: EventStatus
    started_at: datetime
    last_seen_at: datetime
    best_confidence: float
    frames_seen: int
    result: str
    ended_at: datetime | None = None
    instances: list[dict[str, Any]] = field(default_factory=list)
    keyframe_raw_jpeg: bytes | None = field(default=None, repr=False)
    keyframe_annotated_jpeg: bytes | None = field(default=None, repr=False)
    keyframe_raw_path: str | None = None
    keyframe_annotated_path: str | None = None

    def to_json(self) -> str:
        """JSON of everything but the JPEG bytes (they live in files by then): the spool's format."""
        data = asdict(self)
        data.pop("keyframe_raw_jpeg")
        data.pop("keyframe_annotated_jpeg")
        for key in ("started_at", "last_seen_at", "ended_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> EventRecord:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        for key in ("started_at", "last_seen_at", "ended_at"):
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)


@dataclass(slots=True)
class _Candidate:
    """The best instance of a class in one frame, and what is needed to make it a key frame."""

    ts: float
    confidence: float
    area: float
    image: np.ndarray
    annotated: np.ndarray | None
    detections: Detections

    def beats(self, other: _Candidate | None) -> bool:
        if other is None:
            return True
        return (self.confidence, self.area) > (other.confidence, other.area)

    def keep(self) -> _Candidate:
        """Copy the pictures: the caller may reuse its buffers after ``update`` returns."""
        self.image = self.image.copy()
        self.annotated = None if self.annotated is None else self.annotated.copy()
        return self


@dataclass(slots=True)
class _ClassState:
    """Sliding window and open event of one class on one camera."""

    hits: deque[bool]
    pending_best: _Candidate | None = None
    first_hit_ts: float | None = None
    event_id: str | None = None
    started_ts: float = 0.0
    last_seen_ts: float = 0.0
    frames_seen: int = 0
    best: _Candidate | None = None
    best_dirty: bool = False
    last_report_ts: float = 0.0


class EventTracker:
    """Event state of one camera; not thread-safe (one tracker per camera, fed in frame order)."""

    def __init__(self, camera: CameraConfig, names: dict[int, str], jpeg_quality: int = 80) -> None:
        self.camera = camera
        self.names = dict(names)
        self.rules = camera.events
        self.jpeg_quality = jpeg_quality
        known = set(self.names.values())
        unknown = [c for c in camera.classes if c not in known]
        if unknown:
            logger.warning(
                "classes of interest unknown to the model camera=%s classes=%s", camera.id, ",".join(unknown)
            )
        self._states = {name: _ClassState(hits=deque(maxlen=self.rules.window)) for name in camera.classes}
        self._region_cache: dict[tuple[int, int], np.ndarray] = {}

    # ------------------------------------------------------------------ public
    def update(self, frame: Frame, detections: Detections, annotated: np.ndarray | None = None) -> list[EventRecord]:
        """Feed one frame's detections; returns records of events opened, improved or closed."""
        now = frame.capture_ts
        out: list[EventRecord] = []
        for class_name, state in self._states.items():
            if frame.infer:
                candidate = self._candidate(frame, detections, annotated, class_name)
                out.extend(self._step(class_name, state, candidate, now))
            if state.event_id is not None and now - state.last_seen_ts >= self.rules.close_after_s:
                out.append(self._close(class_name, state))
        return out

    def close_all(self, now: float) -> list[EventRecord]:
        """Close every open event (camera stopped or removed); ``now`` is unused except for logging."""
        out = [self._close(name, state) for name, state in self._states.items() if state.event_id is not None]
        if out:
            logger.info("closed all events camera=%s count=%d now=%.3f", self.camera.id, len(out), now)
        return out

    @property
    def open_events(self) -> dict[str, str]:
        """Class name -> event id of the events open now."""
        return {name: s.event_id for name, s in self._states.items() if s.event_id is not None}

    # ------------------------------------------------------------------ rules
    def _step(self, class_name: str, state: _ClassState, candidate: _Candidate | None, now: float) -> list[EventRecord]:
        state.hits.append(candidate is not None)
        if state.event_id is None:
            if candidate is not None:
                state.first_hit_ts = now if state.first_hit_ts is None else state.first_hit_ts
                if candidate.beats(state.pending_best):
                    state.pending_best = candidate.keep()
            elif not any(state.hits):
                state.pending_best, state.first_hit_ts = None, None
            if sum(state.hits) >= self.rules.min_hits and state.pending_best is not None:
                return [self._open(class_name, state, now)]
            return []
        if candidate is not None:
            state.frames_seen += 1
            state.last_seen_ts = max(state.last_seen_ts, now)
            if candidate.beats(state.best):
                state.best, state.best_dirty = candidate.keep(), True
        if state.best_dirty and now - state.last_report_ts >= IMPROVE_EVERY_S:
            return [self._record(class_name, state, "open", now)]
        if candidate is not None and now - state.last_report_ts >= REFRESH_EVERY_S:
            return [self._record(class_name, state, "open", now)]  # no new best: a row refresh, no JPEG
        return []

    def _open(self, class_name: str, state: _ClassState, now: float) -> EventRecord:
        started = state.first_hit_ts if state.first_hit_ts is not None else now
        state.event_id = new_event_id(started)
        state.started_ts, state.last_seen_ts = started, now
        state.frames_seen = sum(state.hits)
        state.best, state.best_dirty = state.pending_best, True
        state.pending_best, state.first_hit_ts = None, None
        logger.info("event opened camera=%s class=%s event_id=%s", self.camera.id, class_name, state.event_id)
        return self._record(class_name, state, "open", now)

    def _close(self, class_name: str, state: _ClassState) -> EventRecord:
        record = self._record(class_name, state, "closed", state.last_seen_ts)
        logger.info(
            "event closed camera=%s class=%s event_id=%s frames_seen=%d",
            self.camera.id,
            class_name,
            state.event_id,
            state.frames_seen,
        )
        state.event_id, state.best, state.best_dirty = None, None, False
        state.hits.clear()
        return record

    def _record(self, class_name: str, state: _ClassState, status: EventStatus, now: float) -> EventRecord:
        best = state.best
        assert best is not None and state.event_id is not None
        record = EventRecord(
            event_id=state.event_id,
            site=self.camera.site,
            camera_id=self.camera.id,
            class_name=class_name,
            status=status,
            started_at=utc(state.started_ts),
            last_seen_at=utc(state.last_seen_ts),
            ended_at=utc(state.last_seen_ts) if status == "closed" else None,
            best_confidence=round(best.confidence, 6),
            frames_seen=state.frames_seen,
            result=f"{class_name} detected",
            instances=best.detections.to_records(),
        )
        if state.best_dirty:  # JPEGs only when the key frame changed since the last record
            record.keyframe_raw_jpeg = encode_jpeg(best.image, self.jpeg_quality)
            if best.annotated is not None:
                record.keyframe_annotated_jpeg = encode_jpeg(best.annotated, self.jpeg_quality)
            state.best_dirty = False
        state.last_report_ts = now
        return record

    # ------------------------------------------------------------------ detections
    def _candidate(
        self, frame: Frame, detections: Detections, annotated: np.ndarray | None, class_name: str
    ) -> _Candidate | None:
        """The qualifying instances of ``class_name`` in this frame, or None when there are none."""
        if len(detections) == 0:
            return None
        found = detections.of_classes([class_name])
        if len(found) == 0:
            return None
        height, width = frame.height, frame.width
        fractions = found.areas / float(max(1, height * width))
        keep = (found.scores >= self.rules.min_confidence) & (fractions >= self.rules.min_area)
        if self.rules.region is not None:
            keep &= self._in_region(found, (height, width))
        index = np.flatnonzero(keep)
        if index.size == 0:
            return None
        found, fractions = found[index], fractions[index]
        best = max(range(len(found)), key=lambda i: (float(found.scores[i]), float(fractions[i])))
        return _Candidate(
            ts=frame.capture_ts,
            confidence=float(found.scores[best]),
            area=float(fractions[best]),
            image=frame.image,
            annotated=annotated,
            detections=found,
        )

    def _in_region(self, found: Detections, shape: tuple[int, int]) -> np.ndarray:
        """Per instance: its mask overlaps the region (its box centre lies inside it when no mask)."""
        region = self._region_mask(shape)
        if found.masks is not None and found.masks.frame_shape == shape:
            return found.masks.intersects(region)
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2.0
        xs = np.clip(centres[:, 0].astype(int), 0, shape[1] - 1)
        ys = np.clip(centres[:, 1].astype(int), 0, shape[0] - 1)
        return region[ys, xs]

    def _region_mask(self, shape: tuple[int, int]) -> np.ndarray:
        mask = self._region_cache.get(shape)
        if mask is None:
            height, width = shape
            assert self.rules.region is not None
            points = np.array([[x * width, y * height] for x, y in self.rules.region.points], np.float64)
            canvas = np.zeros(shape, np.uint8)
            cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
            mask = canvas.astype(bool)
            self._region_cache[shape] = mask
        return mask
