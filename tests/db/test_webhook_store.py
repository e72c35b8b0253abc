"""WebhookStore (migration 6) on SQLite and MariaDB: add, read back with the secret, replace, delete (which
cancels the webhook's pending deliveries, and only those), rows that no longer validate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.db.conftest import DATABASES, migrated
from tests.outbound.helpers import lifecycle, outbound_config
from trtseg.config.outbound import WebhookConfig
from trtseg.db import SCHEMA_VERSION, EventStore
from trtseg.db.migrations import applied_versions, migrate
from trtseg.db.webhooks import WebhookExists, WebhookNotFound, WebhookStore, webhooks
from trtseg.outbound.outbox import OutboxStore


@pytest.fixture(params=DATABASES)
def events(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    yield from migrated(request, tmp_path, EventStore)


def hook(name: str = "pager", **fields: object) -> WebhookConfig:
    values: dict[str, object] = {"name": name, "url": "https://hooks.example.com/in/tok_0123456789abcdef?k=v"}
    values.update(fields)
    return WebhookConfig.model_validate(values)


def test_migration_6_creates_the_table(events: EventStore) -> None:
    assert SCHEMA_VERSION >= 6
    with events.engine.connect() as conn:
        assert 6 in applied_versions(conn)
        assert sa.inspect(conn).has_table("webhooks")
    assert migrate(events.engine) == []  # again: nothing to do


def test_migration_6_upgrades_a_version_5_database(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert migrate(engine, target=5) == [1, 2, 3, 4, 5]
    assert not sa.inspect(engine).has_table("webhooks")
    assert migrate(engine) == [6]
    assert sa.inspect(engine).has_table("webhooks")
    engine.dispose()


def test_add_get_list_keep_url_secret_and_filters(events: EventStore) -> None:
    store = WebhookStore(events.engine)
    added = store.add(hook(secret="k3y-0f-the-hmac", min_severity="alert", cameras=["cam1"], rules=["r"]))
    assert added.revision == 1
    store.add(hook("audit"))
    assert [h.name for h in store.list()] == ["audit", "pager"]
    found = store.get("pager")
    assert found is not None and found.revision == 1 and found.created_at.tzinfo is not None
    config = found.config
    assert config.url.get_secret_value() == "https://hooks.example.com/in/tok_0123456789abcdef?k=v"
    assert config.secret is not None and config.secret.get_secret_value() == "k3y-0f-the-hmac"
    assert (config.min_severity, config.cameras, config.rules) == ("alert", ["cam1"], ["r"])
    assert config == hook(secret="k3y-0f-the-hmac", min_severity="alert", cameras=["cam1"], rules=["r"])
    assert store.get("nobody") is None
    with pytest.raises(WebhookExists):
        store.add(hook())
    assert [c.name for c in store.configs()] == ["audit", "pager"]


def test_replace_bumps_the_revision(events: EventStore) -> None:
    store = WebhookStore(events.engine)
    store.add(hook(secret="one"))
    replaced = store.replace(hook(url="http://10.1.2.3:9000/h", secret=None, cooldown_s=0))
    assert replaced.revision == 2
    found = store.get("pager")
    assert found is not None and found.revision == 2
    assert found.config.url.get_secret_value() == "http://10.1.2.3:9000/h" and found.config.secret is None
    with pytest.raises(WebhookNotFound):
        store.replace(hook("nobody"))


def test_delete_cancels_only_its_pending_deliveries(events: EventStore) -> None:
    store = WebhookStore(events.engine)
    store.add(hook(cooldown_s=0))
    config = outbound_config(
        webhooks=[
            {"name": "pager", "url": "http://127.0.0.1:9/h", "cooldown_s": 0},
            {"name": "other", "url": "http://127.0.0.1:9/o", "cooldown_s": 0},
        ]
    )
    outbox = OutboxStore(events.engine, config)
    outbox.enqueue(lifecycle("inc1"))
    first = outbox.rows("webhook:pager")[0]["id"]
    outbox.mark_delivered([first])  # one went out before the delete: it stays delivered
    assert store.delete("pager") == 2
    states = [r["state"] for r in outbox.rows("webhook:pager")]
    assert states == ["delivered", "cancelled", "cancelled"]
    assert {r["last_error"] for r in outbox.rows("webhook:pager")[1:]} == {"webhook deleted"}
    assert [r["state"] for r in outbox.rows("webhook:other")] == ["pending"] * 3
    assert outbox.claim_due("webhook:pager", 10) == []
    assert outbox.mark_delivered([r["id"] for r in outbox.rows("webhook:pager")]) == 0  # cancelled stays so
    assert store.get("pager") is None
    with pytest.raises(WebhookNotFound):
        store.delete("pager")


def test_a_stored_row_that_no_longer_validates_is_skipped_and_kept(
    events: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = WebhookStore(events.engine)
    store.add(hook())
    with events.engine.begin() as conn:
        conn.execute(
            webhooks.update().where(webhooks.c.name == "pager").values(config={"name": "pager", "url": "ftp://x/"})
        )
    assert store.list() == [] and store.get("pager") is None
    assert "stored webhook does not validate" in caplog.text and "pager" in caplog.text
    with events.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(webhooks)).scalar() == 1
