"""OutboundDispatcher: drains the delivery outbox to the MQTT broker and the webhook receivers.

One lane (a thread) per target, so a receiver that is slow or down delays only its own messages. A
lane claims the target's due rows, sends them and marks each delivered or failed (backoff). A broker
that is down costs no attempts: the MQTT lane waits for the connection. Nothing is held only in
memory: a dispatcher that stops or dies leaves its rows pending in the database (claimed ones come
back when their lease ends) and the next dispatcher, here or on another node, sends them.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trtseg.config.outbound import OutboundConfig
from trtseg.outbound.mqtt import MqttPublisher
from trtseg.outbound.outbox import Delivery, EnqueueResult, OutboxStore, backoff_s, utcnow
from trtseg.outbound.urlguard import GuardPolicy, Resolver, policy_from_config
from trtseg.outbound.webhooks import WebhookSender

logger = logging.getLogger(__name__)

DB_RETRY_MAX_S = 30.0
PRUNE_EVERY_S = 3600.0
COUNTS_EVERY_S = 2.0


@dataclass
class LaneStats:
    delivered: int = 0
    attempts_failed: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_delivered_at: datetime | None = None
    latency_ms_last: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Lane:
    """One target's loop. ``deliver`` sends a batch and returns per row (ok, error, retry_after_s)."""

    def __init__(self, dispatcher: OutboundDispatcher, target: str) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.stats = LaneStats()
        self.wake = threading.Event()
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
        while not d.stopping.is_set():
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
                d.stopping.wait(backoff_s(self._fail_streak, retry))

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
        self.dispatcher.stopping.wait(self._db_wait_s)


class _MqttLane(_Lane):
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


class _WebhookLane(_Lane):
    def __init__(self, dispatcher: OutboundDispatcher, sender: WebhookSender) -> None:
        super().__init__(dispatcher, sender.target)
        self.sender = sender
        self.stats.extra["url"] = sender.shown_url()

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
            if self.dispatcher.stopping.is_set():
                outcomes += [(False, None, None)] * (len(batch) - i - 1)
                break
        return outcomes

    def close(self) -> None:
        self.sender.close()


class OutboundDispatcher:
    """Background delivery of the outbox; plain class (the sink's actor or any process may run it)."""

    def __init__(
        self,
        outbox: OutboxStore,
        config: OutboundConfig | None = None,
        *,
        policy: GuardPolicy | None = None,
        extra_blocked_ports: Iterable[int] = (),
        resolver: Resolver = socket.getaddrinfo,
        mqtt_factory: Callable[..., MqttPublisher] = MqttPublisher,
    ) -> None:
        self.outbox = outbox
        self.config = config or outbox.config
        self.policy = policy or policy_from_config(self.config, extra_blocked_ports)
        self.token = f"{socket.gethostname()[:16]}-{secrets.token_hex(6)}"  # marks this dispatcher's claims
        self.stopping = threading.Event()
        self.publisher: MqttPublisher | None = None
        self.lanes: list[_Lane] = []
        if self.config.mqtt is not None:
            self.publisher = mqtt_factory(self.config.mqtt)
            self.lanes.append(_MqttLane(self, self.publisher))
        for hook in self.config.webhooks:
            self.lanes.append(_WebhookLane(self, WebhookSender(hook, self.policy, resolver=resolver)))
        self._zone_counts: dict[tuple[str, str], int] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._counts_at = 0.0
        self._pruned_at = 0.0
        self._started = False

    # ------------------------------------------------------------------ life cycle
    def start(self) -> OutboundDispatcher:
        if self._started:
            return self
        self._started = True
        if self.publisher is not None:
            self.publisher.start()
        for lane in self.lanes:
            lane.thread.start()
        logger.info("outbound dispatcher started targets=%s", ",".join(lane.target for lane in self.lanes) or "-")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the lanes (a request in flight finishes or times out), then disconnect."""
        self.stopping.set()
        for lane in self.lanes:
            lane.wake.set()
        deadline = time.monotonic() + timeout_s
        for lane in self.lanes:
            if lane.thread.is_alive():
                lane.thread.join(max(0.1, deadline - time.monotonic()))
        for lane in self.lanes:
            lane.close()
        logger.info("outbound dispatcher stopped")

    def wake(self) -> None:
        """Look for due deliveries now (after an enqueue in this process)."""
        for lane in self.lanes:
            lane.wake.set()

    # ------------------------------------------------------------------ intake
    def enqueue(self, records: Iterable[Any]) -> EnqueueResult:
        """``OutboxStore.enqueue`` and wake the lanes; raises when the database fails (retry the batch)."""
        result = self.outbox.enqueue(records)
        if result.pending:
            self.wake()
        return result

    def publish_zone_counts(self, camera_id: str, counts: dict[str, int], at: datetime | None = None) -> int:
        """Live zone counts on MQTT (retained), each only when it changed; best effort, not outboxed.
        ``at``: an aware time (default now)."""
        if self.publisher is None or not self.publisher.connected:
            return 0
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
        sent = 0
        for zone, count in counts.items():
            key = (camera_id, zone)
            if self._zone_counts.get(key) == count:
                continue
            body = json.dumps({"camera_id": camera_id, "zone": zone, "count": int(count), "at": stamp})
            retain = bool(self.config.mqtt and self.config.mqtt.retain_zone_counts)
            if self.publisher.publish_nowait(self.publisher.zone_topic(camera_id, zone), body, retain=retain):
                self._zone_counts[key] = count
                sent += 1
        return sent

    # ------------------------------------------------------------------ upkeep and figures
    def maintain(self) -> None:
        """Prune old delivered rows (hourly); called from ``stats`` so no thread of its own is needed."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        try:
            removed = self.outbox.prune()
            if removed:
                logger.info("outbound outbox pruned rows=%d", removed)
        except Exception as exc:
            logger.warning("outbound outbox prune failed error=%s", type(exc).__name__)

    def stats(self) -> dict[str, Any]:
        """For /ready and the metrics: per target pending/delivered/failed/suppressed rows, this
        process's deliveries, the last error (redacted) and, for MQTT, whether the broker is connected."""
        self.maintain()
        db_up = True
        if time.monotonic() - self._counts_at >= COUNTS_EVERY_S:
            try:
                self._counts = self.outbox.counts()
                self._counts_at = time.monotonic()
            except Exception:
                db_up = False
        targets: dict[str, Any] = {}
        for lane in self.lanes:
            rows = self._counts.get(lane.target, {})
            entry: dict[str, Any] = {
                "pending": rows.get("pending", 0),
                "failed": rows.get("failed", 0),
                "delivered": lane.stats.delivered,
                "attempts_failed": lane.stats.attempts_failed,
                "last_error": lane.stats.last_error,
                "last_error_at": lane.stats.last_error_at.isoformat() if lane.stats.last_error_at else None,
                "last_delivered_at": lane.stats.last_delivered_at.isoformat() if lane.stats.last_delivered_at else None,
                "running": lane.thread.is_alive(),
                **lane.stats.extra,
            }
            if isinstance(lane, _MqttLane):
                entry["connected"] = lane.publisher.connected
                entry["broker"] = lane.publisher.stats()
            targets[lane.target] = entry
        return {
            "enabled": bool(self.lanes),
            "db_up": db_up,
            "broker_connected": None if self.publisher is None else self.publisher.connected,
            # This process's figures since it started (the outbox rows are the durable truth).
            "enqueued": self.outbox.counters["enqueued"],
            "suppressed": self.outbox.counters["suppressed"],
            "filtered": self.outbox.counters["filtered"],
            "targets": targets,
        }
