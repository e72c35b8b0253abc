"""Where incidents go besides the database: an MQTT broker and webhooks, through the delivery outbox.

Every target has the same filters (severity, cameras, rules, message kinds) and a notification
cooldown per (camera, rule). Webhook URLs are requests the server makes on someone's behalf: the
scheme is checked here, the address after name resolution at every delivery (trtseg.outbound.urlguard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from trtseg.config.analytics import NAME_PATTERN, Severity
from trtseg.config.base import Section

MessageKind = Literal["new", "update", "end"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("new", "update", "end")
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
WEBHOOK_SCHEMES = ("http", "https")
# Ports of a Ray cluster and of this system that an outbound request must never reach (on any host):
# GCS (Ray's default 6379 and trtseg's local head 6380), Serve's HTTP proxy (8000), the dashboard
# (8265, whose job API runs code), the Ray client server (10001) and the dashboard agent (52365).
DEFAULT_BLOCKED_PORTS = (6379, 6380, 8000, 8265, 10001, 52365)
_TOPIC_FORBIDDEN = set("+#\x00")


def _safe_url_text(value: str) -> str:
    """The URL for an error message, without credentials or query (which may hold tokens)."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable>"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:120]


class TargetFilter(Section):
    """Which incident messages a target gets, and how often a camera's rule may notify it."""

    min_severity: Severity = Field(
        default="detection", description="Least severity sent: 'detection' (everything) or 'alert' (alerts only)."
    )
    cameras: list[str] = Field(default_factory=list, description="Camera ids sent; empty: every camera.")
    rules: list[str] = Field(default_factory=list, description="Rule names sent; empty: every rule.")
    kinds: list[MessageKind] = Field(
        default_factory=lambda: list(MESSAGE_KINDS),
        min_length=1,
        description="Message kinds sent: 'new' (an incident opened), 'update' (it escalated to an alert), "
        "'end' (it closed).",
    )
    cooldown_s: float = Field(
        default=0.0,
        ge=0.0,
        le=86_400.0,
        description="Notification cooldown per (camera, rule): an incident that starts within this many seconds "
        "of the last one notified for the same camera and rule is not sent (nor its update and end); it is "
        "counted as suppressed. 0: off.",
    )


class MqttConfig(TargetFilter):
    """An MQTT broker: incidents as JSON messages, live zone counts, availability with a last will."""

    url: str = Field(
        description="Broker as 'mqtt://host[:port]' (plain, default port 1883) or 'mqtts://host[:port]' "
        "(TLS, default 8883); credentials go in username/password, not in the URL."
    )
    username: str | None = Field(default=None, max_length=256, description="User name at the broker.")
    password: SecretStr | None = Field(default=None, description="Password at the broker (never logged).")
    client_id: str = Field(
        default="",
        max_length=128,
        description="MQTT client id; empty: 'trtseg-' and a random suffix. Two publishers with one id "
        "disconnect each other.",
    )
    topic_prefix: str = Field(
        default="trtseg",
        min_length=1,
        max_length=128,
        description="First level of every topic: {prefix}/incidents/{camera}, {prefix}/zones/{camera}/{zone}, "
        "{prefix}/availability.",
    )
    ca_file: Path | None = Field(default=None, description="CA bundle that signs the broker's certificate (mqtts).")
    cert_file: Path | None = Field(default=None, description="Client certificate for mutual TLS (mqtts).")
    key_file: Path | None = Field(default=None, description="Client certificate's private key (mqtts).")
    tls_insecure: bool = Field(
        default=False, description="Accept a broker certificate whose name does not match (testing only)."
    )
    keepalive_s: int = Field(
        default=30, ge=5, le=3600, description="Keep-alive interval; the broker sends the last will after 1.5x."
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0.0, le=300.0, description="Longest wait for the broker's PUBACK of one message."
    )
    retain_zone_counts: bool = Field(
        default=True, description="Publish live zone counts retained, so a new subscriber sees the latest at once."
    )

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        broker_url(value)
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if _TOPIC_FORBIDDEN & set(value) or value.startswith("/") or value.endswith("/") or value.startswith("$"):
            raise ValueError("topic_prefix must not contain '+', '#' or NUL, start with '/' or '$', or end with '/'")
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> MqttConfig:
        scheme = broker_url(self.url)[0]
        if scheme != "mqtts" and (self.ca_file or self.cert_file or self.key_file or self.tls_insecure):
            raise ValueError("ca_file, cert_file, key_file and tls_insecure need an 'mqtts://' url")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


