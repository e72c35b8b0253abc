"""A real throwaway Mosquitto broker on a free loopback port, and a subscriber that records what it sees.

``mosquitto_broker``: a broker of the test's own (config file: one listener on 127.0.0.1, anonymous
clients allowed, no persistence), which the test may ``stop``/``kill`` and ``start`` again on the
same port (chaos). Installed by ``scripts/setup.sh --test`` (Debian package ``mosquitto``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services.mariadb import SBIN_PATH
from tests.services.ports import free_port, kill_process, stop_process, wait_for_port


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto", path=SBIN_PATH)


class MosquittoBroker:
    """One broker process; ``stop``/``kill`` and ``start`` keep its port."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False) -> None:
        """``persistence``: keep sessions and queued QoS 1 messages across a clean stop and start."""
        binary = mosquitto_binary()
        if binary is None:
            pytest.skip("mosquitto is not installed (scripts/setup.sh --test installs it)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        stored = f"persistence true\npersistence_location {workdir}/\n" if persistence else "persistence false\n"
        # Started as root, mosquitto switches to the user 'mosquitto', who cannot write a test's directory.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}{stored}"
            "log_dest stderr\nlog_type error\nlog_type warning\n",
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> MosquittoBroker:
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - the broker writes it for its life
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_port(self.port, timeout_s=timeout_s)
        except TimeoutError:
            self.kill()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (a clean shutdown) and wait."""
        stop_process(self.proc, timeout_s, kill_wait_s=5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes as in a crash."""
        kill_process(self.proc, wait_s=5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class MqttCollector:
    """A subscriber (paho) that records every message; reconnects and resubscribes by itself.

    With a ``client_id`` and ``clean_session=False`` the broker keeps its subscription and queues
    QoS 1 messages for it while it is away (a broker with persistence keeps them across a restart).
    """

    host: str
    port: int
    topic: str = "#"
    client_id: str = ""
    clean_session: bool = True
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=self.clean_session
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)

    def start(self, timeout_s: float = 10.0) -> MqttCollector:
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError("the test subscriber did not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.time()))
            self._cond.notify_all()

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> list[Received]:
        """Wait until ``predicate(received)`` holds for at least one message; returns those that do."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                hits = [m for m in self.messages if predicate(m)]
                if hits or time.monotonic() >= deadline:
                    return hits
                self._cond.wait(max(0.0, min(0.2, deadline - time.monotonic())))

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running broker of this test's own (it may stop and restart it)."""
    broker = MosquittoBroker(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
