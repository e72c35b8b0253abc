"""Delivery lanes: one thread per target that claims its due outbox rows, sends them and marks each.

A lane's loop runs until its ``halt`` is set (the dispatcher stops, or the webhook set through the
API was changed or deleted). A database that is down, or a target in trouble, makes the lane wait
(doubling, capped), never spin; rows it claimed and did not mark come back when their lease ends.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trtseg.outbound.mqtt import MqttPublisher
from trtseg.outbound.outbox import Delivery, backoff_s, utcnow
from trtseg.outbound.webhooks import WebhookSender

if TYPE_CHECKING:
    from trtseg.outbound.dispatcher import OutboundDispatcher

logger = logging.getLogger("trtseg.outbound.dispatcher")  # one logger name for the whole delivery path

DB_RETRY_MAX_S = 30.0


@dataclass
class LaneStats:
    delivered: int = 0
    attempts_failed: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_delivered_at: datetime | None = None
    latency_ms_last: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Lane:
    """One target's loop. ``deliver`` sends a batch and returns per row (ok, error, retry_after_s)."""

    def __init__(self, dispatcher: OutboundDispatcher, target: str) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.stats = LaneStats()
        self.wake = threading.Event()
        self.halt = threading.Event()  # this lane stops (the dispatcher stops, or its webhook went)
        self.thread = threading.Thread(target=self._run, name=f"trtseg-outbound-{target}", daemon=True)
        self._db_wait_s = 0.0
        self._fail_streak = 0

    def ready(self) -> bool:
        return True

    def deliver(self, batch: list[Delivery]) -> list[tuple[bool, str | None, float | None]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _run(self) -> None:
        d = self.dispatcher
        retry = d.config.retry
        while not self.halt.is_set():
            if not self.ready():
                self.wake.wait(retry.poll_interval_s)
                self.wake.clear()
                continue
            try:
                batch = d.outbox.claim_due(self.target, retry.batch_size, token=d.token)
            except Exception as exc:  # the database is down: wait and try again, rows stay where they are
                self._db_down(exc)
                continue
            self._db_wait_s = 0.0
            if not batch:
                self.wake.wait(retry.poll_interval_s)
                self.wake.clear()
                continue
            try:
                failed = self._handle(batch)
            except Exception as exc:
                self._db_down(exc)  # unmarked rows come back after their lease: at least once
                continue
            # A target in trouble is probed with one message per backoff step, not flooded.
            self._fail_streak = self._fail_streak + 1 if failed else 0
            if failed:
                self.halt.wait(backoff_s(self._fail_streak, retry))

    def _handle(self, batch: list[Delivery]) -> bool:
        """Send and mark one batch; True when an attempt failed."""
        d = self.dispatcher
        outcomes = self.deliver(batch)
        delivered = [row.id for row, (ok, _, _) in zip(batch, outcomes, strict=True) if ok]
        untried = [row.id for row, (ok, error, _) in zip(batch, outcomes, strict=True) if not ok and error is None]
        d.outbox.mark_delivered(delivered)
        d.outbox.release(untried)
        now = utcnow()
        failed = False
        if delivered:
            self.stats.delivered += len(delivered)
            self.stats.last_delivered_at = now
        for row, (ok, error, retry_after) in zip(batch, outcomes, strict=True):
            if ok or error is None:
                continue
            failed = True
            self.stats.attempts_failed += 1
            self.stats.last_error, self.stats.last_error_at = error, now
            state = d.outbox.mark_failed(row.id, error, retry_after_s=retry_after)
            logger.info(
                "outbound attempt failed target=%s key=%s attempt=%d state=%s error=%s",
                self.target,
                row.idempotency_key,
                row.attempts + 1,
                state,
                error,
            )
        return failed

    def _db_down(self, exc: BaseException) -> None:
        self._db_wait_s = min(DB_RETRY_MAX_S, max(0.5, self._db_wait_s * 2))
        self.stats.last_error = f"outbox database: {type(exc).__name__}"
        logger.warning(
            "outbound outbox unavailable target=%s error=%s retry_in_s=%.1f",
            self.target,
            type(exc).__name__,
            self._db_wait_s,
        )
        self.halt.wait(self._db_wait_s)


class MqttLane(Lane):
    def __init__(self, dispatcher: OutboundDispatcher, publisher: MqttPublisher) -> None:
        super().__init__(dispatcher, "mqtt")
        self.publisher = publisher

    def ready(self) -> bool:
        return self.publisher.connected

    def deliver(self, batch: list[Delivery]) -> list[tuple[bool, str | None, float | None]]:
        items = [(self.publisher.incident_topic(row.camera_id), row.payload, False) for row in batch]
        errors = self.publisher.publish_many(items)
        connected = self.publisher.connected
        # Lost connection mid-batch: the unacknowledged go back untried (the broker's outage is not theirs).
        return [(error is None, None if (error is not None and not connected) else error, None) for error in errors]

    def close(self) -> None:
        self.publisher.stop()


class WebhookLane(Lane):
    def __init__(self, dispatcher: OutboundDispatcher, sender: WebhookSender, source: str = "config") -> None:
        super().__init__(dispatcher, sender.target)
        self.sender = sender
        self.stats.extra["url"] = sender.shown_url()
        self.stats.extra["source"] = source  # 'config' (the YAML) or 'api' (the webhooks table)

    def deliver(self, batch: list[Delivery]) -> list[tuple[bool, str | None, float | None]]:
        outcomes: list[tuple[bool, str | None, float | None]] = []
        for i, row in enumerate(batch):
            result = self.sender.send(row.payload, row.idempotency_key, row.kind)
            self.stats.latency_ms_last = result.elapsed_s * 1000.0
            outcomes.append((result.ok, None if result.ok else (result.error or "failed"), result.retry_after_s))
            if not result.ok:
                # The receiver is in trouble: the rest of the batch goes back untried, to be sent in order.
                outcomes += [(False, None, None)] * (len(batch) - i - 1)
                break
            if self.halt.is_set():
                outcomes += [(False, None, None)] * (len(batch) - i - 1)
                break
        return outcomes

    def close(self) -> None:
        self.sender.close()