def broker_url(value: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an MQTT broker URL; ValueError saying what is wrong with it."""
    shown = _safe_url_text(value)
    if "://" not in value:
        raise ValueError(f"broker url {shown!r} does not parse: expected mqtt://host[:port] or mqtts://host[:port]")
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker url {shown!r} does not parse ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in MQTT_SCHEMES:
        raise ValueError(f"broker url scheme {scheme!r} is not allowed; use mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker url {shown!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("broker url must not carry credentials; set username and password instead")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker url {shown!r} must be only scheme, host and port")
    return scheme, parts.hostname, port or MQTT_SCHEMES[scheme]


class WebhookConfig(TargetFilter):
    """One HTTP receiver: each message is POSTed as JSON, signed, with an idempotency key."""

    name: str = Field(pattern=NAME_PATTERN, description="Unique name; the target is 'webhook:<name>'.")
    url: SecretStr = Field(
        description="http:// or https:// URL the messages are POSTed to (kept secret: it may hold a token). "
        "Its address is checked after name resolution at every delivery and connected to as checked."
    )
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key: each request carries X-Trtseg-Signature: sha256=<hex> over "
        "'{X-Trtseg-Timestamp}.{body}'. Empty: requests are not signed.",
    )
    timeout_s: float = Field(default=10.0, gt=0.0, le=120.0, description="Longest wait for one request's answer.")
    verify_tls: bool = Field(default=True, description="Verify the receiver's certificate (https).")
    ca_file: Path | None = Field(default=None, description="CA bundle that signs the receiver's certificate.")
    cooldown_s: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="Notification cooldown per (camera, rule): an incident that starts within this many seconds "
        "of the last one notified for the same camera and rule is not sent (nor its update and end); it is "
        "counted as suppressed. 0: off.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        webhook_url_problem(value.get_secret_value(), raise_error=True)
        return value

    @property
    def target(self) -> str:
        return f"webhook:{self.name}"


def webhook_url_problem(value: str, raise_error: bool = False) -> str | None:
    """Why a webhook URL is unusable before resolution (scheme, host, form), or None."""
    problem: str | None = None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        problem = f"url does not parse ({exc})"
    else:
        scheme = parts.scheme.lower()
        if scheme not in WEBHOOK_SCHEMES:
            problem = f"url scheme {scheme or '(none)'!r} is not allowed; use http:// or https://"
        elif not parts.hostname:
            problem = "url has no host"
        elif parts.fragment:
            problem = "url must not have a #fragment"
        elif any(ch.isspace() or ord(ch) < 32 for ch in value.strip()):
            problem = "url must not contain spaces or control characters"
    if problem and raise_error:
        raise ValueError(problem)
    return problem


class RetryConfig(Section):
    """How deliveries are retried: exponential backoff with a cap, then kept as failed."""

    backoff_base_s: float = Field(default=1.0, gt=0.0, le=600.0, description="Wait after the first failed attempt.")
    backoff_max_s: float = Field(default=300.0, gt=0.0, le=86_400.0, description="Longest wait between attempts.")
    max_attempts: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Attempts before a delivery is marked failed (kept, never deleted); with the defaults about "
        "8 hours of retries. A broker that is down costs no attempts: messages wait for it.",
    )
    lease_s: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="A claimed delivery is retried by any dispatcher after this long without an outcome (its "
        "dispatcher died mid-delivery); longer than any timeout.",
    )
    poll_interval_s: float = Field(
        default=0.5, gt=0.0, le=60.0, description="How often the outbox is read for due deliveries when not woken."
    )
    batch_size: int = Field(default=100, ge=1, le=10_000, description="Deliveries claimed at once per target.")
    keep_days: float = Field(
        default=30.0,
        gt=0.0,
        le=3650.0,
        description="Delivered and suppressed rows older than this are deleted from the outbox (pending and "
        "failed ones are kept).",
    )


class OutboundConfig(Section):
    """MQTT and webhooks for incidents, the public address their links use, and what URLs may reach."""

    mqtt: MqttConfig | None = Field(default=None, description="MQTT broker; empty: no MQTT.")
    webhooks: list[WebhookConfig] = Field(default_factory=list, max_length=64, description="Webhook receivers.")
    public_base_url: str = Field(
        default="",
        max_length=512,
        description="The API's address as receivers reach it (e.g. 'https://nvr.example.com'), for the key frame "
        "and clip links in messages; empty: messages carry no links.",
    )
    allow_loopback: bool = Field(
        default=False,
        description="Let outbound URLs (webhooks, camera sources set through the API) reach loopback addresses "
        "(127.0.0.0/8, ::1, 0.0.0.0). Link-local and cloud metadata addresses are refused always.",
    )
    allow_private_networks: bool = Field(
        default=True,
        description="Let outbound URLs reach private and unique-local networks (10/8, 172.16/12, 192.168/16, "
        "100.64/10, fc00::/7): receivers on the site's own network are common.",
    )
    blocked_ports: list[int] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKED_PORTS),
        description="Ports outbound URLs may not reach on any host: the cluster's own (Ray GCS, dashboard, "
        "client server, agent; Serve). The configured cluster.head_port, cluster.dashboard_port and api.port "
        "are added. Empty: none refused.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retries, backoff and the outbox's upkeep.")

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value:
            try:
                parts = urlsplit(value)
            except ValueError as exc:
                raise ValueError(f"public_base_url does not parse ({exc})") from None
            if parts.scheme not in WEBHOOK_SCHEMES or not parts.hostname or parts.query or parts.fragment:
                raise ValueError("public_base_url must be http(s)://host[:port][/path] without query or fragment")
        return value

    @field_validator("blocked_ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        bad = [p for p in value if not 1 <= p <= 65535]
        if bad:
            raise ValueError(f"blocked_ports must be 1..65535, got {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_names(self) -> OutboundConfig:
        seen: set[str] = set()
        for hook in self.webhooks:
            if hook.name in seen:
                raise ValueError(f"webhook name '{hook.name}' is used more than once")
            seen.add(hook.name)
        return self

    @property
    def enabled(self) -> bool:
        return self.mqtt is not None or bool(self.webhooks)

    def targets(self) -> dict[str, TargetFilter]:
        """Every target by name ('mqtt', 'webhook:<name>') with its filter."""
        out: dict[str, TargetFilter] = {}
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt
        for hook in self.webhooks:
            out[hook.target] = hook
        return out
