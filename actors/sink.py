"""The one event sink actor: EventSink (database, spool and key frames) behind Ray calls.

EventSink runs its own flush thread; the actor is threaded (a few concurrent calls) so a slow
database write never stops cameras from handing over events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import ray

from actors.common import identity
from trtseg.analytics.records import KEYFRAME_STAGES, IncidentRecord
from trtseg.config import SinkConfig
from trtseg.config.outbound import OutboundConfig
from trtseg.db import EventStore
from trtseg.db.webhooks import WebhookStore
from trtseg.events import EventRecord
from trtseg.keyframes import KeyframePathError
from trtseg.metrics import EvidenceMetrics
from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.outbox import OutboxStore
from trtseg.sink import EventSink

logger = logging.getLogger(__name__)

KEYFRAME_KINDS = ("raw", "annotated")


@ray.remote
class SinkActor:
    """Receives EventRecords and IncidentRecords from every camera's pusher and stores them durably."""

    def __init__(
        self,
        sink: SinkConfig,
        jpeg_quality: int = 80,
        outbound: OutboundConfig | None = None,
        cluster_ports: Iterable[int] = (),
    ) -> None:
        self._identity = identity("sink", "sink")
        self.dispatcher = _dispatcher(sink, outbound, cluster_ports)
        self.sink = EventSink(
            sink,
            jpeg_quality=jpeg_quality,
            on_written=None if self.dispatcher is None else self.dispatcher.enqueue,
        )
        self._closed = False
        self._keyframe_failures = 0  # already counted in the metric
        self._metric_lock = threading.Lock()

    def submit(self, records: list[EventRecord | IncidentRecord]) -> int:
        """Queue records (key frames written at once; one the disk refuses is counted and left out); raises
        for bad records or a full spool."""
        try:
            return self.sink.submit(records)
        finally:
            with self._metric_lock:  # concurrent submits: each failure is counted once
                total = self.sink.keyframe_failures
                added, self._keyframe_failures = total - self._keyframe_failures, total
            if added > 0:
                EvidenceMetrics.keyframe_failures(added)

    def open_incidents(self, camera_id: str) -> list[IncidentRecord]:
        """The camera's open incidents (what its analytics resume from); raises while the database is down."""
        return self.sink.open_incidents(camera_id)

    def flush(self) -> int:
        return self.sink.flush()

    def read_keyframe(self, event_id: str, kind: str) -> bytes | None:
        """JPEG bytes of an event's key frame ('raw' or 'annotated'); None when there is none."""
        if kind not in KEYFRAME_KINDS:
            raise ValueError(f"kind must be one of {', '.join(KEYFRAME_KINDS)}, got {kind!r}")
        event = self.sink.store.get(event_id)
        if event is None:
            return None
        relative = getattr(event, f"keyframe_{kind}_path", None)
        if not relative:
            return None
        try:
            return self.sink.keyframes.read(relative)
        except (FileNotFoundError, KeyframePathError) as error:
            logger.warning("key frame unreadable event_id=%s kind=%s error=%s", event_id, kind, error)
            return None

    def read_incident_keyframe(self, incident_id: str, stage: str, kind: str) -> bytes | None:
        """JPEG bytes of an incident's key frame at a stage ('open', 'alert', 'close'); None when there is none."""
        if stage not in KEYFRAME_STAGES:
            raise ValueError(f"stage must be one of {', '.join(KEYFRAME_STAGES)}, got {stage!r}")
        if kind not in KEYFRAME_KINDS:
            raise ValueError(f"kind must be one of {', '.join(KEYFRAME_KINDS)}, got {kind!r}")
        incident = self.sink.store.incidents.get(incident_id)
        relative = None if incident is None else incident.keyframe_paths.get(stage, {}).get(kind)
        if not relative:
            return None
        try:
            return self.sink.keyframes.read(relative)
        except (FileNotFoundError, KeyframePathError) as error:
            logger.warning(
                "key frame unreadable incident_id=%s stage=%s kind=%s error=%s", incident_id, stage, kind, error
            )
            return None

    def ping(self) -> dict[str, Any]:
        return self._identity

    def stats(self) -> dict[str, Any]:
        """The sink's figures and its state: 'degraded' while the database is down (rows spooled), 'ready'
        otherwise; key frames that fail (``keyframes: failing``) show here without changing it."""
        figures = self.sink.stats()
        state = "closed" if self._closed else ("degraded" if figures.get("db_up") is False else "ready")
        if self.dispatcher is not None:
            figures["outbound"] = self.dispatcher.stats()
        return {**figures, "state": state}

    def publish_zone_counts(self, camera_id: str, counts: dict[str, int]) -> int:
        """Live objects per zone of one camera to MQTT (retained); 0 without a broker."""
        return 0 if self.dispatcher is None else self.dispatcher.publish_zone_counts(camera_id, counts)

    def close(self) -> dict[str, Any]:
        """Write or spool everything waiting; nothing is lost."""
        if not self._closed:
            self._closed = True
            self.sink.close()
            if self.dispatcher is not None:
                self.dispatcher.stop()  # undelivered messages stay in the outbox for the next start
        return self.sink.stats()


def _dispatcher(sink: SinkConfig, outbound: OutboundConfig | None, ports: Iterable[int]) -> OutboundDispatcher | None:
    """The outbox's dispatcher on the sink's database, whenever an outbound section is given: besides the
    configured MQTT broker and webhooks, it runs the webhooks set through the API (the ``webhooks`` table,
    read again every few seconds, so an added, changed or deleted one needs no restart)."""
    if outbound is None:
        return None
    store = EventStore(sink.database_url)
    try:
        store.migrate()  # the deliveries and webhooks tables
    except Exception as exc:  # the database is down: the sink spools, the dispatcher's lanes wait for it
        logger.warning("outbound tables not migrated yet error=%s", type(exc).__name__)
    hooks = WebhookStore(store.engine)
    return OutboundDispatcher(
        OutboxStore(store.engine, outbound), extra_blocked_ports=ports, webhook_source=hooks.configs
    ).start()
