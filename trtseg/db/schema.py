"""The tables (events, incidents, the camera registry), in SQLAlchemy Core: one schema for MySQL/MariaDB and SQLite.

They describe the newest shape; trtseg.db.migrations brings older databases to it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from trtseg.analytics.records import KEYFRAME_STAGES

metadata = sa.MetaData()

# Lengths are checked before writing (trtseg.db.store) so MySQL never truncates silently.
SITE_LEN = 128
CAMERA_LEN = 64
CLASS_LEN = 128
RESULT_LEN = 255
PATH_LEN = 512
EVENT_ID_LEN = 32
# An incident's key frames are stored under f"{incident_id}-{stage}" (at most 64 characters, see
# trtseg.keyframes), so an incident id leaves room for the longest stage suffix ("-close").
INCIDENT_ID_LEN = 48
NAME_LEN = 64  # rule, zone and line names (trtseg.config.analytics.NAME_PATTERN)
RULE_KIND_LEN = 16
SEVERITY_LEN = 16
ACK_BY_LEN = 128
KEYFRAME_KINDS = ("raw", "annotated")  # trtseg.keyframes.KINDS


def keyframe_column(stage: str, kind: str) -> str:
    """Column of one incident key frame's relative path, e.g. ``keyframe_alert_raw_path``."""
    return f"keyframe_{stage}_{kind}_path"


