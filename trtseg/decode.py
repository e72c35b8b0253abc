"""One camera's decoder: opens its source with PyAV on a thread of its own and keeps only the newest frame.

Real time comes first: the consumer (batching segmenter) takes ``latest()``; frames it did not take
in time are overwritten and counted as dropped, so no queue grows when inference falls behind. A
lost stream is reopened with capped exponential backoff; a file source is paced at its native rate
and may loop, with ``pts_s`` kept monotonic across loops and reconnects.

Opening and demuxing are shared by every decoder (``CameraDecoder._session``: FFmpeg's input options
from ``trtseg.sources``, the packet tap of the clip buffer, timestamps in the stream's time base);
a subclass changes only how a stream is set up, how one packet is decoded and how the session
ends (``_open_stream``, ``_decode_packet``, ``_close_stream``: NVDEC in ``trtseg.decode_nvdec``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from trtseg.config.camera import CameraConfig
from trtseg.decode_common import PacketTap, RateMeter
from trtseg.frames import Frame
from trtseg.sources import Source, SourceError, ffmpeg_input_options, parse_source, redact_text, redact_url

logger = logging.getLogger(__name__)

STATES = ("connecting", "live", "reconnecting", "failed", "stopped")
DEFAULT_FPS = 25.0
# What a damaged packet raises: counted, skipped. (PyAV 14 renamed its EINVAL error ValueError to
# ArgumentError; naming the missing one made every decode error end the session instead.)
_EINVAL = tuple(getattr(av.error, name) for name in ("ArgumentError", "ValueError") if hasattr(av.error, name))
CORRUPT_PACKET: tuple[type[BaseException], ...] = (av.error.InvalidDataError, *_EINVAL)
# Damaged packets in a row, no frame between them, that end the session: a stream reopened in the
# middle of a GOP, or one whose parameter sets never came, heals only by reconnecting.
CORRUPT_RUN_LIMIT = 50
__all__ = ["DEFAULT_FPS", "STATES", "CameraDecoder", "PacketTap", "RateMeter", "StreamRefused"]


class _Stop(Exception):
    """Raised inside the decode loop when stop() was asked."""


class StreamRefused(SourceError):
    """The source opened, but this decoder cannot take its stream: the camera fails, no retries."""


TAP_LOG_EVERY = 1000


class CameraDecoder:
    """Decodes one camera into a one-slot mailbox of the newest ``Frame``.

    ``file_dir`` is the only directory file sources may come from (none: file sources refused).
    ``clock`` stamps ``Frame.capture_ts`` (wall-clock seconds); tests may pass their own.
    """

    def __init__(
        self, camera: CameraConfig, file_dir: str | Path | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.camera = camera
        self._file_dir = file_dir
        self._clock = clock
        self._source: Source | None = None
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._slot_taken = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "stopped"
        self._frames = 0
        self._drops = 0
        self._corrupt = 0
        self._reconnects = 0
        self._failures = 0
        self._loops = 0
        # A looping file's reopen leaves a gap no live camera has: timed so benchmarks can leave it out,
        # from the last frame of one pass (the closing of the old session included: NVDEC's takes a
        # few hundred milliseconds) to the first of the next.
        self._loop_gap_s = 0.0
        self._looped_at: float | None = None
        self._delivered_at = 0.0
        self._last_error: str | None = None
        self._ended = False
        self._width = 0
        self._height = 0
        self._source_fps = 0.0
        self._decode_threads = 0  # as FFmpeg applied it (0 until a session opens)
        self._fps_in = RateMeter()
        self._fps_out = RateMeter()
        self._pts_offset = 0.0
        self._last_pts: float | None = None
        self._frame_step = 1.0 / DEFAULT_FPS
        self._next_infer_pts: float | None = None
        self._frames_in_session = 0
        self._session_first_raw: float | None = None
        self._session_base = 0.0
        self.packet_tap: PacketTap | None = None  # set before start(): sees every demuxed video packet
        self._tap_errors = 0

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> str:
        return self._state

    @property
    def source_fps(self) -> float:
        """The stream's frame rate as its container states it; 0.0 until known."""
        return self._source_fps

    def start(self) -> CameraDecoder:
        """Validate the source and start the decode thread (a refused source fails at once, clearly)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._ended = False
        try:
            self._source = parse_source(self.camera.source, self._file_dir)
        except SourceError as exc:
            self._set_state("failed", error=str(exc))
            raise
        self._set_state("connecting")
        self._thread = threading.Thread(target=self._run, name=f"decode-{self.camera.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop decoding; waits for the thread (at most one read timeout) and leaves state 'stopped'."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s if timeout_s is not None else self.camera.open_timeout_s + 2.0)
            if thread.is_alive():
                logger.warning("decoder thread did not stop in time camera=%s", self.camera.id)
        self._set_state("stopped")

    def latest(self, timeout_s: float = 0.0) -> Frame | None:
        """The newest frame nobody has taken yet, waiting up to ``timeout_s``; None when none came."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cond:
            while self._slot_taken:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(remaining)
            self._slot_taken = True
            frame = self._slot
        self._fps_out.tick()
        return frame

    def stats(self) -> dict[str, Any]:
        """Counters and rates for health pages and the API."""
        return {
            "camera_id": self.camera.id,
            "source": redact_url(self.camera.source),
            "state": self._state,
            "fps_in": round(self._fps_in.rate(), 2),
            "fps_out": round(self._fps_out.rate(), 2),
            "frames": self._frames,
            "drops": self._drops,
            "corrupt": self._corrupt,
            "reconnects": self._reconnects,
            "failures": self._failures,
            "loops": self._loops,
            "loop_gap_s": round(self._loop_gap_so_far(), 3),
            "ended": self._ended,
            "last_error": self._last_error,
            "width": self._width,
            "height": self._height,
            "source_fps": round(self._source_fps, 3),
            "decode_threads": self._decode_threads,
            "tap_errors": self._tap_errors,
            "stats_at": time.time(),  # when these counters were read (windows between two reads)
        }

    # ----------------------------------------------------------------- thread
    def _set_state(self, state: str, error: str | None = None) -> None:
        if error is not None:
            self._last_error = redact_text(error)
        if state != self._state:
            logger.info(
                "decoder state camera=%s %s -> %s error=%s",
                self.camera.id,
                self._state,
                state,
                self._last_error if error is not None else None,
            )
            self._state = state

    def _run(self) -> None:
        assert self._source is not None
        source = self._source
        backoff = self.camera.reconnect_backoff_s
        backoff_max = max(self.camera.reconnect_backoff_max_s, backoff)
        quiet_reopen = True  # the first open and a file's loop are not reconnects
        while not self._stop.is_set():
            if not quiet_reopen:
                self._set_state("reconnecting")
            quiet_reopen = False
            try:
                delivered = self._session(source)
            except _Stop:
                break
            except StreamRefused as exc:  # retrying cannot help: say why and stop
                self._set_state("failed", error=str(exc))
                logger.error("decoder refused the stream camera=%s error=%s", self.camera.id, self._last_error)
                return
            except Exception as exc:  # PyAV raises many kinds; every one means "this session ended"
                delivered = self._frames_in_session > 0
                self._last_error = redact_text(f"{type(exc).__name__}: {exc}")
                logger.warning("decoder session ended camera=%s error=%s", self.camera.id, self._last_error)
            else:
                if source.is_file and not self.camera.loop:
                    self._ended = True
                    logger.info("file source ended camera=%s frames=%d", self.camera.id, self._frames)
                    break
                if source.is_file and delivered:
                    self._loops += 1
                    self._looped_at = self._delivered_at or time.monotonic()
                    backoff = self.camera.reconnect_backoff_s
                    quiet_reopen = True
                    continue  # loop the file at once
            if self._stop.is_set():
                break
            if delivered:
                self._failures = 0
                backoff = self.camera.reconnect_backoff_s
            else:
                self._failures += 1
            if source.is_file and not delivered:
                # A file that opened to nothing will not heal by waiting.
                self._set_state("failed", error=self._last_error or "file has no decodable video")
                return
            limit = self.camera.max_failures
            if limit and self._failures >= limit:
                self._set_state("failed")
                logger.error("decoder gave up camera=%s failures=%d", self.camera.id, self._failures)
                return
            self._reconnects += 1
            self._set_state("reconnecting")
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2.0, backoff_max)
        self._set_state("stopped")

    def _session(self, source: Source) -> bool:
        """Open, decode until the end or an error; True when at least one frame came out."""
        self._frames_in_session = 0
        options = ffmpeg_input_options(source.url, self.camera)
        timeout = self.camera.open_timeout_s
        container = av.open(source.url, options=options, timeout=(timeout, timeout))
        clean = False
        try:
            if not container.streams.video:
                raise av.error.InvalidDataError(0, "source has no video stream")
            stream = container.streams.video[0]
            self._open_stream(stream, container)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            self._source_fps = fps if 0 < fps <= 240 else 0.0  # RTP clocks sometimes surface as "rates"
            if self._source_fps > 0:
                self._frame_step = 1.0 / self._source_fps
            self._begin_session()
            tap = self.packet_tap
            if tap is not None:
                self._tapped(tap.begin_session, stream)
            pace_origin: tuple[float, float] | None = None
            corrupt_run = 0
            for packet in container.demux(stream):
                if self._stop.is_set():
                    raise _Stop
                if tap is not None:
                    self._tapped(tap.packet, packet)
                try:
                    frames = self._decode_packet(packet)
                except CORRUPT_PACKET as exc:
                    self._corrupt += 1
                    self._last_error = redact_text(f"corrupt packet: {exc}")
                    corrupt_run += 1
                    if corrupt_run >= CORRUPT_RUN_LIMIT:
                        raise av.error.InvalidDataError(0, f"{corrupt_run} damaged packets in a row") from exc
                    continue
                if frames:
                    corrupt_run = 0
                for video_frame in frames:
                    raw_pts = self._raw_pts(video_frame, stream.time_base)
                    pts = self._monotonic_pts(raw_pts)
                    if source.is_file:
                        pace_origin = self._pace(pts, pace_origin)
                    self._deliver(video_frame, pts)
            clean = True
        finally:
            try:
                self._close_stream(source, clean)
            finally:
                container.close()
        return self._frames_in_session > 0

    # ------------------------------------------------- what a decoder kind changes
    def _open_stream(self, stream: Any, container: Any) -> None:
        """Set up decoding of ``stream`` (PyAV's own decoder here: its threads)."""
        threads = self.camera.decode_threads
        stream.thread_type = "SLICE" if threads == 1 else "AUTO"  # frame threads delay every frame
        stream.codec_context.thread_count = threads
        self._decode_threads = int(stream.codec_context.thread_count)

    def _decode_packet(self, packet: Any) -> list[Any]:
        """The frames one demuxed packet completes (the empty packet at the end flushes the rest).

        Each frame has ``pts`` (stream time base, or None), ``time`` and ``to_ndarray``; an
        ``InvalidDataError`` or ``ValueError`` of PyAV counts the packet as corrupt.
        """
        return packet.decode()  # type: ignore[no-any-return]

    def _close_stream(self, source: Source, clean: bool) -> None:
        """The session ends (``clean``: its stream ran to the end without an error)."""

    def _tapped(self, call: Callable[[Any], None], arg: Any) -> None:
        """Hand the tap a packet or a new stream; its failures are counted, never raised into decoding."""
        try:
            call(arg)
        except Exception as exc:
            self._tap_errors += 1
            if self._tap_errors == 1 or self._tap_errors % TAP_LOG_EVERY == 0:
                logger.warning(
                    "packet tap failed camera=%s errors=%d error=%s: %s",
                    self.camera.id,
                    self._tap_errors,
                    type(exc).__name__,
                    exc,
                )

    def _begin_session(self) -> None:
        """Re-base timestamps so the pts of the new session continue after the last one."""
        self._session_first_raw = None
        self._session_base = 0.0 if self._last_pts is None else self._last_pts + self._frame_step

    def _raw_pts(self, frame: Any, time_base: Fraction | None) -> float:
        if frame.pts is not None and time_base is not None:
            return float(frame.pts * time_base)
        if frame.time is not None:
            return float(frame.time)
        return self._frames_in_session * self._frame_step

    def _monotonic_pts(self, raw: float) -> float:
        if self._session_first_raw is None:
            self._session_first_raw = raw
        pts = self._session_base + (raw - self._session_first_raw)
        if self._last_pts is not None and pts <= self._last_pts:
            # Timestamps went back inside a session (wrap, discontinuity): continue from the last one.
            self._session_base += self._last_pts + self._frame_step - pts
            pts = self._last_pts + self._frame_step
        return pts

    def _pace(self, pts: float, origin: tuple[float, float] | None) -> tuple[float, float]:
        """Sleep so a file plays at its native rate; returns the (wall, pts) origin of the pacing."""
        now = time.monotonic()
        if origin is None:
            return (now, pts)
        due = origin[0] + (pts - origin[1])
        if due - now > 1.0 or now - due > 1.0:
            return (now, pts)  # a jump in timestamps: pace from here instead of stalling or rushing
        if due > now and self._stop.wait(due - now):
            raise _Stop
        return origin

    def _loop_gap_so_far(self) -> float:
        """Time spent reopening a looping file, a reopen under way included up to now.

        Counted from the last frame of a pass, beyond one frame step (as ``_deliver`` closes it):
        a window read in the middle of a reopen (NVDEC takes 0.3-0.4 s to close a session) would
        otherwise expect frames of that time, and the next read would hold the whole gap.
        """
        gap, looped_at = self._loop_gap_s, self._looped_at
        if looped_at is not None:
            gap += max(0.0, time.monotonic() - looped_at - self._frame_step)
        return gap

    def _deliver(self, video_frame: av.VideoFrame, pts: float) -> None:
        image: np.ndarray = video_frame.to_ndarray(format="bgr24")
        height, width = image.shape[:2]
        if (width, height) != (self._width, self._height):
            if self._width:
                logger.info(
                    "resolution change camera=%s %dx%d -> %dx%d",
                    self.camera.id,
                    self._width,
                    self._height,
                    width,
                    height,
                )
            self._width, self._height = width, height
        frame = Frame(
            camera_id=self.camera.id,
            seq=self._frames,
            capture_ts=self._clock(),
            image=image,
            pts_s=pts,
            infer=self._infer_tick(pts),
        )
        now = time.monotonic()
        if self._looped_at is not None:  # the first frame after a loop: beyond one frame step was the reopen
            self._loop_gap_s += max(0.0, now - self._looped_at - self._frame_step)
            self._looped_at = None
        self._delivered_at = now
        self._last_pts = pts
        self._frames += 1
        self._frames_in_session += 1
        self._fps_in.tick()
        with self._cond:
            if not self._slot_taken:
                self._drops += 1
            self._slot = frame
            self._slot_taken = False
            self._cond.notify_all()
        if self._state != "live":
            self._failures = 0
            self._set_state("live")

    def _infer_tick(self, pts: float) -> bool:
        """True on frames at the camera's inference rate (every frame when it has none)."""
        fps = self.camera.inference_fps
        if not fps:
            return True
        interval = 1.0 / fps
        if self._next_infer_pts is None or pts >= self._next_infer_pts - 1e-6:
            nxt = (pts if self._next_infer_pts is None else self._next_infer_pts) + interval
            self._next_infer_pts = nxt if nxt > pts else pts + interval
            return True
        return False
