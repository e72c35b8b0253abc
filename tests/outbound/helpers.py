"""Incident records and outbox set-ups for the outbound tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.db.incident_helpers import incident
from trtseg.analytics.records import IncidentRecord
from trtseg.config.outbound import OutboundConfig
from trtseg.db.url import create_engine, normalise_url
from trtseg.outbound.outbox import OutboxStore

T0 = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


def record(incident_id: str = "inc1", started: datetime = T0, seen_s: float = 0.0, **fields: Any) -> IncidentRecord:
    """A presence incident's record (``tests.db.incident_helpers.incident`` under the outbound tests' rule,
    without trajectory, details or instance); stage via ``keyframe_paths``."""
    values: dict[str, Any] = {"rule": "flying_lead", "trajectory": [], "details": {}, "instance": None}
    values.update(fields)
    return incident(incident_id, started, seen_s, **values)


def paths(incident_id: str, stage: str) -> dict[str, dict[str, str]]:
    return {stage: {k: f"block-7/cam1/2026-11-20/{incident_id}-{stage}_{k}.jpg" for k in ("raw", "annotated")}}


def lifecycle(incident_id: str = "inc1", started: datetime = T0, **fields: Any) -> list[IncidentRecord]:
    """open (stage 'open'), refresh, escalation (stage 'alert'), refresh, close (stage 'close')."""
    first = record(incident_id, started, keyframe_paths=paths(incident_id, "open"), **fields)
    refresh = replace(first, last_seen_at=started + timedelta(seconds=2), keyframe_paths={})
    alert = replace(
        refresh,
        last_seen_at=started + timedelta(seconds=4),
        severity="alert",
        escalated_at=started + timedelta(seconds=4),
        result="danger: 62 % of charging_cable outside building_safe_zone",
        keyframe_paths=paths(incident_id, "alert"),
    )
    later = replace(alert, last_seen_at=started + timedelta(seconds=6), keyframe_paths={})
    close = replace(
        later, status="closed", ended_at=started + timedelta(seconds=8), keyframe_paths=paths(incident_id, "close")
    )
    return [first, refresh, alert, later, close]


def outbound_config(**fields: Any) -> OutboundConfig:
    values: dict[str, Any] = {"allow_loopback": True, "public_base_url": "https://nvr.example.com"}
    values.update(fields)
    return OutboundConfig.model_validate(values)


def make_outbox(where: Path | str, config: OutboundConfig, name: str = "outbox.db") -> OutboxStore:
    """An OutboxStore (its table created) on a database URL, or on a SQLite file in a directory."""
    url = where if isinstance(where, str) else f"sqlite:///{where / name}"
    engine = create_engine(normalise_url(url))
    store = OutboxStore(engine, config)
    store.ensure_table()
    return store
