"""One camera's decoder actor: the head of the camera's pipeline.

The camera's ``decoder`` setting picks CPU decoding (PyAV) or NVDEC (``trtseg.decode_nvdec``). A
driver thread takes the newest decoded frame and hands it on, by one of two routes:

- the node-local channel (``trtseg.handoff``, the default when segmenter and pusher are on this
  node, as placement keeps them): the picture is written once into shared memory, the segmenter
  and the pusher get small notes over Unix sockets, and frames reach the pusher in order with
  their detections;
- the object store (``cluster.frame_transport: object_store``, or a pusher or segmenter on another
  node): the frame is put once, the segmenter is asked for its detections (inferred frames only)
  and both references go to the camera's pusher actor.

At most ``frames_in_flight`` frames (more with an inference interval, see
``trtseg.pipeline.frames_in_flight_limit``) are between here and the pusher: when the
pipeline falls behind, the decoder's one-slot mailbox keeps only the newest frame (older ones
counted as drops) instead of a queue growing, so the output stays real time.

Frames never stop for the segmenter: while it is gone or stalled they go on to the pusher without
detections (the channel: ``trtseg.handoff_segmenter``; the object store: ``InferGate`` here), and
after the controller replaced a dead one, ``set_segmenter`` hands the camera to the new one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.common import EndpointPoll, identity, limit_cv_threads
from actors.infer_gate import InferGate, poll_ref
from engines.gpu.memory import CudaPageLocker
from trtseg.channel import PageLocker, channel_available
from trtseg.clips.camera import CameraClips
from trtseg.config import CameraConfig
from trtseg.config.clips import EvidenceConfig
from trtseg.decode import CameraDecoder
from trtseg.decode_nvdec import NvdecCameraDecoder, NvdecUnavailable, make_decoder
from trtseg.handoff import ChannelHandoff
from trtseg.metrics import CameraMetrics
from trtseg.pipeline import frames_in_flight_limit

logger = logging.getLogger(__name__)

TAKE_TIMEOUT_S = 0.5
WAIT_TIMEOUT_S = 1.0
PUSHER_WAIT_S = 0.05
# The decoder tells its pusher where to send clip requests, and again this often: a pusher that
# Ray restarted has forgotten (it queues requests meanwhile).
ANNOUNCE_EVERY_S = 10.0


def _page_locker(decoder: CameraDecoder) -> PageLocker | None:
    """NVDEC frames are downloaded into the channel's ring: page-lock it so that is DMA (CUDA)."""
    if not isinstance(decoder, NvdecCameraDecoder):
        return None
    try:
        import cupy
    except ImportError:  # the decoder fails with the fix in its stats; the ring needs no locker
        return None
    return CudaPageLocker(cupy, decoder.gpu_id)


def _clip_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """What health pages need of a camera's clips: whether writing works, counts, the last error."""
    keys = ("enabled", "unsupported", "ok", "clips", "failures", "capped", "last_error")
    return {key: stats.get(key) for key in keys} | {"recording": stats.get("recording") is not None}


def _add_channel_figures(figures: dict[str, int], handoff: ChannelHandoff) -> None:
    """The channel's answered and failed frames in the decoder's own counters."""
    figures["completed"] += handoff.figures.completed
    figures["pipeline_errors"] += handoff.figures.lost + handoff.figures.push_errors


