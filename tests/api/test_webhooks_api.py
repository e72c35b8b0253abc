"""/webhooks: admin only, validated by the configuration's own model, URLs checked after resolution (a 422
naming ``url``), stored in the database, secrets never shown or logged, configuration webhooks read-only."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from deployments.control import ControlPlane
from trtseg.config import ApiConfig
from trtseg.config.outbound import OutboundConfig, WebhookConfig
from trtseg.db import EventStore
from trtseg.db.webhooks import WebhookStore
from trtseg.outbound.urlguard import GuardPolicy, policy_from_config

ADMIN, VIEWER = "admin-token-0123456789", "viewer-token-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
SECRET = "hmac-k3y-never-shown"
YAML_HOOK = WebhookConfig.model_validate(
    {"name": "ops", "url": "https://10.9.9.9/ops/tok_abcdefghijklmnopq", "secret": "yaml-secret-xyz"}
)


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "pager", "url": "http://10.0.0.5:9000/hook?token=abcdef123", "secret": SECRET, **fields}


@pytest.fixture
def make(sqlite_store: EventStore, offline_control: ControlPlane) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(policy: GuardPolicy | None = None, **api: Any) -> TestClient:
        config = ApiConfig(**({"admin_token": ADMIN, "viewer_token": VIEWER} | api))
        outbound = policy or policy_from_config(OutboundConfig(), {8000, 6380})
        app = create_app(offline_control, sqlite_store, config, outbound=outbound, webhooks=[YAML_HOOK])
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def api(make: Callable[..., TestClient]) -> TestClient:
    return make()


def test_only_the_admin_may_list_or_set_them(api: TestClient) -> None:
    assert api.get("/webhooks").status_code == 401
    assert api.post("/webhooks", json=body()).status_code == 401
    for method, path, payload in [
        ("GET", "/webhooks", None),
        ("GET", "/webhooks/ops", None),
        ("POST", "/webhooks", body()),
        ("PUT", "/webhooks/pager", body()),
        ("DELETE", "/webhooks/pager", None),
    ]:
        answer = api.request(method, path, json=payload, headers=AS_VIEWER)
        assert answer.status_code == 403, (method, path, answer.text)
        assert "admin" in answer.json()["detail"]
    assert api.get("/webhooks", headers=AS_ADMIN).status_code == 200


def test_add_then_read_without_the_secret(api: TestClient, sqlite_store: EventStore) -> None:
    added = api.post(
        "/webhooks", json=body(min_severity="alert", cameras=["cam1"], rules=["flying_lead"]), headers=AS_ADMIN
    )
    assert added.status_code == 201, added.text
    shown = added.json()
    assert shown["secret_set"] is True and shown["source"] == "api" and not shown["read_only"]
    assert shown["url"] == "http://10.0.0.5:9000/..." and shown["revision"] == 1
    assert (shown["min_severity"], shown["cameras"], shown["rules"]) == ("alert", ["cam1"], ["flying_lead"])
    listed = api.get("/webhooks", headers=AS_ADMIN).json()
    assert [(h["name"], h["source"], h["read_only"]) for h in listed] == [
        ("ops", "config", True),
        ("pager", "api", False),
    ]
    one = api.get("/webhooks/pager", headers=AS_ADMIN)
    everything = added.text + api.get("/webhooks", headers=AS_ADMIN).text + one.text
    for hidden in (SECRET, "abcdef123", "yaml-secret-xyz", "tok_abcdefghijklmnopq", "/hook"):
        assert hidden not in everything
    stored = WebhookStore(sqlite_store.engine).get("pager")  # the dispatcher needs them: stored as given
    assert stored is not None and stored.config.secret is not None
    assert stored.config.secret.get_secret_value() == SECRET
    assert stored.config.url.get_secret_value() == body()["url"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://10.0.0.5/hook", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fe80::1]:8080/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://127.0.0.1:9000/hook", "loopback"),
        ("http://localhost:9000/hook", "loopback"),  # refused after name resolution
        ("http://10.0.0.5:6380/", "cluster's own"),
        ("http://10.0.0.5:8265/api/jobs/", "cluster's own"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_bad_urls_are_refused_naming_url(api: TestClient, url: str, expected: str) -> None:
    answer = api.post("/webhooks", json=body(url=url), headers=AS_ADMIN)
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"][-1] == "url" and expected in problem["msg"], problem
    assert api.get("/webhooks/pager", headers=AS_ADMIN).status_code == 404, "nothing stored"


def test_loopback_where_the_configuration_allows_it(make: Callable[..., TestClient]) -> None:
    api = make(policy=policy_from_config(OutboundConfig(allow_loopback=True)))
    assert api.post("/webhooks", json=body(url="http://127.0.0.1:9000/h"), headers=AS_ADMIN).status_code == 201
    still = api.post("/webhooks", json=body(name="meta", url="http://169.254.169.254/"), headers=AS_ADMIN)
    assert still.status_code == 422 and still.json()["detail"][0]["loc"][-1] == "url"


def test_other_bad_fields_are_named(api: TestClient) -> None:
    cases = [
        (body(min_severity="urgent"), "min_severity"),
        (body(name="Bad Name!"), "name"),
        (body(kinds=[]), "kinds"),
        (body(unknown_key=1), "unknown_key"),
        (body(ca_file="/etc/ssl/private/key.pem"), "ca_file"),
        (body(cooldown_s=-1), "cooldown_s"),
    ]
    for payload, field in cases:
        answer = api.post("/webhooks", json=payload, headers=AS_ADMIN)
        assert answer.status_code == 422, (field, answer.text)
        assert any(p["loc"][-1] == field for p in answer.json()["detail"]), (field, answer.json())


def test_put_keeps_the_secret_unless_given_and_names_must_match(api: TestClient, sqlite_store: EventStore) -> None:
    assert api.post("/webhooks", json=body(), headers=AS_ADMIN).status_code == 201
    changed = {"name": "pager", "url": "http://10.0.0.6:9001/new", "min_severity": "alert"}
    answer = api.put("/webhooks/pager", json=changed, headers=AS_ADMIN)
    assert answer.status_code == 200 and answer.json()["revision"] == 2 and answer.json()["secret_set"] is True
    stored = WebhookStore(sqlite_store.engine).get("pager")
    assert stored is not None and stored.config.secret is not None
    assert stored.config.secret.get_secret_value() == SECRET and stored.config.min_severity == "alert"
    unsigned = api.put("/webhooks/pager", json={**changed, "secret": None}, headers=AS_ADMIN)
    assert unsigned.status_code == 200 and unsigned.json()["secret_set"] is False
    mismatch = api.put("/webhooks/pager", json={**changed, "name": "other"}, headers=AS_ADMIN)
    assert mismatch.status_code == 422 and mismatch.json()["detail"][0]["loc"][-1] == "name"
    refused = api.put("/webhooks/pager", json={**changed, "url": "http://169.254.169.254/"}, headers=AS_ADMIN)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "url"
    missing = api.put("/webhooks/nobody", json={**changed, "name": "nobody"}, headers=AS_ADMIN)
    assert missing.status_code == 404


def test_configuration_webhooks_are_read_only(api: TestClient) -> None:
    ops = api.get("/webhooks/ops", headers=AS_ADMIN)
    assert ops.status_code == 200 and ops.json()["source"] == "config" and ops.json()["secret_set"] is True
    assert ops.json()["url"] == "https://10.9.9.9/..."
    for answer in (
        api.post("/webhooks", json=body(name="ops"), headers=AS_ADMIN),
        api.put("/webhooks/ops", json=body(name="ops"), headers=AS_ADMIN),
        api.delete("/webhooks/ops", headers=AS_ADMIN),
    ):
        assert answer.status_code == 409 and "configuration file" in answer.json()["detail"]


def test_duplicates_and_deletes(api: TestClient) -> None:
    assert api.post("/webhooks", json=body(), headers=AS_ADMIN).status_code == 201
    again = api.post("/webhooks", json=body(), headers=AS_ADMIN)
    assert again.status_code == 409 and "exists" in again.json()["detail"]
    gone = api.delete("/webhooks/pager", headers=AS_ADMIN)
    assert gone.status_code == 200 and gone.json() == {"name": "pager", "cancelled_deliveries": 0}
    assert api.get("/webhooks/pager", headers=AS_ADMIN).status_code == 404
    assert api.delete("/webhooks/pager", headers=AS_ADMIN).status_code == 404


def test_secrets_never_reach_the_logs(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.post("/webhooks", json=body(), headers=AS_ADMIN)
    api.put("/webhooks/pager", json=body(url="http://10.0.0.7/x?token=zzz-token-zzz"), headers=AS_ADMIN)
    api.post("/webhooks", json=body(name="meta", url="http://169.254.169.254/?token=zzz-token-zzz"), headers=AS_ADMIN)
    api.delete("/webhooks/pager", headers=AS_ADMIN)
    assert "webhook added name=pager" in caplog.text and "webhook deleted name=pager" in caplog.text
    for hidden in (SECRET, "abcdef123", "zzz-token-zzz", ADMIN):
        assert hidden not in caplog.text


def test_database_down_is_a_503(make: Callable[..., TestClient], sqlite_store: EventStore) -> None:
    api = make()
    sqlite_store.engine.dispose()
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE webhooks")
    answer = api.get("/webhooks", headers=AS_ADMIN)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
