"""EventSink: key frames to disk, event and incident rows to the database, the spool while it is down.

``submit`` takes EventRecords and IncidentRecords (trtseg.analytics.records) mixed, writes
their key frame JPEGs (an incident's under the id ``<incident_id>-<stage>``, one pair per stage
that carries pictures) and queues the rows in one queue, so their order is kept. Spooled incident
payloads carry ``"record":"incident"``; payloads without it are events (spools written before
incidents existed hold only those). Each batch is written in one transaction, one upsert per table.

A key frame that cannot be written (the key frame directory full or unwritable: any ``OSError``)
costs only that picture: it is logged, counted (``keyframe_failures``, ``keyframes: failing`` until a
later one is written) and the record is stored without its path. The incident or event is never lost
for its pictures.

``submit`` writes the key frame JPEGs and queues the rows at the end of the durable spool
(``durable_submit``, the default: a crash of the process loses nothing), or, with it off, in
memory while the database is up and the spool is empty; order is kept either way. ``flush``
(called by a background thread every ``flush_interval_s``, or directly) drains the spool first,
then memory, in batches of ``batch_size``. A database error moves everything waiting to the
spool and retries with capped exponential backoff. Upserts are idempotent, so replaying a batch
after a crash or a half-finished write never duplicates an event. Rows the database refuses as
bad data go to ``rejected.jsonl`` with the reason: kept, logged, never retried forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from trtseg.analytics.records import IncidentRecord, is_incident_payload
from trtseg.config.sink import SinkConfig
from trtseg.db.incident_checks import incident_to_row
from trtseg.db.models import as_utc
from trtseg.db.store import EventStore, is_transient, record_to_row
from trtseg.events import EventRecord
from trtseg.keyframes import KeyframeStore
from trtseg.spool import Spool, SpoolFull

logger = logging.getLogger(__name__)

REJECTED_FILE = "rejected.jsonl"
MIN_RETRY_S = 0.5
KEYFRAME_LOG_EVERY = 100  # after the first, every this many key frame failures are logged
Record = EventRecord | IncidentRecord


def _describe(exc: BaseException) -> str:
    """A short error text without SQL or parameters (they can be long and hold event data)."""
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else exc}"[:300]


class EventSink:
    """Durable writer of event and incident records; thread-safe."""

    def __init__(
        self,
        sink: SinkConfig,
        keyframe_store: KeyframeStore | None = None,
        store: EventStore | None = None,
        jpeg_quality: int = 80,
        start: bool = True,
        on_written: Callable[[list[IncidentRecord]], object] | None = None,
    ) -> None:
        """``on_written``: called with each batch's incident records once they are in the database (the
        outbound outbox enqueues their messages there); a transient database error it raises keeps the
        batch spooled for a replay, any other is logged and the batch counts as written."""
        self.config = sink
        self._on_written = on_written
        self.keyframes = keyframe_store or KeyframeStore(sink.keyframe_dir, jpeg_quality)
        self.store = store or EventStore(sink.database_url)
        self.spool = Spool(sink.spool_dir, sink.spool_max_events)
        self._memory: deque[str] = deque()
        self._memory_cap = max(1000, sink.batch_size * 8)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._db_up: bool | None = None
        self._migrated = False
        self._backoff_s = 0.0
        self._next_try = 0.0
        self._counters = {
            "submitted": 0,
            "written": 0,
            "failures": 0,
            "rejected": 0,
            "incidents_submitted": 0,
            "incidents_written": 0,
            "keyframe_failures": 0,
        }
        self._last_error: str | None = None
        self._keyframes_failing = False
        self._keyframe_error: str | None = None
        self._keyframe_failed_at: datetime | None = None
        self._last_write_at: datetime | None = None
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="trtseg-event-sink", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ intake
    def submit(self, records: Sequence[Record]) -> int:
        """Write key frames and queue the rows (events and incidents, in order); RecordError for bad
        records (naming the field), SpoolFull when full. Nothing is written unless all records are good."""
        now = datetime.now(UTC)
        for record in records:  # refuse bad input before anything is written
            if isinstance(record, IncidentRecord):
                incident_to_row(record, now.replace(tzinfo=None))
            else:
                record_to_row(record, now)
        with self._lock:
            if self._to_spool():
                self.spool.ensure_room(len(self._memory) + len(records))  # refuse before writing files
        payloads = [
            (self._store_incident_keyframes(r) if isinstance(r, IncidentRecord) else self._store_keyframes(r)).to_json()
            for r in records
        ]
        incidents = sum(isinstance(r, IncidentRecord) for r in records)
        with self._lock:
            if self._to_spool() or len(self._memory) + len(payloads) > self._memory_cap:
                self.spool.put([*self._memory, *payloads])  # older rows first: order is kept
                self._memory.clear()
            else:
                self._memory.extend(payloads)
            self._counters["submitted"] += len(payloads)
            self._counters["incidents_submitted"] += incidents
            pending = len(self._memory)
        if pending >= self.config.batch_size or (self.config.durable_submit and self._db_up):
            self._wake.set()
        return len(payloads)

    def _to_spool(self) -> bool:
        return self.config.durable_submit or self._db_up is False or len(self.spool) > 0

    def _save_keyframes(
        self, site: str, camera_id: str, day: date, name: str, jpegs: dict[str, bytes | np.ndarray | None]
    ) -> dict[str, str]:
        """Write each picture on its own; one the disk refuses (``OSError``) is logged, counted and left out."""
        saved: dict[str, str] = {}
        for kind, data in jpegs.items():
            try:
                written = self.keyframes.save(site, camera_id, day, name, {kind: data})
            except OSError as error:
                self._keyframe_failed(name, kind, error)
                continue
            if written and self._keyframes_failing:
                with self._lock:
                    self._keyframes_failing = False
                logger.warning("key frames are written again after failures=%d", self._counters["keyframe_failures"])
            saved.update(written)
        return saved

    def _keyframe_failed(self, name: str, kind: str, error: OSError) -> None:
        text = f"{type(error).__name__}: {error}"[:300]
        with self._lock:
            self._counters["keyframe_failures"] += 1
            failures = self._counters["keyframe_failures"]
            self._keyframes_failing = True
            self._keyframe_error = text
            self._keyframe_failed_at = datetime.now(UTC)
        if failures == 1 or failures % KEYFRAME_LOG_EVERY == 0:
            logger.error(
                "key frame not written, the record is stored without it id=%s kind=%s failures=%d error=%s",
                name,
                kind,
                failures,
                text,
                extra={"keyframe_failures": failures},
            )

    def _store_keyframes(self, record: EventRecord) -> EventRecord:
        paths = self._save_keyframes(
            record.site,
            record.camera_id,
            as_utc(record.started_at).date(),  # type: ignore[union-attr]
            record.event_id,
            {"raw": record.keyframe_raw_jpeg, "annotated": record.keyframe_annotated_jpeg},
        )
        return replace(
            record,
            keyframe_raw_jpeg=None,
            keyframe_annotated_jpeg=None,
            keyframe_raw_path=paths.get("raw", record.keyframe_raw_path),
            keyframe_annotated_path=paths.get("annotated", record.keyframe_annotated_path),
        )

    def _store_incident_keyframes(self, record: IncidentRecord) -> IncidentRecord:
        """Write each stage's pictures as ``<incident_id>-<stage>`` and keep their paths, not the bytes."""
        paths = {stage: dict(kinds) for stage, kinds in record.keyframe_paths.items()}
        day = as_utc(record.started_at).date()  # type: ignore[union-attr]
        for stage, jpegs in record.keyframes.items():
            saved = self._save_keyframes(
                record.site, record.camera_id, day, f"{record.incident_id}-{stage}", dict(jpegs)
            )
            if saved:
                paths.setdefault(stage, {}).update(saved)
        return replace(record, keyframes={}, keyframe_paths=paths)

    def open_incidents(self, camera_id: str) -> list[IncidentRecord]:
        """The camera's open incidents, for its analytics to resume from after a restart.

        Writes what waits first, so records still queued here are in what is read; raises when the
        database cannot be read (the caller retries: resuming from partial data would duplicate
        incidents).
        """
        self.flush()
        return self.store.incidents.open_for_camera(camera_id)

    # ------------------------------------------------------------------ output
    def flush(self) -> int:
        """Write everything waiting now (spool first, then memory); returns rows written."""
        written = 0
        with self._flush_lock:
            try:
                if not self._migrated:
                    self.store.migrate()
                    self._migrated = True
                while entries := self.spool.peek(self.config.batch_size):
                    written += self._write([payload for _, payload in entries])
                    self.spool.ack(entries[-1][0])
                while True:
                    with self._lock:
                        if not self._memory:
                            break
                        batch = [self._memory.popleft() for _ in range(min(self.config.batch_size, len(self._memory)))]
                    try:
                        written += self._write(batch)
                    except BaseException:
                        with self._lock:
                            self._memory.extendleft(reversed(batch))
                        raise
            except Exception as exc:
                self._mark_down(exc)
                return written
            self._mark_up()
        return written

    def _write(self, payloads: list[str]) -> int:
        """Upsert one batch (one transaction, one statement per table); bad rows are isolated and
        rejected, transient errors propagate."""
        records: list[tuple[str, Record]] = []
        for payload in payloads:
            try:
                record: Record = (
                    IncidentRecord.from_json(payload)
                    if is_incident_payload(payload)
                    else EventRecord.from_json(payload)
                )
                records.append((payload, record))
            except Exception as exc:
                self._reject(payload, exc)
        try:
            self._write_records([r for _, r in records])
            done = [r for _, r in records]
        except Exception as exc:
            if is_transient(exc):
                raise
            done = []
            for payload, record in records:
                try:
                    self._write_records([record])
                    done.append(record)
                except Exception as row_exc:
                    if is_transient(row_exc):
                        raise
                    self._reject(payload, row_exc)
        self._notify([r for r in done if isinstance(r, IncidentRecord)])
        written = len(done)
        with self._lock:
            self._counters["written"] += written
            self._counters["incidents_written"] += sum(isinstance(r, IncidentRecord) for r in done)
            self._last_write_at = datetime.now(UTC)
        return written

    def _notify(self, incidents: list[IncidentRecord]) -> None:
        if not incidents or self._on_written is None:
            return
        try:
            self._on_written(incidents)
        except Exception as exc:
            if is_transient(exc):
                raise  # the batch stays spooled; its upserts and enqueues are idempotent on replay
            with self._lock:
                self._counters["notify_failures"] = self._counters.get("notify_failures", 0) + 1
            logger.exception("outbound enqueue failed count=%d error=%s", len(incidents), _describe(exc))

    def _write_records(self, records: list[Record]) -> None:
        incidents = [r for r in records if isinstance(r, IncidentRecord)]
        events = [r for r in records if not isinstance(r, IncidentRecord)]
        self.store.write_batch(events, incidents)

    def _reject(self, payload: str, exc: BaseException) -> None:
        """Keep a row the database will never take, with the reason, out of the queue."""
        line = json.dumps({"error": _describe(exc), "payload": payload, "at": datetime.now(UTC).isoformat()})
        path = self.spool.directory / "rejected.jsonl"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with self._lock:
            self._counters["rejected"] += 1
        kind = "incident" if '"record":"incident"' in payload else "event"
        logger.error("%s rejected by the database path=%s error=%s", kind, path, _describe(exc))

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            was_up = self._db_up is not False
            self._db_up, self._migrated = False, False
            self._counters["failures"] += 1
            self._last_error = _describe(exc)
            self._backoff_s = min(self.config.retry_max_s, max(MIN_RETRY_S, self._backoff_s * 2))
            self._next_try = time.monotonic() + self._backoff_s
            moved = list(self._memory)
            if moved:
                try:
                    self.spool.put(moved)
                    self._memory.clear()
                except SpoolFull:
                    pass  # they stay in memory (bounded) and are written when the database returns
            backlog = len(self.spool) + len(self._memory)
        log = logger.error if was_up else logger.warning
        log(
            "database unavailable, spooling error=%s backlog=%d retry_in_s=%.1f",
            _describe(exc),
            backlog,
            self._backoff_s,
        )

    def _mark_up(self) -> None:
        with self._lock:
            if self._db_up is False:
                logger.info("database back, spool drained written_total=%d", self._counters["written"])
            self._db_up, self._backoff_s, self._next_try = True, 0.0, 0.0

    # ------------------------------------------------------------------ lifecycle
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                down = self._db_up is False
                wait = max(0.0, self._next_try - time.monotonic()) if down else self.config.flush_interval_s
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                if self._db_up is False and time.monotonic() < self._next_try:
                    continue
            try:
                self.flush()
            except Exception:  # flush handles its own errors; this keeps the thread alive regardless
                logger.exception("event sink flush crashed")

    @property
    def keyframe_failures(self) -> int:
        """Key frame pictures not written so far (disk full, unwritable)."""
        with self._lock:
            return self._counters["keyframe_failures"]

    def stats(self) -> dict[str, Any]:
        """Counters and state for health pages: written, backlog, failures, last error, db_up, and the key
        frames (``keyframe_failures``, ``keyframes`` 'ok' or 'failing', the last error and when)."""
        with self._lock:
            return {
                **self._counters,
                "backlog": len(self.spool) + len(self._memory),
                "spooled": len(self.spool),
                "pending_memory": len(self._memory),
                "refused": self.spool.refused,
                "db_up": self._db_up,
                "last_error": self._last_error,
                "last_write_at": None if self._last_write_at is None else self._last_write_at.isoformat(),
                "retry_in_s": round(max(0.0, self._next_try - time.monotonic()), 3) if self._db_up is False else 0.0,
                "keyframes": "failing" if self._keyframes_failing else "ok",
                "keyframe_last_error": self._keyframe_error,
                "keyframe_last_failure_at": None
                if self._keyframe_failed_at is None
                else self._keyframe_failed_at.isoformat(),
            }

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop the thread, write what can be written, spool the rest; nothing waiting is lost."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._db_up is not False:
            self.flush()
        with self._lock:
            if self._memory:
                with contextlib.suppress(SpoolFull):
                    self.spool.put(list(self._memory))
                    self._memory.clear()
            left = len(self._memory)
        if left:
            logger.error("event sink closed with rows it could neither write nor spool count=%d", left)
        self.spool.close()
        self.store.close()
