"""Outbound: incident messages to an MQTT broker and to webhooks, through a delivery outbox in the database.

Flow: the sink writes a batch of IncidentRecords -> ``OutboxStore.enqueue`` (messages per target,
filters, notification cooldown; one row per target and idempotency key) -> ``OutboundDispatcher``
(a lane per target: claim, send, mark delivered or back off) -> broker / receivers. At least once,
deduplicated by the receiver on the idempotency key.
"""

from trtseg.outbound.dispatcher import OutboundDispatcher
from trtseg.outbound.messages import Message, build_message, idempotency_key, message_kinds
from trtseg.outbound.mqtt import MqttError, MqttPublisher
from trtseg.outbound.outbox import Delivery, EnqueueResult, OutboxStore, backoff_s
from trtseg.outbound.schema import create_deliveries_table, deliveries
from trtseg.outbound.urlguard import (
    CheckedUrl,
    GuardPolicy,
    OutboundUrlError,
    check_url,
    cluster_ports,
    policy_from_config,
)
from trtseg.outbound.webhooks import WebhookSender, sign, verify_signature

__all__ = [
    "CheckedUrl",
    "Delivery",
    "EnqueueResult",
    "GuardPolicy",
    "Message",
    "MqttError",
    "MqttPublisher",
    "OutboundDispatcher",
    "OutboundUrlError",
    "OutboxStore",
    "WebhookSender",
    "backoff_s",
    "build_message",
    "check_url",
    "cluster_ports",
    "create_deliveries_table",
    "deliveries",
    "idempotency_key",
    "message_kinds",
    "policy_from_config",
    "sign",
    "verify_signature",
]
