"""One camera's stream pusher: annotated BGR frames into an FFmpeg encoder that pushes RTMP/RTSP/SRT or HLS.

The encoder runs as a ``subprocess.Popen`` child because a writer needs a pipe to its stdin, which
subprocess-tee's ``run`` (made for one-shot commands) does not offer; its stderr is logged line by
line through ``logging`` from a reader thread. One-shot FFmpeg/ffprobe calls (``probe``,
``encoder_available``) use subprocess-tee's ``run``.

``push()`` never blocks: frames go into a small bounded queue (newest kept, oldest dropped and
counted) that a writer thread drains, pacing by timestamps so the pushed stream keeps real time
(gaps filled by repeating the last picture, frames denser than the output rate dropped). When
FFmpeg dies or the target refuses, it is restarted with capped exponential backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import subprocess_tee

from trtseg.config.camera import CameraConfig
from trtseg.config.pusher import PusherConfig
from trtseg.decode import RateMeter
from trtseg.ffmpeg_presets import build_push_command, hls_playlist, output_kind, wire_format
from trtseg.frames import BufferRing
from trtseg.sources import redact_text, redact_url

logger = logging.getLogger(__name__)

MAX_GAP_FILL_S = 2.0  # longer gaps are not filled with repeats: pacing restarts from the new frame
HEALTHY_RUN_S = 10.0  # an encoder that ran this long before dying restarts with the first backoff again
CLOSE_TIMEOUT_S = 10.0


# A frame may be held back this many frame intervals to smooth arrival jitter; a frame earlier than
# that shows the pace was set by a late frame, and the pace is set again from it.
PACE_TOLERANCE_FRAMES = 2


class StreamPusher:
    """Encodes and pushes one camera's frames; see the module docstring for the guarantees."""

    def __init__(
        self,
        camera: CameraConfig,
        pusher: PusherConfig,
        size: tuple[int, int],
        fps: float,
        queue_size: int | None = None,
    ) -> None:
        if fps <= 0 or fps > 240:
            raise ValueError(f"fps must be in (0, 240], got {fps}")
        if size[0] < 2 or size[1] < 2:
            raise ValueError(f"frame size must be at least 2x2, got {size}")
        self.camera = camera
        self.pusher = pusher
        self.fps = float(fps)
        self.kind = output_kind(camera.push)
        self._size = (int(size[0]), int(size[1]))
        self._queue: deque[tuple[np.ndarray, tuple[int, int], float | None]] = deque()  # (wire, size, pts)
        self._queue_size = max(1, pusher.queue_frames if queue_size is None else queue_size)
        # Wire buffers in use: the queued ones, the one being written and the last written (repeated).
        self._wire_ring = BufferRing(self._queue_size + 3)
        self._cond = threading.Condition()
        self._closing = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_size: tuple[int, int] | None = None
        self._proc_started = 0.0
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._state = "disabled" if self.kind == "none" else "starting"
        self._frames_in = 0
        self._frames_written = 0
        self._duplicates = 0
        self._drops = 0
        self._restarts = 0
        self._last_error: str | None = None
        self._backoff = pusher.restart_backoff_s
        self._next_start = 0.0
        self._rate = RateMeter()
        self._origin: tuple[float, float] | None = None  # (wall, pts) of the pacing origin
        self._last_pts: float | None = None
        self._last_wire: np.ndarray | None = None  # the last frame as written (repeated for gaps)
        self._thread: threading.Thread | None = None
        if self.kind != "none":
            self._thread = threading.Thread(target=self._run, name=f"push-{camera.id}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ public
    @property
    def state(self) -> str:
        return self._state

    def push(self, image: np.ndarray, pts_s: float | None = None) -> None:
        """Convert a BGR uint8 HxWx3 frame for the encoder and queue it; never waits for the encoder
        (the oldest queued frame is dropped when full)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("push() takes a BGR uint8 image of shape (H, W, 3)")
        if self._closing.is_set():
            raise RuntimeError(f"pusher of camera '{self.camera.id}' is closed")
        if self.kind == "none":
            with self._cond:
                self._frames_in += 1
            return
        # Converted here, into a reused buffer: the caller may reuse ``image`` once this returns.
        wire = self._to_wire(image)
        with self._cond:
            self._frames_in += 1
            while len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self._drops += 1
            self._queue.append((wire, (image.shape[1], image.shape[0]), pts_s))
            self._cond.notify()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued, end FFmpeg's input so it finalises the stream, and reap it."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._thread is not None and self._thread.is_alive():
            logger.warning("pusher writer did not finish in time; killing ffmpeg camera=%s", self.camera.id)
            self._kill_proc()
            self._thread.join(timeout_s)
        self._stop_proc(graceful=True)
        self._state = "stopped" if self.kind != "none" else "disabled"

    def stats(self) -> dict[str, Any]:
        """Counters and rates for health pages and the API."""
        proc = self._proc
        return {
            "camera_id": self.camera.id,
            "target": self.kind,
            "state": self._state,
            "frames_in": self._frames_in,
            "frames_written": self._frames_written,
            "duplicates": self._duplicates,
            "drops": self._drops,
            "restarts": self._restarts,
            "last_error": self._last_error,
            "fps": round(self._rate.rate(), 2),
            "pid": proc.pid if proc is not None else None,
            "width": self._size[0],
            "height": self._size[1],
        }

    def target_urls(self) -> dict[str, str]:
        """Where the stream goes: {'rtmp': url} (credentials redacted), {'hls': playlist path} or {}."""
        if self.kind == "none":
            return {}
        if self.kind == "hls":
            return {"hls": str(hls_playlist(self.camera.id, self.pusher))}
        return {self.kind: redact_url(self.camera.push)}

    # ----------------------------------------------------------------- writer
    def _run(self) -> None:
        try:
            # Start FFmpeg before the first frame: its start-up and the connection to the target then
            # overlap the pipeline's own start instead of costing the first frames.
            self._ensure_proc()
            while True:
                with self._cond:
                    if not self._queue:
                        if self._closing.is_set():
                            return
                        self._cond.wait(0.2)
                    item = self._queue.popleft() if self._queue else None
                if item is None:
                    self._check_alive()
                    continue
                self._handle(*item)
        except Exception as exc:  # the writer must not die silently: record and stop
            self._last_error = f"writer crashed: {type(exc).__name__}: {exc}"
            self._state = "failed"
            logger.exception("pusher writer crashed camera=%s", self.camera.id)

    def _handle(self, wire: np.ndarray, size: tuple[int, int], pts: float | None) -> None:
        if size != self._size:
            logger.info("push size change camera=%s %s -> %s", self.camera.id, self._size, size)
            self._size = size
            self._stop_proc(graceful=True)
        if (self._closing.is_set() and self._proc is None and self._state == "restarting") or not self._ensure_proc():
            self._drops += 1  # the target is down: this frame is lost, the decoder is not held up
            return
        pts = time.monotonic() if pts is None else float(pts)
        step = 1.0 / self.fps
        repeats = 0
        if self._last_pts is not None and self._origin is not None:
            gap = pts - self._last_pts
            if 0 <= gap < 0.5 * step:
                self._drops += 1  # denser than the output rate
                return
            if gap < 0 or gap > MAX_GAP_FILL_S:
                self._origin = None
            else:
                repeats = max(0, round(gap / step) - 1)
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, pts)
        due = self._origin[0] + (pts - self._origin[1])
        if due - now > PACE_TOLERANCE_FRAMES * step:
            # Paced from a frame that came late (a cold engine, a stall upstream): frames on time would
            # each wait that lateness and overflow the queue. The pace follows the least delayed frame.
            self._origin = (now, pts)
            due = now
        if due > now and not self._closing.is_set():
            time.sleep(due - now)
        elif now - due > 1.0:
            self._origin = (now, pts)  # fell behind by more than a second: pace from here
        last = self._last_wire
        if repeats and last is not None and last.shape == wire.shape:
            for _ in range(repeats):
                if not self._write(last):
                    return
                self._duplicates += 1
        if self._write(wire):
            self._frames_written += 1
            self._last_pts = pts
            self._last_wire = wire

    def _to_wire(self, image: np.ndarray) -> np.ndarray:
        """The frame in FFmpeg's input format (``wire_format``), in the next wire buffer.

        BGR -> I420 for even sizes; odd sizes are copied as they are (bgr24).
        """
        height, width = image.shape[:2]
        if wire_format((width, height)) == "yuv420p":
            return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420, dst=self._wire_ring.next((height * 3 // 2, width)))
        wire = self._wire_ring.next(image.shape)
        np.copyto(wire, image)
        return wire

    def _write(self, wire: np.ndarray) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(memoryview(wire).cast("B"))
        except (BrokenPipeError, OSError, ValueError) as exc:
            self._on_death(f"write failed: {exc}")
            return False
        self._rate.tick()
        return True

    # ---------------------------------------------------------------- process
    def _ensure_proc(self) -> bool:
        if self._proc is not None:
            if self._proc.poll() is None:
                return True
            self._on_death("ffmpeg exited")
        if time.monotonic() < self._next_start:
            return False
        return self._start_proc()

    def _start_proc(self) -> bool:
        cmd = build_push_command(self.camera, self.pusher, self._size, self.fps)
        if self.kind == "hls" and self.camera.push_mode == "on_demand":
            # A viewer waits for the first segment: cut it at the first keyframe, later ones at hls_time.
            cmd[-1:-1] = ["-hls_init_time", f"{min(self.pusher.gop_s, self.pusher.hls_segment_s):g}"]
        if self.kind == "hls":
            hls_playlist(self.camera.id, self.pusher).parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            self._schedule_restart(f"cannot start {self.pusher.ffmpeg}: {exc}")
            return False
        self._lower_priority(proc.pid)
        self._proc, self._proc_size, self._proc_started = proc, self._size, time.monotonic()
        self._origin, self._last_pts, self._last_wire = None, None, None
        self._stderr_tail.clear()
        assert proc.stderr is not None
        threading.Thread(
            target=self._read_stderr, args=(proc.stderr,), name=f"ffmpeg-log-{self.camera.id}", daemon=True
        ).start()
        self._state = "running"
        logger.info(
            "ffmpeg started camera=%s target=%s size=%dx%d fps=%g pid=%d",
            self.camera.id,
            redact_url(self.camera.push),
            *self._size,
            self.fps,
            proc.pid,
        )
        return True

    def _lower_priority(self, pid: int) -> None:
        """Renice the encoder (``PusherConfig.encoder_nice``): set from here, as ``preexec_fn`` is not
        safe in a process with threads; the encoder's first milliseconds run at the pusher's priority."""
        nice = self.pusher.encoder_nice
        if nice <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
        except OSError as error:  # the encoder runs at the pusher's priority; nothing else changes
            logger.warning("cannot lower the encoder's priority camera=%s error=%s", self.camera.id, error)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = redact_text(raw.decode("utf-8", errors="replace").rstrip())
            if line:
                self._stderr_tail.append(line)
                logger.warning("ffmpeg camera=%s: %s", self.camera.id, line)
        stream.close()

    def _on_death(self, reason: str) -> None:
        proc = self._proc
        self._proc = None
        code = None
        if proc is not None:
            self._reap(proc, timeout_s=2.0)
            code = proc.returncode
            if time.monotonic() - self._proc_started > HEALTHY_RUN_S:
                self._backoff = self.pusher.restart_backoff_s
        detail = self._stderr_tail[-1] if self._stderr_tail else ""
        self._restarts += 1
        self._schedule_restart(f"{reason} (code {code}) {detail}".strip())

    def _schedule_restart(self, error: str) -> None:
        self._last_error = redact_text(error)
        self._state = "restarting"
        self._next_start = time.monotonic() + self._backoff
        logger.warning(
            "ffmpeg down camera=%s error=%s retry_in_s=%.1f", self.camera.id, self._last_error, self._backoff
        )
        self._backoff = min(self._backoff * 2.0, max(self.pusher.restart_backoff_max_s, self.pusher.restart_backoff_s))

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._on_death("ffmpeg exited")

    def _stop_proc(self, graceful: bool) -> None:
        proc = self._proc
        self._proc = None
        if proc is None:
            return
        if graceful and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF: FFmpeg flushes the encoder and finalises the output
        self._reap(proc, timeout_s=CLOSE_TIMEOUT_S if graceful else 0.0)

    def _kill_proc(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Wait for the child, then terminate, then kill: it never outlives the pusher as a zombie."""
        for step in ("wait", "terminate", "kill"):
            if step == "terminate":
                proc.terminate()
            elif step == "kill":
                proc.kill()
            try:
                proc.wait(timeout_s if step == "wait" else 5.0)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def probe(target: str | Path, ffprobe: str = "ffprobe", timeout_s: float = 20.0) -> dict[str, Any]:
    """ffprobe's streams and format of a file or URL (one-shot: subprocess-tee's ``run``)."""
    cmd = ["timeout", "-k", "2", f"{timeout_s:g}", ffprobe, "-hide_banner", "-v", "error"]
    cmd += ["-show_streams", "-show_format", "-of", "json", str(target)]
    result = subprocess_tee.run(cmd, tee=False, quiet=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {redact_url(str(target))}: {redact_text(result.stderr.strip())}")
    return json.loads(result.stdout)


def encoder_available(ffmpeg: str = "ffmpeg", encoder: str = "libx264") -> bool:
    """Whether this FFmpeg has the encoder (checked once at start-up; one-shot: subprocess-tee's ``run``)."""
    try:
        result = subprocess_tee.run(["timeout", "20", ffmpeg, "-hide_banner", "-encoders"], tee=False, quiet=True)
    except OSError:
        return False
    return result.returncode == 0 and f" {encoder} " in result.stdout
