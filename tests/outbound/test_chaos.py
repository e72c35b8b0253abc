"""Outbound chaos, short (tools/chaos_outbound.py is the long one): zero messages lost, repeats deduped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chaos_outbound import Plan, run_chaos

SHORT = Plan(
    incidents=24,
    produce_s=7.0,
    broker_at_s=0.5,
    broker_outage_s=2.0,
    receiver_500_s=1.0,
    receiver_down_s=1.0,
    kill_delay_s=1.0,
    settle_timeout_s=60.0,
    webhook_timeout_s=2.0,
    lease_s=2.5,
    backoff_max_s=0.5,
)


@pytest.mark.slow
def test_outbound_chaos_reconciles(tmp_path: Path) -> None:
    result = run_chaos(SHORT, tmp_path)
    expected = SHORT.incidents * 3
    assert result["expected"] == expected
    for target in ("mqtt", "webhook"):
        counts = result[target]
        assert counts["lost"] == 0, (target, result)
        assert counts["unique"] == expected and counts["unexpected"] == 0, (target, result)
    assert result["webhook_bad_signatures"] == 0
    assert [e["event"] for e in result["events"]] == [
        "broker stopped",
        "broker started",
        "receiver answers 500",
        "receiver down",
        "receiver up, slow",
        "dispatcher killed",
        "dispatcher started",
    ]
    killed = next(e for e in result["events"] if e["event"] == "dispatcher killed")
    assert killed["in_flight"] >= 1  # it died mid-delivery
    assert result["webhook"]["duplicates"] >= 1  # ... so that message came twice, and dedupe left one
    assert result["availability"]["offline"] >= 1  # the killed dispatcher's last will
    assert all(c["pending"] == 0 and c["failed"] == 0 for c in result["outbox"].values())
