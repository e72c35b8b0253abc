"""MQTT publisher (paho-mqtt 2.x): incident messages, live zone counts, availability with a last will.

Topics, under ``topic_prefix`` (default 'trtseg'):

- ``{prefix}/incidents/{camera}``: one JSON message per incident message (its 'type' is new, update
  or end, its 'idempotency_key' lets a subscriber drop repeats), QoS 1, not retained;
- ``{prefix}/zones/{camera}/{zone}``: the live count of objects in a zone, JSON, QoS 1, retained;
- ``{prefix}/availability``: 'online' (retained) once connected; the broker publishes the last will
  'offline' (retained) when the connection drops without a goodbye, and ``stop`` says it itself.

``publish`` returns only once the broker acknowledged the message (PUBACK), so the outbox marks a
message delivered only when the broker has it. paho's network thread reconnects by itself with
backoff; while disconnected nothing is published (messages wait in the outbox, costing no attempts).
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from trtseg.config.outbound import MqttConfig, broker_url

logger = logging.getLogger(__name__)

QOS = 1
MAX_QUEUED = 10_000  # paho's own queue of unacknowledged messages
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})


class MqttError(RuntimeError):
    """A message the broker did not acknowledge (not connected, timed out, refused)."""


def topic_part(text: str) -> str:
    """A camera or zone name as one topic level (no '/', '+', '#')."""
    return (text or "_").translate(_TOPIC_UNSAFE)


class MqttPublisher:
    """One connection to the broker, kept up by paho's network thread."""

    def __init__(
        self, config: MqttConfig, client_factory: Callable[..., paho.Client] = paho.Client, name: str = "mqtt"
    ) -> None:
        self.config = config
        self.name = name
        self.scheme, self.host, self.port = broker_url(config.url)
        self.client_id = config.client_id or f"trtseg-{secrets.token_hex(4)}"
        self.prefix = config.topic_prefix
        self._factory = client_factory
        self._client: paho.Client | None = None
        self._connected = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {"connects": 0, "disconnects": 0, "published": 0, "last_error": None}

    # ------------------------------------------------------------------ topics
    def incident_topic(self, camera_id: str) -> str:
        return f"{self.prefix}/incidents/{topic_part(camera_id)}"

    def zone_topic(self, camera_id: str, zone: str) -> str:
        return f"{self.prefix}/zones/{topic_part(camera_id)}/{topic_part(zone)}"

    @property
    def availability_topic(self) -> str:
        return f"{self.prefix}/availability"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> MqttPublisher:
        """Connect in the background (returns at once; ``wait_connected`` waits)."""
        if self._client is not None:
            return self
        client = self._factory(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.enable_logger(logging.getLogger("trtseg.outbound.paho"))
        if self.config.username is not None:
            password = self.config.password.get_secret_value() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self.scheme == "mqtts":
            client.tls_set(
                ca_certs=str(self.config.ca_file) if self.config.ca_file else None,
                certfile=str(self.config.cert_file) if self.config.cert_file else None,
                keyfile=str(self.config.key_file) if self.config.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(self.config.tls_insecure)
        client.will_set(self.availability_topic, "offline", qos=QOS, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.connect_async(self.host, self.port, keepalive=self.config.keepalive_s)
        client.loop_start()
        self._client = client
        logger.info(
            "mqtt connecting broker=%s:%d client_id=%s tls=%s",
            self.host,
            self.port,
            self.client_id,
            self.scheme == "mqtts",
        )
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say 'offline' (when connected), disconnect cleanly and stop the network thread."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = True
        if self._connected.is_set():
            try:
                info = client.publish(self.availability_topic, "offline", qos=QOS, retain=True)
                info.wait_for_publish(timeout=min(timeout_s, 2.0))
            except (RuntimeError, ValueError) as exc:
                logger.info("mqtt offline not acknowledged error=%s", exc)
        client.disconnect()
        client.loop_stop()
        self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"connected": self.connected, "broker": f"{self.host}:{self.port}", **self._stats}

    # ------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: str | bytes, retain: bool = False, timeout_s: float | None = None) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; MqttError otherwise."""
        error = self.publish_many([(topic, payload, retain)], timeout_s)[0]
        if error is not None:
            raise MqttError(error)

    def publish_many(
        self, items: Sequence[tuple[str, str | bytes, bool]], timeout_s: float | None = None
    ) -> list[str | None]:
        """Publish every item, then wait for each PUBACK; per item None (acknowledged) or the error."""
        client = self._client
        if client is None or not self._connected.is_set():
            return ["not connected to the broker"] * len(items)
        infos: list[Any] = []
        for topic, payload, retain in items:
            infos.append(client.publish(topic, payload, qos=QOS, retain=retain))
        deadline = time.monotonic() + (self.config.publish_timeout_s if timeout_s is None else timeout_s)
        errors: list[str | None] = []
        for info in infos:
            try:
                info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                errors.append(str(exc))
                continue
            errors.append(None if info.is_published() else "no PUBACK before the timeout")
        done = sum(e is None for e in errors)
        with self._lock:
            self._stats["published"] += done
            if done < len(errors):
                self._stats["last_error"] = next(e for e in errors if e is not None)
        return errors

    def publish_nowait(self, topic: str, payload: str | bytes, retain: bool = False) -> bool:
        """Publish at QoS 1 without waiting (live state the next value supersedes); False when not connected."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        return client.publish(topic, payload, qos=QOS, retain=retain).rc == paho.MQTT_ERR_SUCCESS

    # ------------------------------------------------------------------ callbacks (paho's thread)
    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            with self._lock:
                self._stats["last_error"] = f"broker refused the connection: {reason}"
            logger.warning("mqtt connection refused broker=%s:%d reason=%s", self.host, self.port, reason)
            return
        client.publish(self.availability_topic, "online", qos=QOS, retain=True)
        with self._lock:
            self._stats["connects"] += 1
        self._connected.set()
        logger.info("mqtt connected broker=%s:%d client_id=%s", self.host, self.port, self.client_id)

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._stopping:
            logger.info("mqtt disconnected broker=%s:%d reason=stopped", self.host, self.port)
        elif was:
            with self._lock:
                self._stats["disconnects"] += 1
                self._stats["last_error"] = f"disconnected: {reason}"
            logger.warning("mqtt disconnected broker=%s:%d reason=%s", self.host, self.port, reason)

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        with self._lock:
            self._stats["last_error"] = "cannot connect to the broker"
