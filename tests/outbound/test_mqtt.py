"""MQTT against a real Mosquitto: QoS 1 with PUBACK, retained availability, the last will, broker outages."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.outbound.helpers import lifecycle, make_outbox, outbound_config
from tests.services.mosquitto import MosquittoBroker, MqttCollector
from trtseg.config.outbound import MqttConfig
from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.mqtt import MqttError, MqttPublisher

FAST_RETRY = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_interval_s": 0.05, "lease_s": 5}


def publisher_for(broker: MosquittoBroker, **fields: object) -> MqttPublisher:
    config = MqttConfig.model_validate({"url": broker.url, "publish_timeout_s": 3, "keepalive_s": 5, **fields})
    return MqttPublisher(config)


def test_publish_waits_for_puback_and_availability_is_retained(mosquitto_broker: MosquittoBroker) -> None:
    publisher = publisher_for(mosquitto_broker, topic_prefix="site7").start()
    collector = MqttCollector("127.0.0.1", mosquitto_broker.port, "site7/#").start()
    try:
        assert publisher.wait_connected(10)
        publisher.publish(publisher.incident_topic("cam/1"), '{"type":"new"}')
        hits = collector.wait_for(lambda m: m.topic == "site7/incidents/cam_1")
        assert [h.json() for h in hits] == [{"type": "new"}]
        # A subscriber that comes later still sees the retained 'online'.
        late = MqttCollector("127.0.0.1", mosquitto_broker.port, "site7/availability").start()
        try:
            online = late.wait_for(lambda m: m.payload == b"online")
            assert online and online[0].retain
        finally:
            late.stop()
    finally:
        publisher.stop()
        offline = collector.wait_for(lambda m: m.topic == "site7/availability" and m.payload == b"offline")
        collector.stop()
    assert offline  # a clean stop says so itself


def test_last_will_when_the_connection_drops(mosquitto_broker: MosquittoBroker) -> None:
    publisher = publisher_for(mosquitto_broker).start()
    collector = MqttCollector("127.0.0.1", mosquitto_broker.port, "trtseg/availability").start()
    try:
        assert publisher.wait_connected(10)
        assert collector.wait_for(lambda m: m.payload == b"online")
        count_online = len(collector.on("trtseg/availability"))
        # The network goes away under the client (no DISCONNECT is sent): the broker publishes the will.
        sock = publisher._client.socket()  # type: ignore[union-attr]
        sock.shutdown(socket.SHUT_RDWR)
        will = collector.wait_for(lambda m: m.payload == b"offline", timeout_s=10)
        assert will, "the broker did not publish the last will"
        # paho reconnects by itself and says 'online' again.
        assert collector.wait_for(
            lambda m: m.payload == b"online" and len(collector.on("trtseg/availability")) > count_online + 1,
            timeout_s=15,
        )
        assert publisher.wait_connected(10)
        assert publisher.stats()["disconnects"] == 1
    finally:
        publisher.stop()
        collector.stop()


def test_publish_while_disconnected_fails_fast(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "b")  # never started
    publisher = publisher_for(broker).start()
    try:
        started = time.monotonic()
        try:
            publisher.publish("trtseg/x", "1")
            raise AssertionError("published without a broker")
        except MqttError as exc:
            assert "not connected" in str(exc)
        assert time.monotonic() - started < 1
    finally:
        publisher.stop()


def test_dispatcher_over_mqtt_and_a_broker_outage_costs_no_attempts(
    tmp_path: Path, mosquitto_broker: MosquittoBroker
) -> None:
    config = outbound_config(mqtt={"url": mosquitto_broker.url, "publish_timeout_s": 3}, retry=FAST_RETRY)
    store = make_outbox(tmp_path, config)
    collector = MqttCollector("127.0.0.1", mosquitto_broker.port, "trtseg/incidents/#").start()
    dispatcher = OutboundDispatcher(store).start()
    try:
        assert dispatcher.publisher is not None and dispatcher.publisher.wait_connected(10)
        dispatcher.enqueue(lifecycle("a"))
        assert len(collector.wait_for(lambda m: m.json()["type"] == "end")) == 1
        mosquitto_broker.stop()
        deadline = time.monotonic() + 10
        while dispatcher.publisher.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        dispatcher.enqueue(lifecycle("b"))
        time.sleep(1.0)
        assert {r["attempts"] for r in store.rows() if r["incident_id"] == "b"} == {0}
        assert dispatcher.stats()["broker_connected"] is False
        mosquitto_broker.start()
        assert collector.wait_for(lambda m: m.json()["idempotency_key"] == "b:end:closed", timeout_s=20)
    finally:
        dispatcher.stop()
        collector.stop()
    keys = [m.json()["idempotency_key"] for m in collector.messages]
    assert set(keys) == {f"{i}:{k}" for i in "ab" for k in ("new:open", "update:alert", "end:closed")}
    assert [k for k in keys if k.startswith("b:")] == ["b:new:open", "b:update:alert", "b:end:closed"]
    assert all(r["state"] == "delivered" for r in store.rows())


def test_zone_counts_are_retained_and_sent_on_change(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    store = make_outbox(tmp_path, outbound_config(mqtt={"url": mosquitto_broker.url}))
    dispatcher = OutboundDispatcher(store).start()
    try:
        assert dispatcher.publisher is not None and dispatcher.publisher.wait_connected(10)
        assert dispatcher.publish_zone_counts("cam1", {"bay": 2, "street": 0}) == 2
        assert dispatcher.publish_zone_counts("cam1", {"bay": 2, "street": 1}) == 1
        time.sleep(0.3)
        collector = MqttCollector("127.0.0.1", mosquitto_broker.port, "trtseg/zones/#").start()
        try:
            hits = collector.wait_for(lambda m: m.topic == "trtseg/zones/cam1/street")
            assert hits[0].retain and hits[0].json()["count"] == 1
        finally:
            collector.stop()
    finally:
        dispatcher.stop()
