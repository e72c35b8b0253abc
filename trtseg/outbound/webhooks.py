"""Webhooks: POST one JSON message to a receiver, signed, with an idempotency key; success is any 2xx.

Headers of every request:

- ``Content-Type: application/json``, ``X-Trtseg-Event: new|update|end``
- ``Idempotency-Key: {incident_id}:{kind}:{stage}``: the same for every retry of one message
- ``X-Trtseg-Timestamp: <unix seconds>`` and, with a secret,
  ``X-Trtseg-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}" under the secret>``

A receiver checks the signature with ``verify_signature`` (or the same three lines in any language)
and rejects stale timestamps against replay. The URL's address is checked at every attempt
(trtseg.outbound.urlguard) and the request goes to that address: the URL carries the checked IP,
``Host`` the name, and for https the name is the TLS SNI and the name the certificate must match.
Redirects are not followed (one could point anywhere) and proxies from the environment are not
used. The URL (it may hold a token), its credentials and the secret are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from trtseg.config.outbound import WebhookConfig
from trtseg.outbound.urlguard import GuardPolicy, OutboundUrlError, Resolver, check_url
from trtseg.sources import redact_text

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Trtseg-Timestamp"
SIGNATURE_HEADER = "X-Trtseg-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Trtseg-Event"
USER_AGENT = "trtseg-outbound/1"
MAX_RESPONSE_BYTES = 4096  # what is read of an answer: a receiver cannot make us buffer a large body
SIGNATURE_TOLERANCE_S = 300


class _HttpxUrlFilter(logging.Filter):
    """httpx logs each request's URL at INFO: keep only scheme, host and port (a path or query may be a token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"{arg.scheme}://{arg.host}:{arg.port or ''}/..." if isinstance(arg, httpx.URL) else arg
                for arg in record.args
            )
        return True


_HTTPX_FILTER = _HttpxUrlFilter()


def _install_log_filter() -> None:
    target = logging.getLogger("httpx")
    if _HTTPX_FILTER not in target.filters:
        target.addFilter(_HTTPX_FILTER)


def sign(secret: str | bytes, timestamp: str, body: str | bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"{timestamp}.{body}"`` under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    data = body.encode() if isinstance(body, str) else body
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + data, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Receiver side: the signature matches and the timestamp is within ``tolerance_s`` of now."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def shown_url(url: str) -> str:
    """A webhook URL as logs, stats and the API show it: scheme, host and port (a path, query or userinfo
    may hold a token)."""
    try:
        parts = urlsplit(url.strip())
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/..."
    except ValueError:
        return "<unparseable>"


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status: int | None = None
    error: str | None = None  # redacted, short
    retry_after_s: float | None = None
    elapsed_s: float = 0.0


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(int(value.strip())))
    except ValueError:
        return None  # an HTTP date: the backoff decides


class WebhookSender:
    """One receiver. Not thread-safe: one dispatcher lane uses it."""

    def __init__(
        self,
        config: WebhookConfig,
        policy: GuardPolicy,
        resolver: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self._resolver = resolver
        self._clock = clock
        self._url = config.url.get_secret_value().strip()
        self._secret = config.secret.get_secret_value() if config.secret else None
        self._hidden = self._secret_texts()
        _install_log_filter()
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.verify_tls and config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
        # One client per receiver: its pool is keyed by the pinned address, and the receiver has one name.
        self._client = httpx.Client(
            verify=verify,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 5.0)),
            transport=transport,
        )

    @property
    def target(self) -> str:
        return self.config.target

    def _secret_texts(self) -> list[str]:
        """Every piece of the URL and configuration that must not reach a log line."""
        hidden = [self._url]
        if self._secret:
            hidden.append(self._secret)
        try:
            parts = urlsplit(self._url)
            hidden += [p for p in (parts.password, parts.username, parts.query) if p]
            hidden += [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
            hidden += [segment for segment in parts.path.split("/") if len(segment) >= 16]  # tokens in paths
        except ValueError:
            pass
        return sorted(set(hidden), key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` without the URL, its credentials, tokens or the secret; at most 200 characters."""
        for secret in self._hidden:
            text = text.replace(secret, "***")
        return redact_text(text)[:200]

    def shown_url(self) -> str:
        """The receiver as logs and stats show it: scheme, host, port only."""
        return shown_url(self._url)

    def send(self, body: str, idempotency_key: str, kind: str) -> SendResult:
        """POST ``body`` once; never raises for network or receiver trouble."""
        started = time.monotonic()
        try:
            checked = check_url(
                self._url, field=f"webhooks.{self.config.name}.url", policy=self.policy, resolver=self._resolver
            )
        except OutboundUrlError as exc:
            return SendResult(False, error=self.redact(exc.reason), elapsed_s=time.monotonic() - started)
        data = body.encode()
        timestamp = str(int(self._clock()))
        headers = {
            "Host": checked.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: kind,
            IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: timestamp,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, data)
        extensions: dict[str, Any] = {}
        if checked.scheme == "https" and checked.sni_hostname:
            extensions["sni_hostname"] = checked.sni_hostname
        auth = (checked.username or "", checked.password or "") if checked.username is not None else None
        try:
            with self._client.stream(
                "POST", checked.pinned_url, content=data, headers=headers, extensions=extensions, auth=auth
            ) as response:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
                status = response.status_code
                retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return SendResult(False, error=self.redact(error), elapsed_s=time.monotonic() - started)
        elapsed = time.monotonic() - started
        if 200 <= status < 300:
            return SendResult(True, status=status, elapsed_s=elapsed)
        reason = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        return SendResult(False, status=status, error=reason, retry_after_s=retry_after, elapsed_s=elapsed)

    def close(self) -> None:
        self._client.close()
