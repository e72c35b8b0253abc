"""Liveness, readiness, version, config, metrics and the dashboard's files, with the controller down."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

import trtseg


def test_health_and_version(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    version = client.get("/version").json()
    assert version["trtseg"] == trtseg.__version__ and version["ray"]


def test_ready_is_503_without_controller(client: TestClient) -> None:
    answer = client.get("/ready")
    assert answer.status_code == 503
    assert answer.json()["ready"] is False and answer.json()["detail"]


def test_controller_calls_are_503_with_retry_after(client: TestClient) -> None:
    for path in ("/cameras", "/cameras/cam1", "/cameras/cam1/frame.jpg", "/config"):
        answer = client.get(path)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.headers["retry-after"] and answer.json()["request_id"] == answer.headers["x-request-id"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    client.get("/health")
    client.get("/events", params={"limit": 0})
    text = client.get("/metrics").text
    assert 'trtseg_api_requests_total{method="GET",route="/health",status="200"} 1' in text
    assert 'trtseg_api_requests_total{method="GET",route="/events",status="422"} 1' in text
    assert 'trtseg_api_request_seconds_bucket{method="GET",route="/health",le="+Inf"} 1' in text
    assert "trtseg_controller_up 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2, line


def test_dashboard_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/app.js"' in page.text
    assert (
        client.get("/static/app.js").headers["content-type"].startswith(("application/javascript", "text/javascript"))
    )
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../api.py").status_code == 404


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    for expected in (
        "/health",
        "/ready",
        "/cameras",
        "/cameras/{camera_id}/live.mjpg",
        "/events",
        "/events/counts",
        "/events/{event_id}/keyframe",
        "/infer",
        "/metrics",
        "/hls/{camera_id}/{file}",
    ):
        assert expected in paths
    assert all(op.get("summary") for item in schema["paths"].values() for op in item.values())


def test_cors(make_client: Callable[..., TestClient]) -> None:
    client = make_client(cors_origins=["http://allowed.example"])
    ok = client.options("/events", headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "GET"})
    assert ok.headers.get("access-control-allow-origin") == "http://allowed.example"
    other = client.get("/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_hide_secrets() -> None:
    from deployments.routes_system import hide_secrets

    shown = hide_secrets(
        {
            "api": {"token": "abc", "token_for_reads": True, "port": 8000},
            "sink": {"database_url": "mysql+pymysql://u:pw@db:3306/x", "keyframe_dir": "/var/kf"},
            "cameras": [{"source": "rtsp://admin:hunter2@10.0.0.5/s", "push": "hls"}],
        }
    )
    assert shown["api"] == {"token": "***", "token_for_reads": True, "port": 8000}
    assert shown["sink"] == {"database_url": "***", "keyframe_dir": "/var/kf"}
    assert shown["cameras"][0]["source"] == "rtsp://***@10.0.0.5/s"


class _CorruptStore:
    """A store whose rows do not fit the response model: the one way left to reach the 500 handler."""

    def get(self, event_id: str) -> dict[str, object]:
        return {"event_id": event_id, "started_at": "not a time"}


def test_unexpected_error_is_a_logged_500_with_request_id(
    make_client: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(store=_CorruptStore())
    with caplog.at_level("ERROR", logger="deployments.api"):
        answer = client.get("/events/abc", headers={"X-Request-ID": "trace-42"})
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "internal error; quote the request id when reporting it",
        "request_id": "trace-42",
    }
    assert answer.headers["x-request-id"] == "trace-42"
    assert any("request_id=trace-42" in record.getMessage() for record in caplog.records)
    assert "not a time" not in answer.text  # internals stay in the log
