"""Roles (admin and viewer tokens), signed media links, the page's security headers and the refusal to
bind off loopback without an admin token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from deployments import auth
from tests.api.conftest import T0, jpeg
from tests.db.incident_helpers import incident
from trtseg.config import ApiConfig, ConfigError, SystemConfig, parse_config
from trtseg.db import EventStore
from trtseg.keyframes import KeyframeStore

ADMIN, VIEWER = "admin-s3cret", "viewer-s3cret"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_VIEWER = {"Authorization": f"Bearer {VIEWER}"}
CAMERA = {"id": "cam9", "source": "rtsp://127.0.0.1:8554/x"}
ANALYTICS = {"zones": [{"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]}


def _seed(store: EventStore, keyframe_dir: Path) -> str:
    paths = KeyframeStore(keyframe_dir).save("block-7", "cam1", T0.date(), "inc-r-open", {"annotated": jpeg(seed=3)})
    store.incidents.upsert([replace(incident("inc-r", started=T0), keyframe_paths={"open": paths})])
    return "inc-r"


@pytest.fixture
def roles(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(admin_token=ADMIN, viewer_token=VIEWER)


def _changes(client: TestClient, headers: dict[str, str]) -> list[int]:
    return [
        client.post("/cameras", json=CAMERA, headers=headers).status_code,
        client.put("/cameras/cam9", json=CAMERA, headers=headers).status_code,
        client.patch("/cameras/cam9", json={"confidence": 0.3}, headers=headers).status_code,
        client.delete("/cameras/cam9", headers=headers).status_code,
        client.put("/cameras/cam9/analytics", json=ANALYTICS, headers=headers).status_code,
        client.post("/infer", content=b"x", headers={**headers, "Content-Type": "image/jpeg"}).status_code,
    ]


def test_viewer_reads_but_may_not_change(roles: TestClient) -> None:
    assert _changes(roles, AS_VIEWER) == [403] * 6
    answer = roles.delete("/cameras/cam9", headers=AS_VIEWER)
    assert "admin" in answer.json()["detail"]
    assert _changes(roles, {}) == [401] * 6
    assert _changes(roles, {"Authorization": "Bearer wrong"}) == [401] * 6
    # the admin gets past auth: controller down (503), a bad image (415)
    assert _changes(roles, AS_ADMIN) == [503, 503, 503, 503, 503, 415]
    for path in ("/events", "/incidents", "/version", "/zones/counts"):
        assert roles.get(path).status_code == 401, path  # a viewer token makes reads need a token
        assert roles.get(path, headers=AS_VIEWER).status_code in (200, 503), path
        assert roles.get(path, headers=AS_ADMIN).status_code in (200, 503), path
    assert roles.get("/health").status_code == 200
    assert roles.get("/").status_code == 200


def test_acknowledging_is_open_to_both_roles(roles: TestClient, sqlite_store: EventStore, keyframe_dir: Path) -> None:
    incident_id = _seed(sqlite_store, keyframe_dir)
    assert roles.post(f"/incidents/{incident_id}/ack", json={"by": "x"}).status_code == 401
    answer = roles.post(f"/incidents/{incident_id}/ack", json={"by": "operator"}, headers=AS_VIEWER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["acknowledged_by"] == "operator"
    bulk = roles.post("/incidents/ack", json={"ids": [incident_id, "nope"]}, headers=AS_ADMIN)
    assert bulk.status_code == 200 and bulk.json()["not_found"] == ["nope"]


def test_whoami(roles: TestClient, make_client: Callable[..., TestClient]) -> None:
    assert roles.get("/auth/whoami").json()["role"] == "anonymous"
    viewer = roles.get("/auth/whoami", headers=AS_VIEWER).json()
    assert viewer["role"] == "viewer" and not viewer["can_change"] and viewer["can_acknowledge"]
    admin = roles.get("/auth/whoami", headers=AS_ADMIN).json()
    assert admin["role"] == "admin" and admin["can_change"]
    assert roles.get("/auth/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401
    open_api = make_client().get("/auth/whoami").json()
    assert open_api == {**open_api, "role": "admin", "auth": False, "can_change": True}


def test_legacy_token_is_the_admin_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client(token=ADMIN, viewer_token=VIEWER)
    assert client.get("/auth/whoami", headers=AS_ADMIN).json()["role"] == "admin"
    assert client.delete("/cameras/cam9", headers=AS_VIEWER).status_code == 403
    assert client.delete("/cameras/cam9", headers=AS_ADMIN).status_code == 503


def test_tokens_never_in_the_query(roles: TestClient) -> None:
    assert roles.get("/events", params={"access_token": ADMIN}).status_code == 401
    assert roles.delete("/cameras/cam9", params={"access_token": ADMIN}).status_code == 401


def _link(client: TestClient, path: str, headers: dict[str, str] = AS_VIEWER) -> str:
    answer = client.post("/auth/links", json={"paths": [path]}, headers=headers)
    assert answer.status_code == 200, answer.text
    return "/" + answer.json()["links"][path]


def test_signed_links(roles: TestClient, sqlite_store: EventStore, keyframe_dir: Path) -> None:
    incident_id = _seed(sqlite_store, keyframe_dir)
    media = f"incidents/{incident_id}/keyframe/open/annotated"
    assert roles.get("/" + media).status_code == 401
    assert roles.post("/auth/links", json={"paths": [media]}).status_code == 401  # links need a token
    url = _link(roles, media)
    assert parse_qs(urlsplit(url).query).keys() == {"exp", "sig"}
    answer = roles.get(url)
    assert answer.status_code == 200 and answer.content[:2] == b"\xff\xd8"
    assert roles.head(url).status_code in (200, 405)
    # the signature covers the path: another incident's key frame, a non-media read, tampering
    other = url.replace(f"/incidents/{incident_id}/", "/incidents/inc-other/")
    assert roles.get(other).status_code == 401
    query = urlsplit(url).query
    assert roles.get(f"/incidents/{incident_id}?{query}").status_code == 401
    assert roles.get(f"/incidents?{query}").status_code == 401
    exp = parse_qs(query)["exp"][0]
    assert roles.get(url.replace(f"exp={exp}", f"exp={int(exp) + 60}")).status_code == 401
    assert roles.get(url.replace("sig=", "sig=A")).status_code == 401
    # a link never authorises a change
    assert roles.post(f"/incidents/{incident_id}/ack?{query}").status_code == 401
    # only media paths are signed
    refused = roles.post("/auth/links", json={"paths": ["incidents"]}, headers=AS_VIEWER)
    assert refused.status_code == 422
    assert _link(roles, "cameras/cam1/live.mjpg").startswith("/cameras/cam1/live.mjpg?exp=")
    assert _link(roles, "/events/e1/keyframe").startswith("/events/e1/keyframe?exp=")


def test_expired_link_is_refused() -> None:
    config = ApiConfig(admin_token=ADMIN)
    url = auth.sign_path(config, "/incidents/a/clip", now=1_000.0)
    assert "exp=1600" in url  # default link_ttl_s 600
    from starlette.requests import Request

    path, _, query = url.partition("?")
    request = Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": []})
    assert auth.link_valid(config, request, now=1_500.0) is True
    assert auth.link_valid(config, request, now=1_601.0) is False
    # another key (another admin token or link_secret) refuses it
    assert auth.link_valid(ApiConfig(admin_token="other"), request, now=1_500.0) is False
    assert auth.link_valid(ApiConfig(admin_token="other", link_secret=ADMIN), request, now=1_500.0) is False


def test_open_api_needs_no_links(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    answer = client.post("/auth/links", json={"paths": ["incidents/x/clip"]})
    assert answer.status_code == 200 and answer.json()["links"]["incidents/x/clip"] == "incidents/x/clip"


def test_page_security_headers(roles: TestClient) -> None:
    page = roles.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert "<script>" not in html and "onclick=" not in html and "style=" not in html


def test_tokens_are_validated() -> None:
    with pytest.raises(ValidationError, match="viewer_token must differ"):
        ApiConfig(admin_token="same", viewer_token="same")
    with pytest.raises(ValidationError, match="needs an admin_token"):
        ApiConfig(viewer_token="v")
    assert ApiConfig(token="t").admin_secret() == "t"
    assert ApiConfig(token="t", admin_token="a").admin_secret() == "a"
    assert "s3cret" not in repr(ApiConfig(admin_token=ADMIN, viewer_token=VIEWER))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "ops.example.com"])
def test_off_loopback_needs_an_admin_token(host: str) -> None:
    config = parse_config({"api": {"host": host}})
    assert "api.admin_token" in str(config.api.exposure_problem())
    assert parse_config({"api": {"host": host, "admin_token": "a"}}).api.exposure_problem() is None
    assert parse_config({"api": {"host": host, "token": "a"}}).api.exposure_problem() is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_may_run_open(host: str) -> None:
    assert ApiConfig(host=host).exposure_problem() is None


def test_deploy_refuses_off_loopback_without_admin_token() -> None:
    from deployments.app import deploy

    config = SystemConfig.model_validate({"api": {"host": "0.0.0.0"}})
    with pytest.raises(ConfigError, match=r"api\.admin_token"):
        deploy(config)  # refuses before touching Ray or Serve
