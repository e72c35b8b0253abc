"""Webhooks set through the API reach a real receiver through the sink's running dispatcher, without a restart:
added, changed (pending messages follow the new URL) and deleted (pending deliveries cancelled)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from actors.sink import _dispatcher
from deployments.api import create_app
from deployments.control import RayControlPlane
from tests.db.incident_helpers import lifecycle
from tests.outbound.helpers import make_outbox, outbound_config
from tests.services.webhook_receiver import WebhookReceiver
from trtseg.config import ApiConfig, SinkConfig
from trtseg.config.outbound import OutboundConfig, WebhookConfig
from trtseg.db import EventStore
from trtseg.db.webhooks import WebhookStore
from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.urlguard import policy_from_config
from trtseg.sink import EventSink

ADMIN = {"Authorization": "Bearer admin-token-0123456789"}
FAST_RETRY = {"backoff_base_s": 0.05, "backoff_max_s": 0.3, "poll_interval_s": 0.05, "lease_s": 5}


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def system(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, OutboundDispatcher, EventSink]]:
    """The API on the database, the sink actor's own dispatcher on it, and an EventSink feeding that dispatcher."""
    store = EventStore(db_url)
    store.migrate()
    outbound = OutboundConfig.model_validate({"allow_loopback": True, "retry": FAST_RETRY})
    sink_config = SinkConfig(database_url=db_url, keyframe_dir=tmp_path / "kf", spool_dir=tmp_path / "spool")
    dispatcher = _dispatcher(sink_config, outbound, {8000})
    assert dispatcher is not None and dispatcher.stats()["targets"] == {}, "no webhook configured anywhere yet"
    sink = EventSink(sink_config, store=EventStore(db_url), start=False, on_written=dispatcher.enqueue)
    app = create_app(
        RayControlPlane(namespace="trtseg-absent-webhooks", timeout_s=2.0),
        store,
        ApiConfig(admin_token="admin-token-0123456789"),
        outbound=policy_from_config(outbound, {8000}),
        webhooks=outbound.webhooks,
    )
    client = TestClient(app, raise_server_exceptions=False)
    try:
        yield client, dispatcher, sink
    finally:
        client.close()
        sink.close()
        dispatcher.stop()
        store.close()


@pytest.mark.slow
def test_a_webhook_added_changed_and_deleted_through_the_api(
    system: tuple[TestClient, OutboundDispatcher, EventSink], webhook_receiver: WebhookReceiver
) -> None:
    client, dispatcher, sink = system
    hook = {"name": "pager", "url": webhook_receiver.url, "secret": "test-secret", "cooldown_s": 0}
    assert client.post("/webhooks", json=hook, headers=ADMIN).status_code == 201
    assert wait_until(lambda: "webhook:pager" in dispatcher.stats()["targets"]), "picked up without a restart"
    assert dispatcher.stats()["targets"]["webhook:pager"]["source"] == "api"

    sink.submit(lifecycle("inc-api-1"))
    assert sink.flush() == 5
    assert webhook_receiver.wait_for(3, timeout_s=15)
    accepted = webhook_receiver.accepted()
    assert [h.key for h in accepted] == ["inc-api-1:new:open", "inc-api-1:update:alert", "inc-api-1:end:closed"]
    assert all(h.signed_ok for h in accepted), "signed with the secret set through the API"
    assert accepted[0].json()["incident_id"] == "inc-api-1"

    # Changed: a second receiver, alerts only; the dispatcher follows within its refresh.
    second = WebhookReceiver(secret="test-secret").start()
    try:
        changed = {"name": "pager", "url": second.url, "min_severity": "alert", "cooldown_s": 0}
        assert client.put("/webhooks/pager", json=changed, headers=ADMIN).status_code == 200
        assert wait_until(lambda: dispatcher.outbox.targets["webhook:pager"].min_severity == "alert")
        sink.submit(lifecycle("inc-api-2"))
        sink.flush()
        assert second.wait_for(2, timeout_s=15)
        assert [h.key for h in second.accepted()] == ["inc-api-2:update:alert", "inc-api-2:end:closed"]
        assert all(h.signed_ok for h in second.accepted()), "the stored secret was kept"
        assert len(webhook_receiver.accepted()) == 3, "the old URL gets nothing more"

        # Deleted while its receiver is down: its pending deliveries are cancelled, nothing is sent later.
        second.stop()
        sink.submit(lifecycle("inc-api-3"))
        sink.flush()
        outbox = dispatcher.outbox
        assert wait_until(
            lambda: any(r["attempts"] >= 1 for r in outbox.rows("webhook:pager") if r["state"] == "pending")
        )
        gone = client.delete("/webhooks/pager", headers=ADMIN)
        assert gone.status_code == 200 and gone.json()["cancelled_deliveries"] == 2
        assert wait_until(lambda: "webhook:pager" not in dispatcher.stats()["targets"])
        states = {r["idempotency_key"]: r["state"] for r in outbox.rows("webhook:pager")}
        assert states["inc-api-3:update:alert"] == "cancelled" and states["inc-api-3:end:closed"] == "cancelled"
        assert states["inc-api-1:new:open"] == "delivered"
        before = len(second.hits)
        second.start()
        sink.submit(lifecycle("inc-api-4"))
        sink.flush()
        time.sleep(1.0)
        assert len(second.hits) == before and not any(r["incident_id"] == "inc-api-4" for r in outbox.rows())
    finally:
        second.stop()


