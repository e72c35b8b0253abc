"""Load: the client's accounting, its loopback-only guard, and a short real run against the Serve API
while a camera runs (tools/load.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tools.load import Recorder, main, run_load
from tools.soak import MODEL


def test_recorder_counts_server_errors_and_transport_failures() -> None:
    rec = Recorder()
    now = time.perf_counter()
    rec.add("GET /events", now, 200, (200,))
    rec.add("GET /events", now, 503, (200,))
    rec.add("GET /events", now, "ConnectTimeout", (200,))
    rec.add("GET /events", now, 404, (200,))
    rec.add("DELETE /cameras/{id}", now, 204, (204,))
    found = rec.report()
    assert found["requests"] == 5 and found["errors"] == 2 and found["unexpected"] == 1
    assert found["endpoints"]["GET /events"]["error_rate"] == 0.5
    assert found["latency_ms"]["p99"] >= found["latency_ms"]["p50"] >= 0.0


def test_client_refuses_non_loopback_targets() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["client", "--url", "http://192.0.2.1:8000", "--duration", "1"])
    assert refused.value.code == 2


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing")
def test_short_load_against_the_serve_api(tmp_path: Path) -> None:
    report = run_load(tmp_path, cameras=1, duration_s=20.0, concurrency=8, max_requests=5000, churn_max=1, events=1000)
    assert report["requests"] > 50
    assert report["errors"] == 0 and report["unexpected"] == 0, report["endpoints"]
    assert report["endpoints"]["POST /cameras"]["ok"] == 1 and report["endpoints"]["DELETE /cameras/{id}"]["ok"] == 1
    camera = report["cameras"]["live0"]
    assert camera["frames_in"] > 0 and camera["fps_out"] > 0.3 * camera["source_fps"], camera