@ray.remote
class DecoderActor:
    """Decodes one camera and drives its frames through segmenter and pusher."""

    def __init__(
        self,
        camera: CameraConfig,
        segmenter: Any,
        pusher: Any,
        frames_in_flight: int = 2,
        file_dir: str | Path | None = None,
        transport: str = "auto",
        evidence: EvidenceConfig | None = None,
    ) -> None:
        self.camera = camera
        self._identity = identity("decoder", camera.id)
        limit_cv_threads()
        self._segmenter = segmenter
        self._gate = self._new_gate(segmenter)
        self._pusher = pusher
        self._configured_limit = max(1, frames_in_flight)
        self._limit = self._configured_limit
        self._metrics = CameraMetrics(camera.id)
        self._in_flight: deque[Any] = deque()
        self._figures = {"submitted": 0, "inferred": 0, "completed": 0, "pipeline_errors": 0, "waits_full": 0}
        self._last_error: str | None = None
        self._reported = {"drops": 0, "frames": 0}
        self._stop = threading.Event()
        # The segmenter and the pusher read frames in host memory, by either route: NVDEC frames are
        # downloaded by the decoder (object store) or straight into the channel's page-locked ring.
        self.decoder = make_decoder(camera, file_dir=file_dir, host_frames=True, segmenter=segmenter)
        # Incident clips: the decoder's demuxed packets in a rolling buffer, cut into MP4s on request.
        self.clips = CameraClips.for_camera(camera, evidence)
        if self.clips is not None:
            self.clips.attach(self.decoder)
        self._handoff: ChannelHandoff | None = None
        if transport == "auto" and channel_available():
            self._handoff = self._new_handoff()
            if isinstance(self.decoder, NvdecCameraDecoder):
                self.decoder.host_frames = False  # the channel downloads into its page-locked ring
        try:
            self.decoder.start()
        except NvdecUnavailable as error:  # the camera stays, 'failed' with the fix in its stats
            logger.error("decoder cannot start camera=%s error=%s", camera.id, error)
        self._thread = threading.Thread(target=self._drive, name=f"drive-{camera.id}", daemon=True)
        self._thread.start()
        if self.clips is not None and pusher is not None:
            threading.Thread(target=self._announce, name=f"announce-{camera.id}", daemon=True).start()
        logger.info("decoder started camera=%s node=%s", camera.id, self._identity["node_id"])

    def ping(self) -> dict[str, Any]:
        return self._identity

    def set_segmenter(self, segmenter: Any) -> None:
        """Send the following frames to another segmentation actor (rebalancing, a replacement)."""
        self._segmenter = segmenter
        old, self._gate = self._gate, self._new_gate(segmenter)
        if old is not None and self._gate is not None:  # the counts are the camera's, not one segmenter's
            self._gate.skipped, self._gate.outages = old.skipped, old.outages
        logger.info("decoder given a new segmenter camera=%s", self.camera.id)
        handoff = self._handoff
        if handoff is not None:
            handoff.reset_segmenter(EndpointPoll(segmenter) if segmenter is not None else None)

    def clip_start(self, incident_id: str, opened_ts: float) -> str | None:
        """Record a clip of ``incident_id`` from pre-capture before ``opened_ts`` (epoch s); its recording id."""
        return self.clips.start(incident_id, opened_ts) if self.clips is not None else None

    def clip_stop(self, incident_id: str, closed_ts: float) -> bool:
        """``incident_id`` closed at ``closed_ts``: its clip ends post-capture after the last of its incidents."""
        return self.clips.stop(incident_id, closed_ts) if self.clips is not None else False

    def clip_stats(self) -> dict[str, Any]:
        """The camera's clip buffer and recorder: recordings, failures, last error, last clip."""
        if self.clips is None:
            return {"enabled": False, "unsupported": None}
        return self.clips.stats()

    def stats(self) -> dict[str, Any]:
        decoder = self.decoder.stats()
        self._export(decoder)
        figures = dict(self._figures)
        gate = self._gate
        if gate is not None and self._handoff is None:  # the object-store route's; the channel has its own
            figures |= {"segmenter_state": gate.state, "infer_skipped": gate.skipped, "segmenter_outages": gate.outages}
        handoff = self._handoff
        channel: dict[str, Any] = {"transport": "object_store"}
        if handoff is not None:
            channel = handoff.stats()
            _add_channel_figures(figures, handoff)
        return {
            **decoder,
            **figures,
            **channel,
            "in_flight": len(self._in_flight) + (handoff.in_flight if handoff is not None else 0),
            "frames_in_flight_limit": self._limit,
            "pipeline_last_error": self._last_error,
            "driving": self._thread.is_alive(),
            **({"clips": _clip_summary(self.clips.stats())} if self.clips is not None else {}),
        }

    def stop(self) -> dict[str, Any]:
        """Stop decoding and wait (bounded) for frames in flight to reach the pusher."""
        self._stop.set()
        self.decoder.stop()
        if self.clips is not None:  # the clip in progress ends with what the buffer holds
            self.clips.close()
        self._thread.join(timeout=10.0)
        if self._in_flight:
            ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=10.0)
        handoff = self._handoff
        if handoff is not None:
            handoff.drain(10.0)
        figures = self.stats()
        if handoff is not None:
            handoff.close()
        return figures

    # ---------------------------------------------------------------- driver thread
    def _announce(self) -> None:
        """Give the pusher this actor's handle for clip requests, now and every ANNOUNCE_EVERY_S."""
        me = ray.get_runtime_context().current_actor
        while not self._stop.is_set():
            try:
                self._pusher.set_decoder.remote(me)
            except Exception as error:  # the pusher is restarting: the next round tells it
                logger.debug("clip announce failed camera=%s error=%s", self.camera.id, error)
            self._stop.wait(ANNOUNCE_EVERY_S)

    @staticmethod
    def _new_gate(segmenter: Any) -> InferGate | None:
        return InferGate(lambda: segmenter.ping.remote(), poll_ref) if segmenter is not None else None

    def _new_handoff(self) -> ChannelHandoff:
        camera = self.camera
        classes = tuple(camera.classes) if camera.classes else None
        return ChannelHandoff(
            camera.id,
            EndpointPoll(self._pusher),
            EndpointPoll(self._segmenter) if self._segmenter is not None else None,
            self._identity["node_id"],
            thresholds=(camera.confidence, camera.iou, classes),
            locker=_page_locker(self.decoder),
        )

    def _drive(self) -> None:
        while not self._stop.is_set():
            try:
                self._limit = frames_in_flight_limit(self._configured_limit, self.camera, self.decoder.source_fps)
                handoff = self._handoff
                if handoff is not None:
                    if handoff.needs_object_store and handoff.in_flight == 0:
                        self._leave_channel(handoff)
                    else:
                        self._drive_channel(handoff)
                    continue
                if len(self._in_flight) >= self._limit:
                    self._figures["waits_full"] += 1
                    self._reap(WAIT_TIMEOUT_S)
                    continue
                frame = self.decoder.latest(timeout_s=TAKE_TIMEOUT_S)
                self._reap(0.0)
                if frame is None:
                    continue
                self._submit(frame)
            except Exception as error:  # keep driving: one bad frame must not stop the camera
                self._last_error = f"{type(error).__name__}: {error}"
                self._figures["pipeline_errors"] += 1
                logger.exception("decoder driver error camera=%s", self.camera.id)
                time.sleep(0.2)

    def _drive_channel(self, handoff: ChannelHandoff) -> None:
        if not handoff.connect():  # no pusher (yet): leave the frames to the mailbox, which drops them
            self._stop.wait(PUSHER_WAIT_S)
            return
        if not handoff.has_room(self._limit):
            self._figures["waits_full"] += 1
            handoff.wait_room(self._limit, WAIT_TIMEOUT_S)
            return
        frame = self.decoder.latest(timeout_s=TAKE_TIMEOUT_S)
        if frame is None:
            handoff.expire()  # no frame to submit (submit expires what is overdue itself)
            return
        self._stamp(frame)
        if handoff.submit(frame, slots_wanted=self._limit + 1):
            self._figures["submitted"] += 1
            self._figures["inferred"] += int(frame.infer and self._segmenter is not None)
            self._metrics.count("frames_decoded")
        self._metrics.gauge("queue_depth", float(handoff.in_flight))

    def _leave_channel(self, handoff: ChannelHandoff) -> None:
        """The pusher or segmenter is on another node: frames go through the object store from now on."""
        links = handoff.stats()
        logger.warning(
            "camera actors on different nodes, frames go through the object store camera=%s detail=%s",
            self.camera.id,
            links["channel_pusher"]["last_error"] or links["channel_segmenter"]["last_error"],
        )
        _add_channel_figures(self._figures, handoff)
        if isinstance(self.decoder, NvdecCameraDecoder):
            self.decoder.host_frames = True
        self._handoff = None
        handoff.close()

    def _stamp(self, frame: Any) -> None:
        fps = self.decoder.source_fps
        if fps:
            frame.meta["fps"] = float(fps)
        frame.meta["submitted_ts"] = time.time()

    def _submit(self, frame: Any) -> None:
        self._stamp(frame)
        if not isinstance(frame.image, np.ndarray):  # a GPU frame taken as the camera left the channel
            frame = dataclasses.replace(frame, image=frame.image.get())
        frame_ref = ray.put(frame)
        detections = None
        segmenter, gate = self._segmenter, self._gate
        if frame.infer and segmenter is not None and gate is not None and gate.allows():
            ref = segmenter.infer.remote(frame_ref, self.camera.confidence, self.camera.iou, None)
            gate.sent(ref)
            detections = [ref]
            self._figures["inferred"] += 1
        self._in_flight.append(self._pusher.process.remote(frame_ref, detections))
        self._figures["submitted"] += 1
        self._metrics.count("frames_decoded")
        self._metrics.gauge("queue_depth", float(len(self._in_flight)))

    def _reap(self, timeout_s: float) -> None:
        """Collect finished frames (waiting up to ``timeout_s`` for the first)."""
        if not self._in_flight:
            return
        pending = list(self._in_flight)
        if timeout_s > 0:  # wait for the first; the sweep below collects whatever else is done
            first, _ = ray.wait(pending, num_returns=1, timeout=timeout_s)
            if not first:
                return
        ready, waiting = ray.wait(pending, num_returns=len(pending), timeout=0)
        if not ready:
            return
        self._in_flight = deque(waiting)
        for ref in ready:
            try:
                ray.get(ref, timeout=0)
                self._figures["completed"] += 1
            except Exception as error:
                self._figures["pipeline_errors"] += 1
                self._last_error = f"{type(error).__name__}: {error}"[:500]
                logger.warning("frame failed in pipeline camera=%s error=%s", self.camera.id, error)

    def _export(self, decoder: dict[str, Any]) -> None:
        for key, metric in (("drops", "frames_dropped"),):
            delta = int(decoder.get(key, 0)) - self._reported[key]
            if delta > 0:
                self._metrics.count(metric, delta)
                self._reported[key] += delta
        self._metrics.gauge("fps_in", float(decoder.get("fps_in", 0.0)))
        self._metrics.gauge("reconnects", float(decoder.get("reconnects", 0)))
        clips = self.clips
        if clips is not None:  # trtseg_clips_written, trtseg_clip_failures, trtseg_clip_buffer_bytes
            figures = clips.recorder.figures
            for key, metric in (("clips", "clips_written"), ("failures", "clip_failures")):
                delta = int(figures[key]) - self._reported.get(metric, 0)
                if delta > 0:
                    self._metrics.count(metric, delta)
                    self._reported[metric] = self._reported.get(metric, 0) + delta
            self._metrics.gauge("clip_buffer_bytes", float(clips.ring.stats()["bytes"]))
