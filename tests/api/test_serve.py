"""The real Ray Serve application over HTTP on a free port: Serve's proxy, the ingress replica, the app."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.services.ports import free_port
from tests.services.ray_cluster import RayTestCluster
from trtseg.config import ApiConfig, ClusterConfig, PusherConfig, SinkConfig, SystemConfig

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def served(ray_local: RayTestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemConfig]:
    from ray import serve

    from deployments.app import deploy

    root: Path = tmp_path_factory.mktemp("serve")
    config = SystemConfig(
        cluster=ClusterConfig(namespace=ray_local.namespace),
        api=ApiConfig(port=free_port(), token="serve-token"),
        sink=SinkConfig(database_url=f"sqlite:///{root / 'events.db'}", keyframe_dir=root / "kf"),
        pusher=PusherConfig(hls_dir=root / "hls"),
    )
    deploy(config)
    try:
        yield config
    finally:
        serve.shutdown()


def test_curl_health(served: SystemConfig) -> None:
    url = f"http://127.0.0.1:{served.api.port}/health"
    out = subprocess.run(["curl", "-sS", "--max-time", "10", url], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '{"status":"ok"}'


def test_app_behind_serve(served: SystemConfig) -> None:
    base = f"http://127.0.0.1:{served.api.port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/events").json()["items"] == []
        assert client.delete("/cameras/cam1").status_code == 401
        assert "trtseg_api_requests_total" in client.get("/metrics").text
        page = client.get("/")
        assert page.status_code == 200 and "trtseg" in page.text
        assert client.get("/openapi.json").json()["info"]["title"] == "trtseg"
