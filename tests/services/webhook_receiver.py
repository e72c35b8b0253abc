"""A real webhook receiver on loopback, as a user would run one: it checks signatures and dedupes by key.

``WebhookReceiver`` answers POSTs with ``status`` (settable: 200, 500, ...), optionally after
``delay_s``, or the next ``fail_next`` requests with 500; it can ``stop`` (the port refuses
connections) and ``start`` again on the same port. Every request is recorded with its headers,
body and whether its signature verified.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trtseg.outbound.webhooks import IDEMPOTENCY_HEADER, verify_signature


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    signed_ok: bool | None
    at: float

    @property
    def key(self) -> str:
        return self.headers.get(IDEMPOTENCY_HEADER.lower(), "")

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.status = 200
        self.delay_s = 0.0
        self.fail_next = 0
        self.in_flight = 0
        self.hits: list[Hit] = []
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver._lock.notify_all()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = 500
                    else:
                        status = receiver.status
                headers = {k.lower(): v for k, v in self.headers.items()}
                signed = None if receiver.secret is None else verify_signature(receiver.secret, headers, body)
                with receiver._lock:
                    receiver.hits.append(Hit(self.path, headers, body, status, signed, time.time()))
                    receiver.in_flight -= 1
                    receiver._lock.notify_all()
                payload = b'{"ok":true}' if status < 300 else b'{"ok":false}'
                with contextlib.suppress(OSError):  # the sender may be gone (killed mid-delivery)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections and kept-alive ones are cut."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------------ what arrived
    def accepted(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if 200 <= h.status < 300]

    def unique_keys(self) -> set[str]:
        """The receiver's dedupe: accepted messages by idempotency key."""
        return {h.key for h in self.accepted()}

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        """Until ``count`` distinct keys were accepted."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len({h.key for h in self.hits if 200 <= h.status < 300}) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.2))
        return True


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret="test-secret").start()
    try:
        yield receiver
    finally:
        receiver.stop()
