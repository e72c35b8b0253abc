"""The delivery outbox table, in the same database (and metadata) as events and incidents.

One row per (target, message): 'mqtt' or 'webhook:<name>' and the message's idempotency key, unique
together, so enqueueing a message twice (a sink batch replayed from its spool) stores it once.
States: pending (to deliver; ``next_attempt_at`` says when, a claim pushes it by the lease),
delivered, failed (out of attempts; kept), suppressed (by the notification cooldown; kept, counted),
cancelled (its webhook was deleted through the API before it went out; kept, pruned like delivered).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trtseg.db.schema import _MYSQL_TABLE, CAMERA_LEN, INCIDENT_ID_LEN, NAME_LEN, SEVERITY_LEN, _id_type, _time_type
from trtseg.db.schema import metadata as metadata

TARGET_LEN = 8 + NAME_LEN  # 'webhook:' + a webhook name
KEY_LEN = INCIDENT_ID_LEN + 16  # '{incident_id}:update:alert'
STATE_LEN = 12
KIND_LEN = 8
ERROR_LEN = 255
CLAIM_LEN = 32
STATES = ("pending", "delivered", "failed", "suppressed", "cancelled")
CANCELLED_REASON = "webhook deleted"

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", _id_type(), primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(TARGET_LEN), nullable=False),
    sa.Column("idempotency_key", sa.String(KEY_LEN), nullable=False),
    sa.Column("incident_id", sa.String(INCIDENT_ID_LEN), nullable=False),
    sa.Column("camera_id", sa.String(CAMERA_LEN), nullable=False),
    sa.Column("rule", sa.String(NAME_LEN), nullable=False),
    sa.Column("kind", sa.String(KIND_LEN), nullable=False),
    sa.Column("severity", sa.String(SEVERITY_LEN), nullable=False),
    # The incident's first message on this target: what the notification cooldown judges.
    sa.Column("opening", sa.Boolean(), nullable=False, default=False),
    sa.Column("event_at", _time_type(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("state", sa.String(STATE_LEN), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", _time_type(), nullable=False),
    sa.Column("claimed_by", sa.String(CLAIM_LEN), nullable=True),
    sa.Column("last_error", sa.String(ERROR_LEN), nullable=True),
    sa.Column("created_at", _time_type(), nullable=False),
    sa.Column("updated_at", _time_type(), nullable=False),
    sa.Column("delivered_at", _time_type(), nullable=True),
    sa.UniqueConstraint("target", "idempotency_key", name="uq_deliveries_target_key"),
    sa.Index("ix_deliveries_due", "state", "target", "next_attempt_at"),
    sa.Index("ix_deliveries_incident", "incident_id", "target"),  # enqueue reads an incident's rows
    sa.Index("ix_deliveries_cooldown", "target", "camera_id", "rule", "opening", "event_at"),
    sa.Index("ix_deliveries_created", "created_at"),
    **_MYSQL_TABLE,
)


def create_deliveries_table(conn: Connection) -> None:
    """Create the table and its indexes when missing (the migration step the lead adds calls this)."""
    deliveries.create(conn, checkfirst=True)


def cancel_pending(conn: Connection, target: str, now: datetime) -> int:
    """Mark ``target``'s pending rows 'cancelled' (its webhook is gone): nothing will send them, and a
    row that stayed pending would wait for ever and block nothing but still be counted. A row claimed
    right now may still arrive once (``mark_delivered`` leaves a cancelled row cancelled)."""
    t = deliveries.c
    done = conn.execute(
        deliveries.update()
        .where(t.target == target, t.state == "pending")
        .values(state="cancelled", claimed_by=None, last_error=CANCELLED_REASON, updated_at=now)
    )
    return int(done.rowcount or 0)
