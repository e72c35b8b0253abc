"""ClipRecorder: one camera's incident clips, remuxed from its packet ring into faststart MP4 files.

``start(incident_id, opened_ts)`` begins a recording at the last key frame at or before
``opened_ts - pre_capture_s`` (the ring's oldest key frame when it does not reach back so far:
``pre_capture_short``); an incident that starts while a recording runs joins it, so overlapping
incidents share one file. ``stop(incident_id, closed_ts)`` marks it closed; when all of a
recording's incidents are closed it ends ``post_capture_s`` after the last close, at the first packet
from there that starts a new run of pictures in display order (a key frame, or a picture after every
B-frame before it), so the clip ends on a whole picture. A recording longer than ``max_clip_s`` is
cut there (``capped``). Nothing is decoded or encoded: packets are copied with rebased timestamps.

All file work happens on the recorder's own thread (``step``), never in the caller's: ``start`` and
``stop`` only change state, so the frame loop never waits on a disk. The thread's side (muxing, the
files, pointers, recovery after a crash) is ``trtseg.clips.clip_writer``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtseg.clips.clip_writer import STALL_S, ClipWriter, _Recording
from trtseg.clips.layout import ClipInfo, ClipLayout
from trtseg.clips.packet_ring import PacketRing
from trtseg.events import new_event_id

__all__ = ["DONE_MEMORY", "HOLD_S", "STALL_S", "STEP_INTERVAL_S", "ClipRecorder"]

logger = logging.getLogger(__name__)

HOLD_S = 2.0
STEP_INTERVAL_S = 0.25
DONE_MEMORY = 4096


class ClipRecorder(ClipWriter):
    """Cuts one camera's incident clips from its ``PacketRing`` (thread-safe; see the module doc)."""

    def __init__(
        self,
        ring: PacketRing,
        clip_dir: Path | str,
        camera_id: str,
        site: str = "default",
        pre_capture_s: float = 5.0,
        post_capture_s: float = 5.0,
        max_clip_s: float = 300.0,
        hold_s: float = HOLD_S,
        on_clip: Callable[[ClipInfo], None] | None = None,
        clock: Callable[[], float] = time.time,
        start_thread: bool = True,
    ) -> None:
        self.ring = ring
        self.layout = ClipLayout(clip_dir)
        self.camera_id, self.site = camera_id, site
        self.pre_capture_s, self.post_capture_s, self.max_clip_s = pre_capture_s, post_capture_s, max_clip_s
        self.hold_s = hold_s
        self._on_clip = on_clip
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._current: _Recording | None = None
        self._done: OrderedDict[str, str] = OrderedDict()
        self._closing = False
        self.last_error: str | None = None
        self.last_clip: ClipInfo | None = None
        self.figures = {
            "recordings": 0,
            "clips": 0,
            "capped": 0,
            "failures": 0,
            "empty": 0,
            "bytes_written": 0,
            "gaps": 0,
            "starts": 0,
            "stops": 0,
            "stops_unknown": 0,
        }
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name=f"clips-{camera_id}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ callers (actor methods)
    def start(self, incident_id: str, opened_ts: float) -> str | None:
        """Record ``incident_id`` (opened at ``opened_ts``); returns its recording's id (None once closed)."""
        with self._lock:
            if self._closing:
                return None
            self.figures["starts"] += 1
            if incident_id in self._done:
                return self._done[incident_id]
            rec = self._current or self._new_recording(incident_id, opened_ts)
            self._join(rec, incident_id, opened_ts)
            return rec.id

    def _new_recording(self, incident_id: str, opened_ts: float, seq: int | None = None) -> _Recording:
        """A recording from the last key frame before pre-capture (or from ``seq``); the lock is held."""
        short = False
        if seq is None:
            found = self.ring.start_seq(opened_ts - self.pre_capture_s)
            seq, short = found if found is not None else (self.ring.next_seq, True)
        rec = _Recording(new_event_id(opened_ts), opened_ts - self.pre_capture_s, seq, short)
        self.ring.pin(rec.id, seq)
        self._current = rec
        self.figures["recordings"] += 1
        logger.info(
            "clip recording started camera=%s recording=%s incident_id=%s short=%s",
            self.camera_id,
            rec.id,
            incident_id,
            short,
        )
        return rec

    def _join(self, rec: _Recording, incident_id: str, opened_ts: float) -> None:
        if incident_id not in rec.incidents:
            rec.incidents[incident_id] = None
            rec.opened[incident_id] = opened_ts
            rec.end_ts = None  # an incident joined: the recording goes on until it closes too
        self._wake.notify_all()

    def stop(self, incident_id: str, closed_ts: float) -> bool:
        """``incident_id`` closed at ``closed_ts``; False when no recording in progress holds it."""
        with self._lock:
            self.figures["stops"] += 1
            rec = self._current
            if rec is None or incident_id not in rec.incidents:
                self.figures["stops_unknown"] += int(incident_id not in self._done)
                return False
            rec.incidents[incident_id] = float(closed_ts)
            closes = list(rec.incidents.values())
            if all(c is not None for c in closes):
                rec.end_ts = max(c for c in closes if c is not None) + self.post_capture_s
            self._wake.notify_all()
            return True

    def recording_of(self, incident_id: str) -> str | None:
        with self._lock:
            rec = self._current
            if rec is not None and incident_id in rec.incidents:
                return rec.id
            return self._done.get(incident_id)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            rec = self._current
            current = None
            if rec is not None:
                current = {
                    "recording_id": rec.id,
                    "incidents": len(rec.incidents),
                    "open": sum(c is None for c in rec.incidents.values()),
                    "packets": rec.packets,
                    "seconds": round((rec.last_ts or 0.0) - (rec.first_ts or 0.0), 3) if rec.first_ts else 0.0,
                    "ends_at": rec.end_ts,
                }
            last = self.last_clip.to_dict() if self.last_clip is not None else None
        return {
            **self.figures,
            "recording": current,
            "last_clip": last,
            "last_error": self.last_error,
            "ok": self.last_error is None,
        }

    def close(self, timeout_s: float = 10.0) -> ClipInfo | None:
        """Stop the thread and finish the recording in progress with what the ring holds ('stopped')."""
        with self._lock:
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        rec = self._current
        if rec is None:
            return None
        try:
            self._advance(rec, flush=True)
            if self._current is rec:
                return self._finish(rec, rec.ended_by or "stopped")
        except Exception as error:
            return self._fail(rec, error)
        return self.last_clip

    # ------------------------------------------------------------------ the recorder thread
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                self._wake.wait(STEP_INTERVAL_S if self._current is not None else None)
                if self._closing:
                    return
            self.step()

    def step(self) -> None:
        """Write what is due of the recording in progress and finish it when it ends (never raises)."""
        rec = self._current
        if rec is None:
            return
        try:
            self._advance(rec)
        except Exception as error:  # disk full, unwritable directory, a muxer that refuses a packet
            self._fail(rec, error)

    # ------------------------------------------------------------------ the end of a recording
    def _detach(self, rec: _Recording) -> list[str]:
        """Take ``rec`` off as the current recording; incidents still open when it ended for a reason of
        its own (the source changed, or they joined as it reached its end) go on in a new recording."""
        with self._lock:
            if self._current is rec:
                self._current = None
            incidents = list(rec.incidents)
            carry = []
            if rec.ended_by in ("post_capture", "source_changed"):
                carry = [i for i, closed in rec.incidents.items() if closed is None]
            for incident_id in incidents:
                if incident_id not in carry:
                    self._done[incident_id] = rec.id
                    self._done.move_to_end(incident_id)
            while len(self._done) > DONE_MEMORY:
                self._done.popitem(last=False)
            if carry and not self._closing:
                # Late joiners get their own pre-capture; after a source change, the new stream from its start.
                seq = rec.next_seq if rec.ended_by == "source_changed" else None
                follow = self._current or self._new_recording(carry[0], rec.opened[carry[0]], seq)
                for incident_id in carry:
                    self._join(follow, incident_id, rec.opened[incident_id])
        self.ring.unpin(rec.id)
        return incidents
