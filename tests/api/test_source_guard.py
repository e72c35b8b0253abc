"""Camera sources set through the API are URLs the server connects to on a caller's behalf: link-local,
cloud-metadata and the cluster's own ports are refused always, loopback unless the configuration allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deployments.api import create_app
from trtseg.config import ApiConfig, PusherConfig
from trtseg.config.outbound import OutboundConfig
from trtseg.outbound.urlguard import policy_from_config


def client(store, control, tmp_path: Path, allow_loopback: bool) -> TestClient:  # type: ignore[no-untyped-def]
    policy = policy_from_config(OutboundConfig(allow_loopback=allow_loopback), {6380, 8000})
    app = create_app(control, store, ApiConfig(), pusher=PusherConfig(hls_dir=tmp_path), outbound=policy)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("source", "allow_loopback", "refused"),
    [
        ("rtsp://169.254.169.254/latest", True, "169.254"),
        ("rtsp://[fe80::1]:554/x", True, "fe80"),
        ("http://[fd00:ec2::254]/latest/meta-data", True, "fd00:ec2::254"),
        ("rtsp://127.0.0.1:8554/cam", False, "loopback"),
        ("rtsp://localhost:8554/cam", False, "loopback"),
        ("rtsp://127.0.0.1:8265/cam", True, "8265"),
        ("rtmp://127.0.0.1:6380/live", True, "6380"),
    ],
)
def test_refused_sources_name_the_field(
    sqlite_store, offline_control, tmp_path: Path, source: str, allow_loopback: bool, refused: str
) -> None:  # type: ignore[no-untyped-def]
    api = client(sqlite_store, offline_control, tmp_path, allow_loopback)
    answer = api.post("/cameras", json={"id": "c1", "source": source})
    assert answer.status_code == 422, answer.text
    text = answer.text
    assert "source" in text and refused in text


def test_allowed_sources_reach_the_controller(sqlite_store, offline_control, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api = client(sqlite_store, offline_control, tmp_path, allow_loopback=True)
    answer = api.post("/cameras", json={"id": "c1", "source": "rtsp://127.0.0.1:8554/cam"})
    assert answer.status_code == 503  # past the guard; the controller of this test is down
