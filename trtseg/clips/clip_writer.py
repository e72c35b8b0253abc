"""The disk side of ``ClipRecorder``: the recorder thread's muxing, files, pointers and recovery.

A mixin of ``trtseg.clips.recorder.ClipRecorder`` (which keeps the bookkeeping: which incidents share
which recording, when it ends), kept in its own module so each file stays about one thing. Everything
here runs on the recorder's thread (or in ``close``), never in the frame loop.

The thread writes packets captured at least ``hold_s`` ago while incidents are open (an incident's
close is known only ``close_after_s`` after it was last seen, and the clip must not run on past its
post-capture), and everything up to the end once the end is known. A clip is written to a hidden
temporary file, closed (the moov atom moved to the front), fsynced and renamed, then its sidecar and
the incidents' pointers are written (``trtseg.clips.layout``). A disk that is full or unwritable fails
that recording only: logged, counted, reported in ``stats`` and to ``on_clip``; never raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trtseg.clips.layout import TMP_SUFFIX, ClipInfo, ClipLayout, tmp_name, write_json
from trtseg.clips.packet_ring import MUX_FORMAT, PacketRing, RingPacket
from trtseg.keyframes import fsync_dir

logger = logging.getLogger("trtseg.clips.recorder")  # the recorder's log, as before the split

STALL_S = 30.0  # no packets this long past a recording's end (or its cap): finish with what it has
MARKER_PREFIX = ".active-"  # incidents whose recording finished, remembered so a late start does not record again


@dataclass(eq=False)
class _Recording:
    """State of the recording in progress; the file side is touched by the recorder thread only."""

    id: str
    requested_start_ts: float
    next_seq: int
    short: bool
    incidents: dict[str, float | None] = field(default_factory=dict)  # id -> closed_ts (None: open)
    opened: dict[str, float] = field(default_factory=dict)  # id -> opened_ts
    end_ts: float | None = None
    pointers: set[str] = field(default_factory=set)
    container: Any = None
    stream: Any = None
    session: Any = None
    tmp: Path | None = None
    relative: str | None = None
    shift: int = 0
    last_dts: int | None = None
    max_pts: int | None = None
    step: int = 1
    first_ts: float | None = None
    last_ts: float | None = None
    packets: int = 0
    bytes: int = 0
    gaps: int = 0
    skipped: int = 0
    waiting_key: bool = True
    rebase: bool = False
    capped: bool = False
    ended_by: str = ""


class ClipWriter:
    """Writes the recording in progress to disk and ends it (the recorder thread's side)."""

    ring: PacketRing
    layout: ClipLayout
    camera_id: str
    site: str
    pre_capture_s: float
    max_clip_s: float
    hold_s: float
    figures: dict[str, int]
    last_error: str | None
    last_clip: ClipInfo | None
    _on_clip: Callable[[ClipInfo], None] | None
    _clock: Callable[[], float]
    _lock: threading.Lock
    # and ``_detach(rec) -> incident ids``, the recorder's bookkeeping when a recording ends

    def _advance(self, rec: _Recording, flush: bool = False) -> None:
        self._write_pointers(rec)
        with self._lock:
            end_ts = rec.end_ts
        newest = self.ring.newest_ts
        horizon = None if (end_ts is not None or flush or newest is None) else newest - self.hold_s
        while True:
            packets, lost = self.ring.read(rec.next_seq, upto_ts=horizon, limit=500)
            if lost:
                if rec.container is not None:  # before its first packet, a lost start is only 'short'
                    rec.gaps += 1
                    self.figures["gaps"] += 1
                    rec.waiting_key = True
                    logger.warning("clip lost packets camera=%s recording=%s lost=%d", self.camera_id, rec.id, lost)
                else:
                    rec.short = True
            for packet in packets:
                if not self._take(rec, packet, end_ts):
                    self._finish(rec, rec.ended_by)
                    return
                rec.next_seq = packet.seq + 1
            if packets:
                self.ring.pin(rec.id, rec.next_seq)
            if len(packets) < 500:
                break
        now = self._clock()
        stalled_end = end_ts is not None and now > end_ts + self.hold_s + STALL_S
        stalled_cap = now > rec.requested_start_ts + self.pre_capture_s + self.max_clip_s + self.hold_s + STALL_S
        if stalled_end or stalled_cap:
            rec.capped = rec.capped or (stalled_cap and not stalled_end)
            self._finish(rec, "stalled")

    def _take(self, rec: _Recording, packet: RingPacket, end_ts: float | None) -> bool:
        """Mux one packet; False when the recording ends before it (``rec.ended_by`` says why)."""
        if rec.session is not None and packet.session is not rec.session:
            if packet.session is None or not rec.session.compatible(packet.session):
                rec.ended_by = "source_changed"
                return False
            rec.session = packet.session  # a new demux session (reconnect, loop) of the same stream:
            rec.waiting_key = rec.rebase = True  # go on from its first key frame, right after what was written
        if rec.waiting_key:
            if not packet.key:
                rec.skipped += 1
                return True
            rec.waiting_key = False
        dts = packet.dts if packet.dts is not None else packet.pts
        pts = packet.pts if packet.pts is not None else dts
        if dts is None or pts is None:
            rec.skipped += 1
            return True
        if rec.container is None:
            self._open(rec, packet)
            rec.shift = -pts
        elif rec.rebase or (rec.last_dts is not None and dts + rec.shift <= rec.last_dts):
            rec.shift = self._continuation_shift(rec, dts, pts)  # a new session, or timestamps went back
        rec.rebase = False
        out_dts, out_pts = dts + rec.shift, pts + rec.shift
        if rec.first_ts is not None:
            whole = packet.key or rec.max_pts is None or out_pts > rec.max_pts
            if end_ts is not None and packet.ts >= end_ts and whole:
                rec.ended_by = "post_capture"
                return False
            if packet.ts - rec.first_ts >= self.max_clip_s and whole:
                rec.capped, rec.ended_by = True, "capped"
                return False
        self._mux(rec, packet, out_pts, out_dts)
        return True

    @staticmethod
    def _continuation_shift(rec: _Recording, dts: int, pts: int) -> int:
        """The shift that puts a packet one step after everything written so far (decode and display order)."""
        if rec.last_dts is None:
            return rec.shift
        after_dts = rec.last_dts + rec.step - dts
        after_pts = (rec.max_pts if rec.max_pts is not None else rec.last_dts) + rec.step - pts
        return max(after_dts, after_pts)

    def _open(self, rec: _Recording, packet: RingPacket) -> None:
        import av

        day = datetime.fromtimestamp(packet.ts, tz=UTC).date().isoformat()
        rec.relative = self.layout.recording(self.site, self.camera_id, day, rec.id)
        target = self.layout.resolve(rec.relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        rec.tmp = tmp_name(target)
        rec.container = av.open(str(rec.tmp), "w", format=MUX_FORMAT, options={"movflags": "+faststart"})
        rec.stream = rec.container.add_stream_from_template(packet.session.template, opaque=True)
        rec.session = packet.session
        rec.first_ts = packet.ts

    def _mux(self, rec: _Recording, packet: RingPacket, pts: int, dts: int) -> None:
        import av

        out = av.Packet(packet.data)
        out.stream = rec.stream
        out.time_base = rec.session.time_base
        out.pts, out.dts = pts, dts
        out.duration = packet.duration or rec.step
        out.is_keyframe = packet.key
        rec.container.mux(out)
        if rec.last_dts is not None and dts - rec.last_dts > 0:
            rec.step = dts - rec.last_dts
        rec.last_dts = dts
        rec.max_pts = pts if rec.max_pts is None else max(rec.max_pts, pts)
        rec.last_ts = packet.ts
        rec.packets += 1
        rec.bytes += len(packet.data)

    def _write_pointers(self, rec: _Recording) -> None:
        with self._lock:
            new = [i for i in rec.incidents if i not in rec.pointers]
        if not new:
            return
        # The marker names the recording's incidents, so a recorder that starts after this process died
        # can tell them their clip was interrupted (``recover``).
        write_json(self._marker(rec.id), {"recording_id": rec.id, "incident_ids": [*rec.pointers, *new]})
        for incident_id in new:
            self.layout.write_pointer(
                incident_id, {"status": "recording", "recording_id": rec.id, "camera_id": self.camera_id}
            )
            rec.pointers.add(incident_id)

    def _marker(self, recording_id: str) -> Path:
        return self.layout.camera_dir(self.site, self.camera_id) / f"{MARKER_PREFIX}{recording_id}.json"

    def _drop_marker(self, rec: _Recording) -> None:
        with contextlib.suppress(OSError):
            self._marker(rec.id).unlink(missing_ok=True)

    def recover(self) -> int:
        """After a crash: recordings this camera left unfinished (their process died) are marked failed for
        their incidents and their temporary files removed; returns how many. Never raises."""
        recovered = 0
        camera_dir = self.layout.camera_dir(self.site, self.camera_id)
        try:
            markers = sorted(camera_dir.glob(f"{MARKER_PREFIX}*.json"))
        except OSError:
            return 0
        for marker in markers:
            try:
                data = json.loads(marker.read_text(encoding="utf-8"))
                recording_id = str(data.get("recording_id"))
                for incident_id in data.get("incident_ids") or []:
                    pointer = self.layout.read_pointer(incident_id)
                    mine = pointer is None or pointer.get("recording_id") == recording_id
                    if mine and (pointer is None or pointer.get("status") != "ready"):
                        self.layout.write_pointer(
                            incident_id,
                            {"status": "failed", "recording_id": recording_id, "camera_id": self.camera_id,
                             "error": "interrupted: the camera's decoder stopped while recording"},
                        )  # fmt: skip
                for tmp in camera_dir.glob(f"*/.{recording_id}.mp4.*{TMP_SUFFIX}"):
                    tmp.unlink(missing_ok=True)
                marker.unlink(missing_ok=True)
                recovered += 1
            except (OSError, ValueError) as error:
                logger.warning(
                    "unfinished clip not recovered camera=%s marker=%s error=%s", self.camera_id, marker.name, error
                )
        if recovered:
            logger.info("unfinished clips marked failed camera=%s count=%d", self.camera_id, recovered)
        return recovered

    # ------------------------------------------------------------------ the end of a recording
    def _info(self, rec: _Recording, incidents: list[str], ended_by: str, error: str | None = None) -> ClipInfo:
        session = rec.session
        return ClipInfo(
            recording_id=rec.id,
            camera_id=self.camera_id,
            site=self.site,
            incident_ids=incidents,
            clip=rec.relative if error is None and rec.packets else None,
            start_ts=rec.first_ts,
            end_ts=rec.last_ts,
            requested_start_ts=rec.requested_start_ts,
            duration_s=round((rec.last_ts or 0.0) - (rec.first_ts or 0.0), 3) if rec.first_ts else 0.0,
            packets=rec.packets,
            bytes=rec.bytes,
            capped=rec.capped,
            pre_capture_short=rec.short,
            gaps=rec.gaps,
            ended_by=ended_by,
            error=error,
            codec=getattr(session, "codec", None),
            width=getattr(session, "width", 0),
            height=getattr(session, "height", 0),
        )

    def _finish(self, rec: _Recording, ended_by: str) -> ClipInfo:
        incidents = self._detach(rec)
        if rec.container is None or not rec.packets:
            if rec.container is not None:
                _close_quietly(rec.container)
            if rec.tmp is not None:
                rec.tmp.unlink(missing_ok=True)
            info = self._info(rec, incidents, ended_by, error="no key frame reached the buffer before it ended")
            self.figures["empty"] += 1
            self._pointers(incidents, {"status": "failed", "recording_id": rec.id, "error": info.error})
            self._drop_marker(rec)
            return self._report(info)
        try:
            rec.container.close()  # writes the index and moves it to the front (faststart)
            assert rec.tmp is not None and rec.relative is not None
            with open(rec.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            target = self.layout.resolve(rec.relative)
            os.replace(rec.tmp, target)
            rec.tmp = target  # from here a failure removes the clip itself: no file without its sidecar
            fsync_dir(target.parent)
            info = self._info(rec, incidents, ended_by)
            info.bytes = target.stat().st_size
            write_json(target.with_suffix(".json"), info.to_dict())
            for incident_id in incidents:
                self.layout.write_pointer(
                    incident_id,
                    {"status": "ready", "recording_id": rec.id, "camera_id": self.camera_id, "clip": rec.relative},
                )
        except Exception as error:
            return self._fail(rec, error, detached=incidents)
        self._drop_marker(rec)
        self.figures["clips"] += 1
        self.figures["capped"] += int(rec.capped)
        self.figures["bytes_written"] += info.bytes
        self.last_error = None
        logger.info(
            "clip written camera=%s recording=%s incidents=%d seconds=%.1f bytes=%d capped=%s ended_by=%s",
            self.camera_id,
            rec.id,
            len(incidents),
            info.duration_s,
            info.bytes,
            rec.capped,
            ended_by,
        )
        return self._report(info)

    def _fail(self, rec: _Recording, error: BaseException, detached: list[str] | None = None) -> ClipInfo:
        incidents = detached if detached is not None else self._detach(rec)
        text = f"{type(error).__name__}: {error}"[:500]
        self.figures["failures"] += 1
        self.last_error = text
        logger.error("clip failed camera=%s recording=%s error=%s", self.camera_id, rec.id, text)
        if rec.container is not None:
            _close_quietly(rec.container)
        if rec.tmp is not None:
            with contextlib.suppress(OSError):
                rec.tmp.unlink(missing_ok=True)
        self._pointers(incidents, {"status": "failed", "recording_id": rec.id, "error": text})
        self._drop_marker(rec)
        return self._report(self._info(rec, incidents, "failed", error=text))

    def _pointers(self, incidents: list[str], data: dict[str, Any]) -> None:
        """Best effort: the disk that failed the clip may refuse these too."""
        for incident_id in incidents:
            try:
                self.layout.write_pointer(incident_id, {**data, "camera_id": self.camera_id})
            except Exception as error:
                logger.debug("clip pointer not written incident_id=%s error=%s", incident_id, error)

    def _report(self, info: ClipInfo) -> ClipInfo:
        self.last_clip = info
        if self._on_clip is not None:
            try:
                self._on_clip(info)
            except Exception:
                logger.exception("clip callback failed camera=%s", self.camera_id)
        return info


def _close_quietly(container: Any) -> None:
    try:
        container.close()
    except Exception as error:
        logger.debug("clip container close failed error=%s", error)