def test_the_configuration_wins_a_name_and_a_failing_source_changes_nothing(tmp_path: Path) -> None:
    config = outbound_config(webhooks=[{"name": "pager", "url": "http://127.0.0.1:9/yaml", "cooldown_s": 0}])
    outbox = make_outbox(tmp_path, config)
    stored = [
        WebhookConfig.model_validate({"name": "pager", "url": "http://127.0.0.1:9/api"}),
        WebhookConfig.model_validate({"name": "audit", "url": "http://127.0.0.1:9/audit"}),
    ]
    failing = False

    def source() -> list[WebhookConfig]:
        if failing:
            raise ConnectionError("database down")
        return stored

    dispatcher = OutboundDispatcher(outbox, webhook_source=source, refresh_s=60)
    try:
        assert dispatcher.refresh() == {"added": ["audit"], "changed": [], "removed": []}
        assert outbox.targets["webhook:pager"].url.get_secret_value().endswith("/yaml")
        assert sorted(outbox.targets) == ["webhook:audit", "webhook:pager"]
        failing = True
        assert dispatcher.refresh() == {"added": [], "changed": [], "removed": []}
        assert dispatcher.stats()["webhooks_error"] == "ConnectionError"
        assert "webhook:audit" in outbox.targets, "kept while the table cannot be read"
        failing, stored = False, []
        assert dispatcher.refresh()["removed"] == ["audit"]
        assert sorted(outbox.targets) == ["webhook:pager"] and dispatcher.stats()["webhooks_error"] is None
    finally:
        dispatcher.stop()


def test_stored_webhooks_run_from_the_dispatchers_start(db_url: str, webhook_receiver: WebhookReceiver) -> None:
    """A restart: the sink's new dispatcher reads the table at once and sends what was pending."""
    store = EventStore(db_url)
    store.migrate()
    WebhookStore(store.engine).add(
        WebhookConfig.model_validate({"name": "pager", "url": webhook_receiver.url, "cooldown_s": 0})
    )
    outbound = OutboundConfig.model_validate({"allow_loopback": True, "retry": FAST_RETRY})
    dispatcher = _dispatcher(SinkConfig(database_url=db_url), outbound, ())
    assert dispatcher is not None
    try:
        assert "webhook:pager" in dispatcher.stats()["targets"]
        dispatcher.enqueue(lifecycle("inc-restart")[:1])
        assert webhook_receiver.wait_for(1)
    finally:
        dispatcher.stop()
        store.close()


@pytest.mark.ray
@pytest.mark.slow
def test_the_sink_actor_delivers_to_a_webhook_set_through_the_api(
    ray_local: Any, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    """The real SinkActor on a Ray cluster: records submitted to it reach the receiver of a webhook that was
    POSTed to the API after the actor started."""
    import ray

    from actors.sink import SinkActor

    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    store.migrate()
    outbound = OutboundConfig.model_validate({"allow_loopback": True, "retry": FAST_RETRY})
    sink_config = SinkConfig(database_url=url, keyframe_dir=tmp_path / "kf", spool_dir=tmp_path / "spool")
    actor = SinkActor.options(max_concurrency=4).remote(sink_config, 80, outbound, [8000])
    client = TestClient(
        create_app(
            RayControlPlane(namespace="trtseg-absent-webhooks", timeout_s=2.0),
            store,
            ApiConfig(admin_token="admin-token-0123456789"),
            outbound=policy_from_config(outbound, {8000}),
        ),
        raise_server_exceptions=False,
    )
    try:
        assert ray.get(actor.stats.remote(), timeout=60)["outbound"]["targets"] == {}
        hook = {"name": "pager", "url": webhook_receiver.url, "secret": "test-secret", "cooldown_s": 0}
        assert client.post("/webhooks", json=hook, headers=ADMIN).status_code == 201

        def running() -> bool:
            targets = ray.get(actor.stats.remote(), timeout=10)["outbound"]["targets"]
            return bool(targets.get("webhook:pager", {}).get("running"))

        assert wait_until(running, timeout_s=15)
        ray.get(actor.submit.remote(lifecycle("inc-ray")), timeout=30)
        ray.get(actor.flush.remote(), timeout=30)
        assert webhook_receiver.wait_for(3, timeout_s=20)
        assert [h.key for h in webhook_receiver.accepted()] == [
            "inc-ray:new:open",
            "inc-ray:update:alert",
            "inc-ray:end:closed",
        ]
        assert all(h.signed_ok for h in webhook_receiver.accepted())
    finally:
        client.close()
        ray.get(actor.close.remote(), timeout=60)
        ray.kill(actor)
        store.close()
