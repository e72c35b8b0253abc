"""Webhooks against a real receiver on loopback: signatures, retries, a receiver that is down, pinning, redaction."""

from __future__ import annotations

import http.server
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbound.helpers import lifecycle, make_outbox, outbound_config
from tests.services.webhook_receiver import WebhookReceiver
from trtseg.config.outbound import WebhookConfig
from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.urlguard import GuardPolicy
from trtseg.outbound.webhooks import SIGNATURE_HEADER, WebhookSender, sign, verify_signature

FAST_RETRY = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_interval_s": 0.05, "lease_s": 5}
LOOPBACK = GuardPolicy(allow_loopback=True)


def resolver_to(address: str) -> Any:
    def resolve(host: str, port: int, *_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


def hook(receiver: WebhookReceiver, **fields: Any) -> dict[str, Any]:
    return {"name": "pager", "url": receiver.url, "secret": "test-secret", "cooldown_s": 0, **fields}


def wait_until(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_signature_round_trip() -> None:
    body = b'{"type":"new"}'
    signature = sign("k", "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    headers = {"X-Trtseg-Timestamp": "1700000000", SIGNATURE_HEADER: signature}
    assert verify_signature("k", headers, body, now=1700000100)
    assert not verify_signature("other", headers, body, now=1700000100)
    assert not verify_signature("k", headers, body + b" ", now=1700000100)
    assert not verify_signature("k", headers, body, now=1700000000 + 301)  # stale: a replay


def test_one_delivery_is_signed_and_keyed(webhook_receiver: WebhookReceiver) -> None:
    sender = WebhookSender(WebhookConfig.model_validate(hook(webhook_receiver)), LOOPBACK)
    result = sender.send('{"type":"new"}', "inc1:new:open", "new")
    sender.close()
    assert result.ok and result.status == 200
    (hit,) = webhook_receiver.hits
    assert hit.signed_ok is True and hit.key == "inc1:new:open"
    assert hit.headers["x-trtseg-event"] == "new" and hit.headers["content-type"] == "application/json"
    assert hit.headers["host"] == f"127.0.0.1:{webhook_receiver.port}"


def test_dispatcher_retries_500_then_delivers_in_order(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next = 2
    store = make_outbox(tmp_path, outbound_config(webhooks=[hook(webhook_receiver)], retry=FAST_RETRY))
    dispatcher = OutboundDispatcher(store).start()
    try:
        dispatcher.enqueue(lifecycle("inc1"))
        assert webhook_receiver.wait_for(3, timeout_s=10)
    finally:
        dispatcher.stop()
    accepted = [h.key for h in webhook_receiver.accepted()]
    assert accepted == ["inc1:new:open", "inc1:update:alert", "inc1:end:closed"]
    assert [h.status for h in webhook_receiver.hits[:3]] == [500, 500, 200]
    assert all(h.signed_ok for h in webhook_receiver.hits)
    assert [h.json()["type"] for h in webhook_receiver.accepted()] == ["new", "update", "end"]
    rows = store.rows()
    assert [r["state"] for r in rows] == ["delivered"] * 3 and rows[0]["attempts"] == 3
    stats = dispatcher.stats()["targets"]["webhook:pager"]
    assert stats["attempts_failed"] == 2 and stats["last_error"] == "HTTP 500"


def test_receiver_down_only_delays(tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret="test-secret").start()
    receiver.stop()  # the port now refuses connections
    store = make_outbox(tmp_path, outbound_config(webhooks=[hook(receiver)], retry=FAST_RETRY))
    dispatcher = OutboundDispatcher(store).start()
    try:
        dispatcher.enqueue(lifecycle("inc1")[:1])
        assert wait_until(lambda: store.rows()[0]["attempts"] >= 2)
        assert store.rows()[0]["state"] == "pending"
        assert "ConnectError" in (dispatcher.stats()["targets"]["webhook:pager"]["last_error"] or "")
        receiver.start()
        assert receiver.wait_for(1, timeout_s=10)
        assert wait_until(lambda: store.rows()[0]["state"] == "delivered")
    finally:
        dispatcher.stop()
        receiver.stop()


def test_a_name_that_turns_into_loopback_is_not_reached(webhook_receiver: WebhookReceiver) -> None:
    """The address is checked at every delivery: DNS that now answers loopback gets nowhere."""
    config = WebhookConfig.model_validate(
        hook(webhook_receiver, url=f"http://hooks.example.com:{webhook_receiver.port}/h")
    )
    sender = WebhookSender(config, GuardPolicy(allow_loopback=False), resolver=resolver_to("127.0.0.1"))
    result = sender.send("{}", "k", "new")
    sender.close()
    assert not result.ok and "loopback" in (result.error or "")
    assert webhook_receiver.hits == []


def test_credentials_never_reach_the_logs(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret="s3cr3t-hmac-key").start()
    receiver.status = 500
    url = f"http://alice:pa55word@127.0.0.1:{receiver.port}/hook/tok_abcdefghijklmnop?token=qwertyuiop"
    config = outbound_config(webhooks=[{"name": "pager", "url": url, "secret": "s3cr3t-hmac-key"}], retry=FAST_RETRY)
    store = make_outbox(tmp_path, config)
    caplog.set_level(logging.DEBUG)
    dispatcher = OutboundDispatcher(store).start()
    try:
        dispatcher.enqueue(lifecycle("inc1")[:1])
        assert wait_until(lambda: len(receiver.hits) >= 2)
        receiver.stop()
        assert wait_until(lambda: "ConnectError" in (store.rows()[0]["last_error"] or ""))
        stats = str(dispatcher.stats())
    finally:
        dispatcher.stop()
    assert receiver.hits[0].headers["authorization"].startswith("Basic ")  # userinfo became Basic auth
    text = caplog.text + stats + str(store.rows())
    for secret in ("pa55word", "qwertyuiop", "s3cr3t-hmac-key", "tok_abcdefghijklmnop"):
        assert secret not in text
    assert "HTTP Request: POST" in caplog.text  # httpx did log, without the path and query


# ----------------------------------------------------------------------------- https, pinned
@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An https receiver on 127.0.0.1 whose certificate names only 'webhook.test'."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=webhook.test", "-addext", "subjectAltName=DNS:webhook.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), cert, seen
    finally:
        server.shutdown()
        server.server_close()


def test_https_connects_to_the_checked_address_and_verifies_the_name(tls_receiver: tuple[int, Path, list[str]]) -> None:
    port, cert, seen = tls_receiver
    good = WebhookConfig(name="tls", url=f"https://webhook.test:{port}/h", ca_file=cert)  # type: ignore[arg-type]
    sender = WebhookSender(good, LOOPBACK, resolver=resolver_to("127.0.0.1"))
    result = sender.send("{}", "k", "new")
    sender.close()
    assert result.ok and result.status == 204, result.error
    assert seen == [f"webhook.test:{port}"]
    wrong = WebhookConfig(name="tls", url=f"https://other.test:{port}/h", ca_file=cert)  # type: ignore[arg-type]
    sender = WebhookSender(wrong, LOOPBACK, resolver=resolver_to("127.0.0.1"))
    result = sender.send("{}", "k", "new")
    sender.close()
    assert not result.ok and "certificate" in (result.error or "").lower()
    assert len(seen) == 1
