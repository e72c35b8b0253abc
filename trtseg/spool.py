"""A bounded, durable, ordered on-disk queue: where records (events and incidents) wait while the database is down.

One SQLite file in ``SinkConfig.spool_dir`` (synchronous=FULL, so a committed put is on disk),
rows in insertion order. Readers ``peek`` a batch and ``ack`` it only after the database took it,
so a crash between the two replays the batch (harmless: upserts are idempotent). When the bound
is reached ``put`` refuses the whole batch with SpoolFull, logs it and counts it: never a silent drop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SPOOL_FILE = "events-spool.sqlite3"


class SpoolFull(RuntimeError):
    """The spool holds its maximum number of events; new ones are refused, not dropped."""


class Spool:
    """Durable FIFO of text payloads (one JSON record each: an event, or an incident marked as one); thread-safe."""

    def __init__(self, directory: Path | str, max_events: int) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / SPOOL_FILE
        self._owner = self._take_ownership()
        self.max_events = max_events
        self.refused = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)"
        )
        self._count = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
        if self._count:
            logger.info("spool reopened path=%s backlog=%d", self.path, self._count)

    def _take_ownership(self) -> int:
        """One writer per spool: a second process on the same directory would corrupt the count."""
        fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            message = f"spool {self.directory} is in use by another sink; give each sink its own spool_dir"
            raise RuntimeError(message) from None
        return fd

    def __len__(self) -> int:
        return self._count

    def put(self, payloads: Sequence[str]) -> None:
        """Append all payloads in one durable transaction, or none (SpoolFull)."""
        if not payloads:
            return
        with self._lock:
            self._ensure_room(len(payloads))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO spool (payload) VALUES (?)", [(p,) for p in payloads])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(payloads)

    def ensure_room(self, count: int) -> None:
        """Raise SpoolFull (logged and counted as refused) unless ``count`` more events fit now."""
        with self._lock:
            self._ensure_room(count)

    def _ensure_room(self, count: int) -> None:
        if self._count + count > self.max_events:
            self.refused += count
            logger.error(
                "spool full, events refused path=%s backlog=%d max=%d refused_now=%d refused_total=%d",
                self.path,
                self._count,
                self.max_events,
                count,
                self.refused,
            )
            raise SpoolFull(f"event spool is full ({self._count} of {self.max_events}); {count} events refused")

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` entries as (seq, payload), left in place until ``ack``."""
        with self._lock:
            return list(self._db.execute("SELECT seq, payload FROM spool ORDER BY seq LIMIT ?", (int(limit),)))

    def ack(self, up_to_seq: int) -> int:
        """Remove every entry with seq <= ``up_to_seq`` (they are in the database now)."""
        with self._lock:
            removed = self._db.execute("DELETE FROM spool WHERE seq <= ?", (int(up_to_seq),)).rowcount
            self._count = max(0, self._count - removed)
            return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._owner >= 0:
                os.close(self._owner)  # releases the flock
                self._owner = -1
