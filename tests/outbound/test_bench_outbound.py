"""bench/bench_outbound.py on a few incidents: it measures both targets and prints its table."""

from __future__ import annotations

import pytest

from bench import bench_outbound


def test_bench_outbound_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_outbound.main(["--count", "5", "--interval-ms", "5"]) == 0
    out = capsys.readouterr().out
    assert "| MQTT (QoS 1, PUBACK) | 5 |" in out and "| webhook (HTTP POST, 2xx) | 5 |" in out