class JsonText(sa.TypeDecorator[Any]):
    """JSON on MySQL/MariaDB, TEXT holding JSON on SQLite (whose JSON affinity would mangle numbers)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.JSON())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "mysql":  # mysql.JSON serialises itself
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "mysql":
            return value
        return json.loads(value)


def _id_type() -> sa.types.TypeEngine[int]:
    """BIGINT auto-increment on MySQL; SQLite auto-increments only INTEGER PRIMARY KEY."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time_type() -> sa.types.TypeEngine[Any]:
    """UTC datetimes with microseconds (MySQL's DATETIME defaults to whole seconds)."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


_MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(EVENT_ID_LEN), nullable=False, unique=True),
    sa.Column("site", sa.String(SITE_LEN), nullable=False),
    sa.Column("camera_id", sa.String(CAMERA_LEN), nullable=False),
    sa.Column("class_name", sa.String(CLASS_LEN), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("started_at", _time_type(), nullable=False),
    sa.Column("ended_at", _time_type(), nullable=True),
    sa.Column("last_seen_at", _time_type(), nullable=False),
    sa.Column("result", sa.String(RESULT_LEN), nullable=False),
    sa.Column("best_confidence", sa.Float(), nullable=False),
    sa.Column("frames_seen", sa.Integer(), nullable=False),
    sa.Column("keyframe_raw_path", sa.String(PATH_LEN), nullable=True),
    sa.Column("keyframe_annotated_path", sa.String(PATH_LEN), nullable=True),
    sa.Column("instances", JsonText(), nullable=True),
    # When retention deleted the key frame files (migration 4); the paths stay, the files are gone.
    sa.Column("keyframes_removed_at", _time_type(), nullable=True),
    sa.Column("created_at", _time_type(), nullable=False),
    sa.Column("updated_at", _time_type(), nullable=False),
    sa.Index("ix_events_started", "started_at", "id"),
    sa.Index("ix_events_site_started", "site", "started_at"),
    sa.Index("ix_events_camera_started", "camera_id", "started_at"),
    sa.Index("ix_events_class_started", "class_name", "started_at"),
    sa.Index("ix_events_status", "status", "event_id"),  # migration 4: open ids for retention, from the index
    **_MYSQL_TABLE,
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(255), nullable=False),
    sa.Column("applied_at", _time_type(), nullable=False),
    **_MYSQL_TABLE,
)

# The camera registry (trtseg.db.cameras): cameras added, changed or removed at run time. One row
# per camera id with its whole configuration; ``removed`` is a tombstone, so a camera of the YAML
# configuration that the operator deleted stays deleted (its ``config`` is then NULL).
cameras = sa.Table(
    "cameras",
    metadata,
    sa.Column("camera_id", sa.String(CAMERA_LEN), primary_key=True, autoincrement=False),
    sa.Column("config", JsonText(), nullable=True),
    sa.Column("removed", sa.Boolean(), nullable=False, default=False),
    sa.Column("updated_at", _time_type(), nullable=False),
    **_MYSQL_TABLE,
)

# Incidents (trtseg.analytics.records.IncidentRecord): one row per tracked object (or zone, for count
# rules) under one rule, upserted forward-only on ``incident_id`` by trtseg.db.incidents. Listings
# filter by any of the indexed columns and page by (started_at, id), like events.
incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.String(INCIDENT_ID_LEN), nullable=False, unique=True),
    sa.Column("site", sa.String(SITE_LEN), nullable=False),
    sa.Column("camera_id", sa.String(CAMERA_LEN), nullable=False),
    sa.Column("rule", sa.String(NAME_LEN), nullable=False),
    sa.Column("rule_kind", sa.String(RULE_KIND_LEN), nullable=False),
    sa.Column("zone", sa.String(NAME_LEN), nullable=True),
    sa.Column("line", sa.String(NAME_LEN), nullable=True),
    sa.Column("track_id", sa.BigInteger(), nullable=True),
    sa.Column("class_name", sa.String(CLASS_LEN), nullable=True),
    sa.Column("severity", sa.String(SEVERITY_LEN), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("result", sa.String(RESULT_LEN), nullable=False),
    sa.Column("started_at", _time_type(), nullable=False),
    sa.Column("last_seen_at", _time_type(), nullable=False),
    sa.Column("ended_at", _time_type(), nullable=True),
    sa.Column("escalated_at", _time_type(), nullable=True),
    sa.Column("confidence", sa.Double(), nullable=False),
    sa.Column("best_confidence", sa.Double(), nullable=False),
    sa.Column("fraction", sa.Double(), nullable=True),
    sa.Column("peak_fraction", sa.Double(), nullable=True),
    sa.Column("object_count", sa.Integer(), nullable=True),
    sa.Column("peak_count", sa.Integer(), nullable=True),
    sa.Column("frames_seen", sa.Integer(), nullable=False),
    sa.Column("trajectory", JsonText(), nullable=True),
    sa.Column("details", JsonText(), nullable=True),
    sa.Column("instance", JsonText(), nullable=True),
    *(
        sa.Column(keyframe_column(stage, kind), sa.String(PATH_LEN), nullable=True)
        for stage in KEYFRAME_STAGES
        for kind in KEYFRAME_KINDS
    ),
    sa.Column("acknowledged_at", _time_type(), nullable=True),
    sa.Column("acknowledged_by", sa.String(ACK_BY_LEN), nullable=True),
    # When retention deleted the incident's clip / its key frame files (migration 4): the first time is
    # kept, upserts never touch them, and the row (key frame paths included) stays.
    sa.Column("clip_removed_at", _time_type(), nullable=True),
    sa.Column("keyframes_removed_at", _time_type(), nullable=True),
    sa.Column("created_at", _time_type(), nullable=False),
    sa.Column("updated_at", _time_type(), nullable=False),
    sa.Index("ix_incidents_started", "started_at", "id"),
    sa.Index("ix_incidents_last_seen", "last_seen_at"),
    sa.Index("ix_incidents_site_started", "site", "started_at"),
    sa.Index("ix_incidents_camera_started", "camera_id", "started_at"),
    sa.Index("ix_incidents_camera_status", "camera_id", "status"),
    sa.Index("ix_incidents_rule_started", "rule", "started_at"),
    sa.Index("ix_incidents_zone_started", "zone", "started_at"),
    sa.Index("ix_incidents_class_started", "class_name", "started_at"),
    sa.Index("ix_incidents_severity_started", "severity", "started_at"),
    sa.Index("ix_incidents_ack_started", "acknowledged_at", "started_at"),
    sa.Index("ix_incidents_status", "status", "incident_id"),  # migration 4, like ix_events_status
    **_MYSQL_TABLE,
)
