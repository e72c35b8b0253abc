"""Plain per-camera pipeline logic, free of Ray so it is tested on its own.

``infer_grouped`` is the segmentation actor's batch function: frames from many cameras, each with
its own thresholds, in as few engine calls as possible. ``CameraOutput`` is what happens to one
camera's frame after inference: annotate, push, keep the latest view, track events, and run the
camera's analytics (tracking, zone and line rules, incidents: ``trtseg.analytics``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from trtseg.analytics.camera import CameraAnalytics
from trtseg.analytics.records import IncidentRecord
from trtseg.annotate import ShapeAnnotator, draw
from trtseg.config.camera import CameraConfig
from trtseg.config.pusher import PusherConfig
from trtseg.decode import DEFAULT_FPS, RateMeter
from trtseg.detections import Detections
from trtseg.events import EventRecord, EventTracker
from trtseg.ffmpeg_presets import hls_playlist, output_kind
from trtseg.frames import BufferRing, Frame
from trtseg.keyframes import encode_jpeg
from trtseg.ondemand import DemandGate, PusherFactory, StreamEncoder
from trtseg.push import StreamPusher
from trtseg.sources import redact_url

logger = logging.getLogger(__name__)


class Predictor(Protocol):
    """The part of ``SegmentationEngine`` the batch function needs."""

    def predict(
        self,
        images: Sequence[np.ndarray],
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int | str] | None = None,
        with_masks: bool = True,
    ) -> list[Detections]: ...


@dataclass(frozen=True, slots=True)
class InferRequest:
    """One frame to segment with its camera's thresholds."""

    image: np.ndarray
    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[str, ...] | None = None


