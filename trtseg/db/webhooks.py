"""WebhookStore: webhooks set through the API (``/webhooks``), one row per name, in the events' database.

The configuration file's webhooks (``outbound.webhooks``) are not stored here: they stay read-only
and win a name both use. A row holds the whole ``WebhookConfig`` as JSON, its URL and HMAC secret
included (the dispatcher needs them to send and sign; like a camera's source URL in the ``cameras``
table, they are as safe as the database). ``revision`` grows with every change, so the dispatcher in
the sink actor sees a change without comparing secrets. Deleting a webhook cancels its pending
deliveries in the same transaction (trtseg.outbound.schema.cancel_pending): nothing would send them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from trtseg.config.outbound import WebhookConfig
from trtseg.db.schema import _MYSQL_TABLE, NAME_LEN, JsonText, _time_type, metadata

logger = logging.getLogger(__name__)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("name", sa.String(NAME_LEN), primary_key=True, autoincrement=False),
    sa.Column("config", JsonText(), nullable=False),
    sa.Column("revision", sa.Integer(), nullable=False),
    sa.Column("created_at", _time_type(), nullable=False),
    sa.Column("updated_at", _time_type(), nullable=False),
    **_MYSQL_TABLE,
)


def create_webhooks_table(conn: Connection) -> None:
    """Migration 6 (and tools and tests): the table when missing."""
    webhooks.create(conn, checkfirst=True)


class WebhookExists(ValueError):
    """A webhook with this name is stored already (409)."""


class WebhookNotFound(KeyError):
    """No stored webhook has this name (404)."""


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    config: WebhookConfig
    revision: int
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.config.name


def stored_json(config: WebhookConfig) -> dict[str, Any]:
    """The configuration as stored: every field, the URL and secret in clear (``model_dump`` hides them)."""
    data = config.model_dump(mode="json")
    data["url"] = config.url.get_secret_value()
    data["secret"] = config.secret.get_secret_value() if config.secret is not None else None
    return data


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class WebhookStore:
    """The ``webhooks`` table on an engine shared with the EventStore (``EventStore(url).engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ensure_table(self) -> None:
        with self.engine.begin() as conn:
            create_webhooks_table(conn)

    def _row(self, row: Any) -> StoredWebhook | None:
        try:
            config = WebhookConfig.model_validate(row.config)
        except (ValidationError, TypeError, ValueError) as exc:
            # Kept as it is (deleting it would lose the operator's receiver); it sends nothing until fixed.
            reason = str(exc).replace("\n", "; ")[:300]
            logger.error("stored webhook does not validate; skipped name=%s reason=%s", row.name, reason)
            return None
        return StoredWebhook(config, int(row.revision), _aware(row.created_at), _aware(row.updated_at))

    def list(self) -> list[StoredWebhook]:
        """Every stored webhook that validates, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(webhooks).order_by(webhooks.c.name)).all()
        return [hook for hook in map(self._row, rows) if hook is not None]

    def configs(self) -> list[WebhookConfig]:
        """What the dispatcher runs (``OutboundDispatcher(webhook_source=store.configs)``)."""
        return [hook.config for hook in self.list()]

    def get(self, name: str) -> StoredWebhook | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(webhooks).where(webhooks.c.name == name)).first()
        return None if row is None else self._row(row)

    def add(self, config: WebhookConfig) -> StoredWebhook:
        """Store a new webhook; WebhookExists when the name is taken."""
        now = _now()
        values = {"name": config.name, "config": stored_json(config), "revision": 1}
        try:
            with self.engine.begin() as conn:
                conn.execute(webhooks.insert().values(**values, created_at=now, updated_at=now))
        except IntegrityError:
            raise WebhookExists(f"webhook '{config.name}' exists") from None
        logger.info("webhook stored name=%s", config.name)
        return StoredWebhook(config, 1, _aware(now), _aware(now))

    def replace(self, config: WebhookConfig) -> StoredWebhook:
        """Replace a stored webhook's configuration (same name); WebhookNotFound when there is none."""
        now = _now()
        t = webhooks.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.revision, t.created_at).where(t.name == config.name)).first()
            if row is None:
                raise WebhookNotFound(config.name)
            revision = int(row.revision) + 1
            conn.execute(
                webhooks.update()
                .where(t.name == config.name)
                .values(config=stored_json(config), revision=revision, updated_at=now)
            )
        logger.info("webhook changed name=%s revision=%d", config.name, revision)
        return StoredWebhook(config, revision, _aware(row.created_at), _aware(now))

    def delete(self, name: str) -> int:
        """Delete a stored webhook and cancel its pending deliveries (one transaction); returns how many were
        cancelled. WebhookNotFound when there is none."""
        from trtseg.outbound.schema import cancel_pending  # the outbox's own module owns its table

        now = _now()
        with self.engine.begin() as conn:
            gone = conn.execute(webhooks.delete().where(webhooks.c.name == name)).rowcount
            if not gone:
                raise WebhookNotFound(name)
            cancelled = cancel_pending(conn, f"webhook:{name}", now)
        logger.info("webhook deleted name=%s cancelled_deliveries=%d", name, cancelled)
        return cancelled
