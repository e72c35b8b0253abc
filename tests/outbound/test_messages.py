"""Messages from incident records: kinds, idempotency keys, payloads, links."""

from __future__ import annotations

import json

from tests.outbound.helpers import lifecycle
from trtseg.outbound.messages import build_message, idempotency_key, message_kinds


def test_kinds_of_a_lifecycle() -> None:
    first, refresh, alert, later, close = lifecycle("inc1")
    assert [message_kinds(r) for r in (first, refresh, alert, later, close)] == [["new"], [], ["update"], [], ["end"]]


def test_stage_from_jpeg_bytes_before_the_sink_stored_them() -> None:
    first = lifecycle("inc1")[0]
    first.keyframe_paths = {}
    first.keyframes = {"open": {"raw": b"\xff\xd8"}}
    assert message_kinds(first) == ["new"]


def test_idempotency_keys() -> None:
    assert idempotency_key("inc1", "new") == "inc1:new:open"
    assert idempotency_key("inc1", "update") == "inc1:update:alert"
    assert idempotency_key("inc1", "end") == "inc1:end:closed"


def test_payload_of_an_escalation() -> None:
    alert = lifecycle("inc1")[2]
    message = build_message(alert, "update", "https://nvr.example.com")
    payload = json.loads(message.body())
    assert payload["type"] == "update" and payload["idempotency_key"] == "inc1:update:alert"
    assert payload["severity"] == "alert" and payload["status"] == "open"
    assert payload["camera_id"] == "cam1" and payload["site"] == "block-7" and payload["rule"] == "flying_lead"
    assert payload["rule_kind"] == "presence" and payload["zone"] == "building_safe_zone"
    assert payload["track_id"] == 7 and payload["class_name"] == "charging_cable"
    assert payload["result"].startswith("danger")
    assert payload["started_at"] == "2026-11-20T08:00:00Z" and payload["escalated_at"] == "2026-11-20T08:00:04Z"
    assert payload["ended_at"] is None
    root = "https://nvr.example.com/incidents/inc1"
    assert payload["keyframe"] == {"raw": f"{root}/keyframe/alert/raw", "annotated": f"{root}/keyframe/alert/annotated"}
    assert payload["clip_url"] == f"{root}/clip" and payload["url"] == root
    assert message.event_at.isoformat() == "2026-11-20T08:00:04+00:00"


def test_payload_without_public_base_url_has_no_links() -> None:
    close = lifecycle("inc1")[-1]
    payload = build_message(close, "end").payload
    assert payload["type"] == "end" and payload["ended_at"] == "2026-11-20T08:00:08Z"
    assert payload["keyframes"] == {} and payload["clip_url"] is None and payload["keyframe"] is None