def infer_grouped(engine: Predictor, requests: list[InferRequest]) -> list[Detections]:
    """Segment a batch whose requests may differ in thresholds: one engine call per (iou, classes).

    Requests sharing iou and classes run together at the lowest confidence among them, and each
    result is then cut at its own confidence. That is exact: NMS only lets higher-scored boxes
    suppress lower ones, so boxes below a caller's threshold never change what it keeps.
    """
    results: list[Detections | None] = [None] * len(requests)
    groups: dict[tuple[float, tuple[str, ...] | None], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault((request.iou, request.classes), []).append(index)
    for (iou, classes), indices in groups.items():
        low = min(requests[i].conf for i in indices)
        found = engine.predict([requests[i].image for i in indices], conf=low, iou=iou, classes=classes)
        for index, detections in zip(indices, found, strict=True):
            conf = requests[index].conf
            results[index] = detections if conf <= low else detections[np.flatnonzero(detections.scores >= conf)]
    return [r for r in results if r is not None]


MAX_FRAMES_IN_FLIGHT = 32


def frames_in_flight_limit(configured: int, camera: CameraConfig, source_fps: float = 0.0) -> int:
    """How many of a camera's frames may be between its decoder and its pusher at once.

    With an inference interval, the frames after an inferred one wait behind it at the pusher (the
    stream keeps its order) while it is segmented, which may take up to one interval on a slow node:
    those frames get room too, or the decoder would drop them although nothing is behind.
    """
    if not camera.inference_fps:
        return configured
    fps = source_fps if source_fps > 0 else DEFAULT_FPS
    return min(configured + math.ceil(fps / camera.inference_fps), MAX_FRAMES_IN_FLIGHT)


def stream_targets(camera: CameraConfig, pusher: PusherConfig) -> dict[str, str]:
    """Where a camera's annotated stream goes, without starting an encoder (credentials redacted)."""
    kind = output_kind(camera.push)
    if kind == "none":
        return {}
    if kind == "hls":
        return {"hls": str(hls_playlist(camera.id, pusher))}
    return {kind: redact_url(camera.push)}


Record = EventRecord | IncidentRecord
EventCallback = Callable[[list[Record]], None]
IDLE_STATES = {"always": "waiting", "on_demand": "idle", "never": "off"}
STALE_PICTURE_S = 0.5  # an on-demand or never camera's picture older than this is drawn anew for a viewer


class CameraOutput:
    """Annotates, pushes and tracks events for one camera; keeps its latest annotated picture.

    The encoder starts on the first frame, when the size is known, or, with ``push_mode`` other than
    'always', when ``DemandGate`` says a viewer asked (``trtseg.ondemand``). Frames nobody watches are
    not drawn, except inferred frames with detections (an event's key frame may be drawn from them)
    and the next frame after a ``latest_jpeg`` request; events and analytics see every frame. Frames
    that were not inferred are drawn with the latest detections so overlays do not blink.
    """

    def __init__(
        self,
        camera: CameraConfig,
        pusher: PusherConfig,
        names: dict[int, str],
        on_events: EventCallback | None = None,
        pusher_factory: PusherFactory = StreamPusher,
        resume: Sequence[IncidentRecord] = (),
    ) -> None:
        self.camera = camera
        self.pusher_config = pusher
        self._on_events = on_events
        self._tracker = EventTracker(camera, names, jpeg_quality=pusher.jpeg_quality)
        self.analytics = CameraAnalytics(camera, names, jpeg_quality=pusher.jpeg_quality, resume=resume)
        shapes = self.analytics.shapes()
        self._shapes = ShapeAnnotator(shapes) if shapes else None
        self.demand = DemandGate(camera.push_mode, pusher.on_demand_idle_s)
        self._encoder = StreamEncoder(camera, pusher, pusher_factory)
        self._last: Detections | None = None
        self._latest: tuple[int, np.ndarray] | None = None
        self._latest_at = 0.0  # time.monotonic() of the latest picture
        # Annotated pictures: the one being drawn, the latest (live view) and a spare. The pusher
        # converts on ``push`` and events copy what they keep, so nothing else holds one.
        self._scenes = BufferRing(3)
        self._jpeg: tuple[int, bytes] | None = None
        self._lock = threading.Lock()
        self._picture = threading.Condition(self._lock)  # a new annotated picture (latest_jpeg waits)
        self._render_wanted = False  # draw the next frame although nobody watches (a JPEG was asked)
        self._rate = RateMeter()
        self.figures: dict[str, float] = {
            "frames": 0,
            "annotated": 0,
            "encoded": 0,
            "inferred": 0,
            "infer_errors": 0,
            "events": 0,
            "event_errors": 0,
            "incidents": 0,
            "analytics_errors": 0,
            "latency_ms_last": 0.0,
            "latency_ms_mean": 0.0,
            "latency_ms_max": 0.0,
            "detections_last": 0,
        }

    def process(self, frame: Frame, detections: Detections | None, infer_failed: bool = False) -> float:
        """Handle one frame; returns its capture-to-push latency in milliseconds."""
        if infer_failed:
            self.figures["infer_errors"] += 1
        if detections is not None:
            self._last = detections
            self.figures["inferred"] += 1
            self.figures["detections_last"] = len(detections)
        encode = self.demand.active()
        annotated: np.ndarray | None = None
        if encode or self._render_wanted or (detections is not None and len(detections) > 0):
            annotated = self._draw(frame)
        if encode and annotated is not None:
            if self._encoder.push(frame, annotated):
                self.figures["encoded"] += 1
        elif self._encoder.running:
            self._encoder.stop()  # the gate shut: the last viewer left on_demand_idle_s ago
        self.figures["frames"] += 1
        self._rate.tick()
        latency_ms = 1000.0 * (time.time() - frame.capture_ts)
        if annotated is not None:
            with self._picture:
                self._latest, self._latest_at = (frame.seq, annotated), time.monotonic()
                self._render_wanted = False
                self._picture.notify_all()
        self._record_latency(latency_ms)
        if detections is not None:
            self._track(frame, detections, annotated)
        self._analyse(frame, detections)
        return latency_ms

    def _draw(self, frame: Frame) -> np.ndarray:
        shown = self._last if self._last is not None else Detections.empty(frame.image.shape[:2])
        if shown.frame_shape != tuple(frame.image.shape[:2]):
            shown = Detections.empty(frame.image.shape[:2])
        self.figures["annotated"] += 1
        return draw(
            frame.image,
            shown,
            self.pusher_config,
            title=self.camera.name or self.camera.id,
            out=self._scenes.next(frame.image.shape),
            shapes=self._shapes,
        )

    def watch(self, viewer: str = "api") -> dict[str, Any]:
        """A viewer asks for the stream: an on-demand camera encodes from its next frame."""
        self.demand.watch(viewer)
        return self.demand_stats()

    def demand_stats(self) -> dict[str, Any]:
        return {**self.demand.stats(), "pushing": self._encoder.running, "hls_ready": self._encoder.hls_ready()}

    def latest_jpeg(self, wait_s: float = 0.0, viewer: str | None = None) -> bytes | None:
        """The newest annotated picture as JPEG, encoded on demand (once per frame).

        ``viewer``: the request counts as watching (``watch``). When no picture is being drawn now
        (an unwatched on-demand camera, or ``never``), the next frame is drawn and this waits up to
        ``wait_s`` for it, so a viewer never gets a picture from minutes ago; a stalled camera still
        answers with its last picture when the wait ends.
        """
        if viewer is not None:
            flowing = self.demand.watch(viewer)
            if wait_s > 0 and self.camera.push_mode != "always":
                self._wait_for_picture(flowing, wait_s)
        with self._lock:
            latest, cached = self._latest, self._jpeg
            if latest is None:
                return None
            seq = latest[0]
            if cached is not None and cached[0] == seq:
                return cached[1]
            image = latest[1].copy()  # its ring buffer is drawn on again two frames later
        data = encode_jpeg(image, self.pusher_config.jpeg_quality)
        with self._lock:
            self._jpeg = (seq, data)
        return data

    def _wait_for_picture(self, flowing: bool, wait_s: float) -> None:
        """Have the next frame drawn for a viewer, unless pictures are fresh already, and wait for it."""
        with self._picture:
            if flowing and self._latest is not None and time.monotonic() - self._latest_at <= STALE_PICTURE_S:
                return
            seen = self._latest[0] if self._latest is not None else None
            self._render_wanted = True
            self._picture.wait_for(lambda: self._latest is not None and self._latest[0] != seen, timeout=wait_s)

    def stats(self) -> dict[str, Any]:
        demand = self.demand_stats()
        return {
            **self.figures,
            "fps_out": round(self._rate.rate(), 2),
            "push_mode": self.camera.push_mode,
            "pushing": demand["pushing"],
            "demand": demand,
            "push": self._encoder.stats(IDLE_STATES[self.camera.push_mode]),
            "analytics": self.analytics.stats(),
            "zone_counts": self.analytics.zone_counts(),
        }

    def close(self, now: float | None = None) -> None:
        """Close open events (so they are not left open in the database) and stop the encoder."""
        try:
            at = time.time() if now is None else now
            records: list[Record] = [*self._tracker.close_all(at), *self.analytics.close_all(at)]
            if records:
                self._emit(records)
        finally:
            self._encoder.close()

    def _record_latency(self, latency_ms: float) -> None:
        figures = self.figures
        frames = max(figures["frames"], 1)
        figures["latency_ms_last"] = round(latency_ms, 3)
        figures["latency_ms_mean"] = round(
            figures["latency_ms_mean"] + (latency_ms - figures["latency_ms_mean"]) / frames, 3
        )
        figures["latency_ms_max"] = round(max(figures["latency_ms_max"], latency_ms), 3)

    def _track(self, frame: Frame, detections: Detections, annotated: np.ndarray) -> None:
        try:
            records = self._tracker.update(frame, detections, annotated)
        except Exception:
            self.figures["event_errors"] += 1
            logger.exception("event tracking failed camera=%s", self.camera.id)
            return
        if records:
            self._emit(records)

    def _analyse(self, frame: Frame, detections: Detections | None) -> None:
        """Tracks, rules, incidents; frames without detections only let tracks coast."""
        try:
            records = self.analytics.update(frame, detections)
        except Exception:
            self.figures["analytics_errors"] += 1
            logger.exception("analytics failed camera=%s", self.camera.id)
            return
        if records:
            self.figures["incidents"] += len(records)
            self._emit(records)

    def _emit(self, records: list[Record]) -> None:
        self.figures["events"] += sum(isinstance(r, EventRecord) for r in records)
        if self._on_events is not None:
            try:
                self._on_events(records)
            except Exception:
                self.figures["event_errors"] += 1
                logger.exception("event hand-off failed camera=%s count=%d", self.camera.id, len(records))
