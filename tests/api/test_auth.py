"""Bearer token: mutating endpoints always, reads only with token_for_reads; 401 with WWW-Authenticate."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

TOKEN = "s3cret-token"
CAMERA = {"id": "cam9", "source": "rtsp://127.0.0.1:8554/x"}


def _writes(client: TestClient, headers: dict[str, str]) -> list[int]:
    return [
        client.post("/cameras", json=CAMERA, headers=headers).status_code,
        client.put("/cameras/cam9", json=CAMERA, headers=headers).status_code,
        client.patch("/cameras/cam9", json={"confidence": 0.3}, headers=headers).status_code,
        client.delete("/cameras/cam9", headers=headers).status_code,
        client.post("/infer", content=b"x", headers={**headers, "Content-Type": "image/jpeg"}).status_code,
    ]


def test_writes_need_the_token(make_client: Callable[..., TestClient]) -> None:
    client = make_client(token=TOKEN)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ):
        assert _writes(client, headers) == [401] * 5, headers
    answer = client.delete("/cameras/cam9")
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "token" in answer.json()["detail"]
    # the right token gets past auth: the controller is down (503), the bad image is refused (415)
    assert _writes(client, {"Authorization": f"Bearer {TOKEN}"}) == [503, 503, 503, 503, 415]
    # a token in the query string is not accepted for writes
    assert client.delete("/cameras/cam9", params={"access_token": TOKEN}).status_code == 401
    # reads stay open
    assert client.get("/events").status_code == 200


def test_token_for_reads(make_client: Callable[..., TestClient]) -> None:
    client = make_client(token=TOKEN, token_for_reads=True)
    for path in ("/events", "/events/counts", "/metrics", "/version", "/cameras"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401, path
    assert client.get("/events", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert (
        client.get("/events", params={"access_token": TOKEN}).status_code == 401
    )  # header only: signed links for media
    assert client.get("/events", params={"access_token": "nope"}).status_code == 401
    assert client.get("/health").status_code == 200  # liveness probes carry no token
    assert client.get("/").status_code == 200  # the page itself asks for the token


def test_no_token_configured_means_open(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.delete("/cameras/cam9").status_code == 503  # past auth, controller down
