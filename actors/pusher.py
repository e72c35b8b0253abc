"""One camera's output actor: annotate, push, latest live view, events to the sink.

Frames arrive in order from the camera's decoder actor: over the node-local channel
(``trtseg.handoff.serve_frames`` on a thread of its own, the default) or as ``process`` calls with
the frame in the object store (one ``pipeline`` concurrency slot keeps that order). Queries
(latest JPEG, stats, watch) have their own slots so the live view never waits for the encoder.

Viewers reach it through ``latest_jpeg`` (the API's JPEG and MJPEG views, via the controller) and
``watch`` (the API's HLS playlist and ``POST /cameras/{id}/watch``): each counts as watching, which
starts an on-demand camera's encoder and keeps it running (``trtseg.ondemand``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from actors.clips import ClipLink
from actors.common import identity, limit_cv_threads
from trtseg.analytics.records import IncidentRecord
from trtseg.channel import Listener, channel_available, new_address
from trtseg.config import CameraConfig, PusherConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.handoff import DETECTIONS_TIMEOUT_S, LOG_EVERY, Endpoint, serve_frames
from trtseg.metrics import AnalyticsMetrics, CameraMetrics
from trtseg.outbox import Record, RecordOutbox
from trtseg.pipeline import CameraOutput, stream_targets

logger = logging.getLogger(__name__)

RESUME_TIMEOUT_S = 30.0
RESUME_RETRY_S = 2.0
FIRST_PICTURE_WAIT_S = 1.0  # an unwatched camera draws its next frame for a JPEG request: wait this long


@ray.remote(concurrency_groups={"pipeline": 1, "query": 8})
class PusherActor:
    """Wraps ``CameraOutput`` for one camera."""

    def __init__(self, camera: CameraConfig, pusher: PusherConfig, names: dict[int, str], sink: Any = None) -> None:
        self.camera = camera
        self._identity = identity("pusher", camera.id)
        limit_cv_threads()
        self._sink = sink
        self._pending_events: list[Any] = []
        self._metrics = CameraMetrics(camera.id)
        self._analytics_metrics = AnalyticsMetrics(camera.id)
        self._outbox = RecordOutbox(self._send_events)
        # incident clips, cut by the camera's decoder actor; a rule's `clip` overrides clips.severities
        self._clips = ClipLink(camera.clips, camera.id, rules=camera.analytics.rules)
        self.output = CameraOutput(
            camera, pusher, names, on_events=self._outbox.put, resume=self._open_incidents(camera.id)
        )
        self._closed = False
        self._infer_failures = 0
        self._frame_lock = threading.Lock()  # frames from the channel and from process() never overlap
        self._listener: Listener | None = None
        if channel_available():
            address = new_address("pusher", camera.id)
            self._listener = Listener(address, lambda c: serve_frames(c, self._from_channel), name=f"push-{camera.id}")

    @ray.method(concurrency_group="pipeline")
    def process(self, frame: Frame, detections: list[Any] | None = None) -> float:
        """One frame and (nested, so a failed inference does not fail the frame) its detections ref."""
        if self._closed:
            return 0.0
        found: Detections | None = None
        failed = False
        if detections:
            try:
                found = ray.get(detections[0], timeout=DETECTIONS_TIMEOUT_S)
            except Exception as error:  # push the picture anyway: real time first
                failed = True
                self._log_infer_failure(frame, error)
        return self._handle(frame, found, failed)

    @ray.method(concurrency_group="query")
    def endpoint(self) -> Endpoint:
        """Where the decoder sends frames over the channel (no address: this process has none)."""
        return Endpoint(self._listener.address if self._listener else "", self._identity["node_id"])

    def _from_channel(self, frame: Frame, found: Detections | None, failed: bool) -> float:
        if failed:
            self._log_infer_failure(frame, "no detections: the segmenter failed, was gone or too late")
        return self._handle(frame, found, failed)

    def _handle(self, frame: Frame, found: Detections | None, failed: bool) -> float:
        with self._frame_lock:
            if self._closed:
                return 0.0
            encoded = self.output.figures["encoded"]
            latency_ms = self.output.process(frame, found, infer_failed=failed)
        if self.output.figures["encoded"] > encoded:
            self._metrics.count("frames_pushed")
        self._metrics.capture_to_push_ms(latency_ms)
        return latency_ms

    def _log_infer_failure(self, frame: Frame, error: BaseException | str) -> None:
        self._infer_failures += 1
        if self._infer_failures == 1 or self._infer_failures % LOG_EVERY == 0:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            logger.warning(
                "inference failed camera=%s seq=%d failures=%d error=%s",
                self.camera.id,
                frame.seq,
                self._infer_failures,
                reason,
            )

    @ray.method(concurrency_group="query")
    def set_decoder(self, decoder: Any) -> None:
        """The camera's decoder actor announces itself (at start and every few seconds): clip requests go there."""
        self._clips.set_decoder(decoder)

    @ray.method(concurrency_group="query")
    def latest_jpeg(self, viewer: str = "jpeg", wait_s: float = FIRST_PICTURE_WAIT_S) -> bytes | None:
        """The latest annotated picture; the request counts as watching (an on-demand camera starts)."""
        return self.output.latest_jpeg(wait_s=wait_s, viewer=viewer)

    @ray.method(concurrency_group="query")
    def watch(self, viewer: str = "api") -> dict[str, Any]:
        """A viewer asks for the stream (cheap; the API calls it at most about once a second per camera)."""
        return self.output.watch(viewer)

    @ray.method(concurrency_group="query")
    def target_urls(self) -> dict[str, str]:
        return stream_targets(self.camera, self.output.pusher_config)

    @ray.method(concurrency_group="query")
    def ping(self) -> dict[str, Any]:
        return self._identity

    @ray.method(concurrency_group="query")
    def stats(self) -> dict[str, Any]:
        figures = self.output.stats()
        self._metrics.gauge("fps_out", float(figures.get("fps_out", 0.0)))
        demand = figures.get("demand", {})
        self._metrics.gauge("stream_pushing", 1.0 if figures.get("pushing") else 0.0)
        self._metrics.gauge("stream_viewers", float(demand.get("viewers", 0)))
        self._metrics.gauge("stream_starts", float(demand.get("starts", 0)))
        analytics, tracks = figures.get("analytics", {}), figures.get("analytics", {}).get("tracks", {})
        self._analytics_metrics.zone_counts(figures.get("zone_counts", {}))
        self._analytics_metrics.tracks(int(tracks.get("confirmed", 0)), int(tracks.get("lost", 0)))
        self._analytics_metrics.tracker_ms(float(analytics.get("tracker_ms", 0.0)))
        self._analytics_metrics.rules_ms(float(analytics.get("rules_ms", 0.0)))
        return {**figures, "events_unconfirmed": len(self._pending_events), "clip_requests": self._clips.stats()}

    @ray.method(concurrency_group="pipeline")
    def close(self) -> dict[str, Any]:
        """Close open events, hand them to the sink and stop the encoder."""
        with self._frame_lock:
            if self._closed:
                return self.output.stats()
            self._closed = True
        if self._listener is not None:
            self._listener.close()
        self.output.close()
        self._outbox.flush()
        self._confirm_events(wait_s=10.0)
        self._clips.reap(wait_s=2.0)
        return self.output.stats()

    def _open_incidents(self, camera_id: str) -> list[IncidentRecord]:
        """Incidents this camera left open (a restart, a move to another node): they resume, not reopen."""
        if self._sink is None:
            return []
        deadline = time.monotonic() + RESUME_TIMEOUT_S
        while True:  # the sink writes its backlog first and refuses while the database is down
            try:
                return list(ray.get(self._sink.open_incidents.remote(camera_id), timeout=RESUME_TIMEOUT_S))
            except Exception as error:  # the camera runs regardless; its old incidents stay open in the database
                if time.monotonic() >= deadline:
                    logger.warning("open incidents not resumed camera=%s error=%s", camera_id, error)
                    return []
                time.sleep(RESUME_RETRY_S)

    def _send_events(self, records: list[Record]) -> None:
        self._clips.send(records)  # openings and closes of incidents whose severity gets clips (never blocks)
        self._metrics.count("events", sum(not isinstance(r, IncidentRecord) for r in records))
        self._analytics_metrics.incidents(r for r in records if isinstance(r, IncidentRecord))
        if self._sink is None:
            return
        self._pending_events.append(self._sink.submit.remote(records))
        self._confirm_events(wait_s=0.0)

    def _confirm_events(self, wait_s: float) -> None:
        """Surface sink refusals in the log and keep the list of outstanding hand-offs short."""
        if not self._pending_events:
            return
        ready, waiting = ray.wait(self._pending_events, num_returns=len(self._pending_events), timeout=wait_s)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception as error:
                self.output.figures["event_errors"] += 1
                logger.error("sink refused events camera=%s error=%s", self.camera.id, error)
        self._pending_events = list(waiting)
