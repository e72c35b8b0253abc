"""OutboxStore: incident messages waiting for (or done with) their delivery, in the incidents' database.

``enqueue(records)`` runs after the sink wrote a batch of incident records and before that batch
leaves the sink's spool: a crash in between replays the batch, and the unique (target, key) makes
the replay harmless. Dispatchers ``claim_due`` rows for one target (a claim is a lease: a dispatcher
that dies mid-delivery leaves its rows to be claimed again when the lease ends, so delivery is at
least once), then ``mark_delivered`` or ``mark_failed`` (exponential backoff, deterministic, capped;
out of attempts -> 'failed', kept). A message waits while an earlier one of the same incident and
target is pending, so a receiver gets an incident's 'new' before its 'end'.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from trtseg.analytics.records import IncidentRecord
from trtseg.config.outbound import OutboundConfig, RetryConfig, TargetFilter
from trtseg.outbound.messages import build_message
from trtseg.outbound.policy import Cooldown, CooldownKey, History, Sent, accepts, candidate_kinds, suppressed_incident
from trtseg.outbound.schema import CLAIM_LEN, ERROR_LEN, cancel_pending, create_deliveries_table, deliveries

logger = logging.getLogger(__name__)

ROWS_PER_STATEMENT = 200  # 19 columns a row: far below SQLite's bound-parameter limit
IDS_PER_QUERY = 500


def utcnow() -> datetime:
    """Naive UTC, as the database stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def backoff_s(attempts: int, retry: RetryConfig) -> float:
    """Wait after ``attempts`` failed attempts: base * 2^(attempts-1), at most the cap (no jitter)."""
    return float(min(retry.backoff_max_s, retry.backoff_base_s * 2 ** max(0, min(attempts - 1, 60))))


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed row: what to send where."""

    id: int
    target: str
    idempotency_key: str
    incident_id: str
    camera_id: str
    kind: str
    payload: str
    attempts: int
    created_at: datetime


@dataclass(slots=True)
class EnqueueResult:
    pending: int = 0
    suppressed: int = 0
    filtered: int = 0
    by_target: dict[str, int] = field(default_factory=dict)


class OutboxStore:
    """The ``deliveries`` table on an engine shared with the EventStore (``EventStore(url).engine``)."""

    def __init__(self, engine: Engine, config: OutboundConfig) -> None:
        self.engine = engine
        self.config = config
        self.dialect = "sqlite" if engine.dialect.name == "sqlite" else "mysql"
        self._configured = config.targets()  # from the configuration file; fixed
        self.targets: dict[str, TargetFilter] = dict(self._configured)
        # Held by enqueue and set_added_targets: once the targets changed, no enqueue with the old ones runs.
        self._targets_lock = threading.RLock()
        self.cooldown = Cooldown(self._last_opening)
        self.counters = {"enqueued": 0, "suppressed": 0, "filtered": 0}

    def __repr__(self) -> str:
        return f"OutboxStore({self.engine.url.render_as_string(hide_password=True)})"

    def ensure_table(self) -> None:
        """Create the table when missing (the system's migrations do this; tools and tests call it)."""
        with self.engine.begin() as conn:
            create_deliveries_table(conn)

    def set_added_targets(self, added: dict[str, TargetFilter]) -> None:
        """The targets added at run time (webhooks set through the API), beside the configured ones, which
        win a name both use. Returns once no enqueue with the previous targets is in flight."""
        with self._targets_lock:
            self.targets = {**added, **self._configured}

    def cancel(self, target: str) -> int:
        """Cancel ``target``'s pending rows (its webhook was deleted); returns how many."""
        with self.engine.begin() as conn:
            return cancel_pending(conn, target, utcnow())

    # ------------------------------------------------------------------ enqueue
    def enqueue(self, records: Iterable[Any]) -> EnqueueResult:
        """Store the messages of the incident records (others are ignored) for every target, once.

        One transaction; raises when the database fails (the caller keeps the batch and retries).
        """
        batch = [r for r in records if isinstance(r, IncidentRecord)]
        result = EnqueueResult()
        with self._targets_lock:
            if not batch or not self.targets:
                return result
            now = utcnow()
            with self.engine.begin() as conn:
                history = self._history(conn, sorted({r.incident_id for r in batch}))
                rows, notes = self._plan(batch, history, now, result)
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    conn.execute(self._insert(rows[start : start + ROWS_PER_STATEMENT]))
        for key, (at, incident_id) in notes.items():
            self.cooldown.note(key, incident_id, at)
        self.counters["enqueued"] += result.pending
        self.counters["suppressed"] += result.suppressed
        self.counters["filtered"] += result.filtered
        if result.suppressed:
            logger.info("outbound messages suppressed by cooldown count=%d", result.suppressed)
        return result

    def _plan(
        self,
        batch: list[IncidentRecord],
        history: dict[tuple[str, str], History],
        now: datetime,
        result: EnqueueResult,
    ) -> tuple[list[dict[str, Any]], dict[CooldownKey, tuple[datetime, str]]]:
        rows: list[dict[str, Any]] = []
        notes: dict[CooldownKey, tuple[datetime, str]] = {}
        base_url = self.config.public_base_url
        for record in batch:
            for target, rules in self.targets.items():
                seen = history.setdefault((target, record.incident_id), {})
                for kind in candidate_kinds(record, seen):
                    if kind in seen:
                        continue  # stored already (a replayed batch, a later refresh)
                    if not accepts(rules, kind, record):
                        result.filtered += 1
                        continue
                    message = build_message(record, kind, base_url)
                    opening = not seen
                    key: CooldownKey = (target, record.camera_id, record.rule)
                    if opening:
                        at = _naive(message.event_at)
                        quiet = self.cooldown.suppresses(key, rules.cooldown_s, record.incident_id, at, notes.get(key))
                        if not quiet:
                            notes[key] = (at, record.incident_id)
                    else:
                        quiet = suppressed_incident(seen)
                    state = "suppressed" if quiet else "pending"
                    seen[kind] = Sent(state, record.severity, opening)
                    result.suppressed += quiet
                    result.pending += not quiet
                    result.by_target[target] = result.by_target.get(target, 0) + (not quiet)
                    rows.append(
                        {
                            "target": target,
                            "idempotency_key": message.idempotency_key,
                            "incident_id": record.incident_id,
                            "camera_id": record.camera_id,
                            "rule": record.rule,
                            "kind": kind,
                            "severity": record.severity,
                            "opening": opening,
                            "event_at": _naive(message.event_at),
                            "payload": message.body(),
                            "state": state,
                            "attempts": 0,
                            "next_attempt_at": now,
                            "claimed_by": None,
                            "last_error": None,
                            "created_at": now,
                            "updated_at": now,
                            "delivered_at": None,
                        }
                    )
        return rows, notes

    def _insert(self, rows: list[dict[str, Any]]) -> Any:
        """Insert, leaving an existing (target, key) as it is."""
        if self.dialect == "sqlite":
            return sqlite.insert(deliveries).values(rows).on_conflict_do_nothing()
        stmt = mysql.insert(deliveries).values(rows)
        return stmt.on_duplicate_key_update(id=deliveries.c.id)  # a no-op: the stored row wins

    def _history(self, conn: Connection, incident_ids: Sequence[str]) -> dict[tuple[str, str], History]:
        t = deliveries.c
        out: dict[tuple[str, str], History] = {}
        for start in range(0, len(incident_ids), IDS_PER_QUERY):
            chunk = incident_ids[start : start + IDS_PER_QUERY]
            stmt = sa.select(t.target, t.incident_id, t.kind, t.state, t.severity, t.opening).where(
                t.incident_id.in_(chunk)
            )
            for row in conn.execute(stmt):
                out.setdefault((row.target, row.incident_id), {})[row.kind] = Sent(
                    row.state, row.severity, bool(row.opening)
                )
        return out

    def _last_opening(self, key: CooldownKey) -> tuple[datetime, str] | None:
        target, camera_id, rule = key
        t = deliveries.c
        stmt = (
            sa.select(t.event_at, t.incident_id)
            .where(t.target == target, t.camera_id == camera_id, t.rule == rule, t.opening.is_(True))
            .where(t.state != "suppressed")
            .order_by(t.event_at.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else (row.event_at, row.incident_id)

    # ------------------------------------------------------------------ delivery
    def claim_due(
        self, target: str, limit: int, now: datetime | None = None, token: str | None = None
    ) -> list[Delivery]:
        """Claim up to ``limit`` due pending rows of ``target`` (oldest first) for ``retry.lease_s``.

        A row waits while an earlier pending row of the same incident and target exists (order per
        incident). Safe with several dispatchers: a row is claimed by one of them at a time.
        """
        now = now or utcnow()
        token = (token or secrets.token_hex(8))[:CLAIM_LEN]
        t = deliveries.c
        earlier = deliveries.alias("earlier")
        blocked = (
            sa.select(sa.literal(1))
            .where(earlier.c.target == t.target, earlier.c.incident_id == t.incident_id)
            .where(earlier.c.state == "pending", earlier.c.id < t.id)
            .exists()
        )
        due = (
            sa.select(t.id)
            .where(t.state == "pending", t.target == target, t.next_attempt_at <= now, ~blocked)
            .order_by(t.id)
            .limit(limit)
        )
        lease_until = now + timedelta(seconds=self.config.retry.lease_s)
        with self.engine.begin() as conn:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                deliveries.update()
                .where(t.id.in_(ids), t.state == "pending", t.next_attempt_at <= now)
                .values(claimed_by=token, next_attempt_at=lease_until, updated_at=now)
            )
            rows = conn.execute(sa.select(deliveries).where(t.id.in_(ids), t.claimed_by == token).order_by(t.id)).all()
        return [
            Delivery(
                id=row.id,
                target=row.target,
                idempotency_key=row.idempotency_key,
                incident_id=row.incident_id,
                camera_id=row.camera_id,
                kind=row.kind,
                payload=row.payload,
                attempts=row.attempts,
                created_at=row.created_at,
            )
            for row in rows
        ]

    def mark_delivered(self, ids: Sequence[int], now: datetime | None = None) -> int:
        """Delivered (whoever claimed them last: the message did arrive)."""
        if not ids:
            return 0
        now = now or utcnow()
        t = deliveries.c
        with self.engine.begin() as conn:
            done = conn.execute(
                deliveries.update()
                .where(t.id.in_(list(ids)), t.state == "pending")
                .values(
                    state="delivered",
                    attempts=t.attempts + 1,
                    delivered_at=now,
                    updated_at=now,
                    claimed_by=None,
                    last_error=None,
                )
            )
        return int(done.rowcount or 0)

    def mark_failed(
        self, delivery_id: int, error: str, now: datetime | None = None, retry_after_s: float | None = None
    ) -> str:
        """One failed attempt: back off (at least ``retry_after_s``, the receiver's Retry-After, capped), or
        'failed' when out of attempts. Returns the row's new state."""
        now = now or utcnow()
        t = deliveries.c
        retry = self.config.retry
        with self.engine.begin() as conn:
            attempts = conn.execute(sa.select(t.attempts).where(t.id == delivery_id, t.state == "pending")).scalar()
            if attempts is None:
                return "gone"
            attempts += 1
            wait = backoff_s(attempts, retry)
            if retry_after_s is not None:
                wait = min(max(wait, retry_after_s), retry.backoff_max_s)
            state = "failed" if attempts >= retry.max_attempts else "pending"
            conn.execute(
                deliveries.update()
                .where(t.id == delivery_id, t.state == "pending")
                .values(
                    state=state,
                    attempts=attempts,
                    next_attempt_at=now + timedelta(seconds=wait),
                    claimed_by=None,
                    last_error=error[:ERROR_LEN],
                    updated_at=now,
                )
            )
        if state == "failed":
            logger.warning("outbound delivery failed for good id=%d attempts=%d error=%s", delivery_id, attempts, error)
        return state

    def release(self, ids: Sequence[int], now: datetime | None = None) -> None:
        """Give claimed rows back untried (no attempt counted): e.g. the broker went away first."""
        if not ids:
            return
        now = now or utcnow()
        t = deliveries.c
        with self.engine.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(t.id.in_(list(ids)), t.state == "pending")
                .values(claimed_by=None, next_attempt_at=now, updated_at=now)
            )

    def requeue_failed(self, target: str | None = None) -> int:
        """Give 'failed' rows a fresh set of attempts (an operator fixed the receiver)."""
        t = deliveries.c
        now = utcnow()
        stmt = deliveries.update().where(t.state == "failed")
        if target is not None:
            stmt = stmt.where(t.target == target)
        with self.engine.begin() as conn:
            done = conn.execute(stmt.values(state="pending", attempts=0, next_attempt_at=now, updated_at=now))
        return int(done.rowcount or 0)

    def prune(self, now: datetime | None = None) -> int:
        """Delete delivered, suppressed and cancelled rows older than ``retry.keep_days``; pending and failed stay."""
        cutoff = (now or utcnow()) - timedelta(days=self.config.retry.keep_days)
        t = deliveries.c
        done_states = ("delivered", "suppressed", "cancelled")
        with self.engine.begin() as conn:
            done = conn.execute(deliveries.delete().where(t.state.in_(done_states), t.created_at < cutoff))
        return int(done.rowcount or 0)

    # ------------------------------------------------------------------ reading
    def counts(self, states: Sequence[str] = ("pending", "failed")) -> dict[str, dict[str, int]]:
        """Rows per target in ``states`` (every configured target, with zeros). The default states are
        the few rows that need attention and are counted on the index; delivered and suppressed rows
        grow with time (until pruned), so a live view counts those in ``counters`` instead."""
        t = deliveries.c
        out = {target: dict.fromkeys(states, 0) for target in self.targets}
        stmt = sa.select(t.target, t.state, sa.func.count()).where(t.state.in_(list(states)))
        with self.engine.connect() as conn:
            for target, state, count in conn.execute(stmt.group_by(t.target, t.state)):
                out.setdefault(target, dict.fromkeys(states, 0))[state] = int(count)
        return out

    def next_due(self, target: str) -> datetime | None:
        """When the earliest pending row of ``target`` is due (None: nothing pending)."""
        t = deliveries.c
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(t.next_attempt_at)).where(t.state == "pending", t.target == target)
            ).scalar()

    def rows(self, target: str | None = None) -> list[dict[str, Any]]:
        """Every row (tests, tools), oldest first."""
        stmt = sa.select(deliveries).order_by(deliveries.c.id)
        if target is not None:
            stmt = stmt.where(deliveries.c.target == target)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]
