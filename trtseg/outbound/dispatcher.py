"""OutboundDispatcher: drains the delivery outbox to the MQTT broker and the webhook receivers.

One lane (a thread) per target, so a receiver that is slow or down delays only its own messages. A
lane claims the target's due rows, sends them and marks each delivered or failed (backoff). A broker
that is down costs no attempts: the MQTT lane waits for the connection. Nothing is held only in
memory: a dispatcher that stops or dies leaves its rows pending in the database (claimed ones come
back when their lease ends) and the next dispatcher, here or on another node, sends them.

Webhooks set through the API (``webhook_source``, the ``webhooks`` table) are read again every
``refresh_s``: a new one gets a lane, a changed one a fresh lane (its pending rows go to the new
URL), a deleted one loses its lane and its pending rows are cancelled. The configuration file's
webhooks win a name both use.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from trtseg.config.outbound import OutboundConfig, WebhookConfig
from trtseg.outbound.lanes import Lane, MqttLane, WebhookLane
from trtseg.outbound.mqtt import MqttPublisher
from trtseg.outbound.outbox import EnqueueResult, OutboxStore
from trtseg.outbound.urlguard import GuardPolicy, Resolver, policy_from_config
from trtseg.outbound.webhooks import WebhookSender

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
COUNTS_EVERY_S = 2.0
REFRESH_S = 2.0


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
        webhook_source: Callable[[], list[WebhookConfig]] | None = None,
        refresh_s: float = REFRESH_S,
    ) -> None:
        """``webhook_source``: the webhooks set through the API (``WebhookStore.configs``), read every
        ``refresh_s``; None: only the configuration's targets."""
        self.outbox = outbox
        self.config = config or outbox.config
        self.policy = policy or policy_from_config(self.config, extra_blocked_ports)
        self.token = f"{socket.gethostname()[:16]}-{secrets.token_hex(6)}"  # marks this dispatcher's claims
        self.stopping = threading.Event()
        self.publisher: MqttPublisher | None = None
        self.lanes: list[Lane] = []
        if self.config.mqtt is not None:
            self.publisher = mqtt_factory(self.config.mqtt)
            self.lanes.append(MqttLane(self, self.publisher))
        for hook in self.config.webhooks:
            self.lanes.append(WebhookLane(self, WebhookSender(hook, self.policy, resolver=resolver)))
        self._resolver = resolver
        self._webhook_source = webhook_source
        self._refresh_s = refresh_s
        self._added: dict[str, tuple[WebhookConfig, WebhookLane]] = {}  # name -> (its config, its lane)
        self._lanes_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refresher = threading.Thread(target=self._refresh_loop, name="trtseg-outbound-webhooks", daemon=True)
        self.refresh_error: str | None = None
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
        if self._webhook_source is not None:
            self.refresh()  # the stored webhooks from the start (a database that is down: the thread retries)
            self._refresher.start()
        targets = ",".join(lane.target for lane in self._lanes())
        logger.info("outbound dispatcher started targets=%s", targets or "-")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the lanes (a request in flight finishes or times out), then disconnect."""
        self.stopping.set()
        if self._refresher.is_alive():
            self._refresher.join(timeout_s)
        lanes = self._lanes()
        for lane in lanes:
            lane.halt.set()
            lane.wake.set()
        deadline = time.monotonic() + timeout_s
        for lane in lanes:
            if lane.thread.is_alive():
                lane.thread.join(max(0.1, deadline - time.monotonic()))
        for lane in lanes:
            lane.close()
        logger.info("outbound dispatcher stopped")

    def wake(self) -> None:
        """Look for due deliveries now (after an enqueue in this process)."""
        for lane in self._lanes():
            lane.wake.set()

    def _lanes(self) -> list[Lane]:
        with self._lanes_lock:
            return list(self.lanes)

    # ------------------------------------------------------------------ webhooks set through the API
    def _refresh_loop(self) -> None:
        while not self.stopping.wait(self._refresh_s):
            self.refresh()

    def refresh(self) -> dict[str, list[str]]:
        """Bring the API's webhooks' lanes and targets in line with ``webhook_source``; returns the names
        added, changed and removed. A source that fails (database down) changes nothing."""
        assert self._webhook_source is not None
        with self._refresh_lock:
            return self._refresh(self._webhook_source)

    def _refresh(self, source: Callable[[], list[WebhookConfig]]) -> dict[str, list[str]]:
        try:
            stored = source()
        except Exception as exc:
            if self.refresh_error is None:
                logger.warning("outbound webhooks not read error=%s", type(exc).__name__)
            self.refresh_error = type(exc).__name__
            return {"added": [], "changed": [], "removed": []}
        self.refresh_error = None
        configured = {hook.name for hook in self.config.webhooks}
        wanted = {hook.name: hook for hook in stored if hook.name not in configured}
        gone = [name for name in self._added if name not in wanted]
        changed = [name for name, hook in wanted.items() if name in self._added and self._added[name][0] != hook]
        new = [name for name in wanted if name not in self._added]
        if not (gone or changed or new):
            return {"added": [], "changed": [], "removed": []}
        # No enqueue for a deleted webhook runs once this returns; then its stragglers are cancelled.
        self.outbox.set_added_targets({hook.target: hook for hook in wanted.values()})
        for name in gone:
            cancelled = self.outbox.cancel(f"webhook:{name}")
            logger.info("outbound webhook removed name=%s cancelled=%d", name, cancelled)
        for name in gone + changed:
            self._stop_lane(self._added.pop(name)[1])
        for name in changed + new:
            hook = wanted[name]
            lane = WebhookLane(self, WebhookSender(hook, self.policy, resolver=self._resolver), source="api")
            self._added[name] = (hook, lane)
            with self._lanes_lock:
                self.lanes.append(lane)
            if self._started and not self.stopping.is_set():
                lane.thread.start()
            logger.info(
                "outbound webhook %s name=%s url=%s",
                "changed" if name in changed else "added",
                name,
                lane.sender.shown_url(),
            )
        return {"added": new, "changed": changed, "removed": gone}

    def _stop_lane(self, lane: WebhookLane) -> None:
        """End one lane: a request in flight finishes or times out first."""
        with self._lanes_lock:
            self.lanes.remove(lane)
        lane.halt.set()
        lane.wake.set()
        if lane.thread.is_alive():
            lane.thread.join(lane.sender.config.timeout_s + 5.0)
        lane.close()

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
        lanes = self._lanes()
        for lane in lanes:
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
            if isinstance(lane, MqttLane):
                entry["connected"] = lane.publisher.connected
                entry["broker"] = lane.publisher.stats()
            targets[lane.target] = entry
        return {
            "enabled": bool(lanes),
            "webhooks_error": self.refresh_error,  # the API's webhooks could not be read (kept as they were)
            "db_up": db_up,
            "broker_connected": None if self.publisher is None else self.publisher.connected,
            # This process's figures since it started (the outbox rows are the durable truth).
            "enqueued": self.outbox.counters["enqueued"],
            "suppressed": self.outbox.counters["suppressed"],
            "filtered": self.outbox.counters["filtered"],
            "targets": targets,
        }
