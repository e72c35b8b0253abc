"""POST /infer refuses bad uploads with clear 4xx answers before any inference is asked for."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from fastapi.testclient import TestClient

from tests.api.conftest import jpeg


def test_oversized_upload_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_upload_mb=0.01)  # about 10 KiB
    big = b"\xff\xd8" + b"\0" * 200_000
    answer = client.post("/infer", content=big, headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 413 and "bytes" in answer.json()["detail"]
    multipart = client.post("/infer", files={"file": ("big.jpg", big, "image/jpeg")})
    assert multipart.status_code == 413


def test_undecodable_and_empty_bodies(client: TestClient) -> None:
    for body in (b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 50, b"GIF89a" + b"\x00" * 10):
        answer = client.post("/infer", content=body, headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 415, answer.text
        assert "decodable image" in answer.json()["detail"]
    assert client.post("/infer", content=b"", headers={"Content-Type": "image/png"}).status_code == 422
    no_file = client.post("/infer", data={"note": "no file"}, files={"other": ("x.txt", b"", "text/plain")})
    assert no_file.status_code in (415, 422)
    broken = client.post(
        "/infer", content=b"--xx\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=zz"}
    )
    assert 400 <= broken.status_code < 500


def test_bad_parameters(client: TestClient) -> None:
    image = jpeg()
    for params in ({"conf": 2}, {"conf": "high"}, {"format": "gif"}, {"classes": "x" * 2000}):
        answer = client.post("/infer", params=params, content=image, headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 422, params


def test_good_image_without_controller_is_503(client: TestClient) -> None:
    ok, png = cv2.imencode(".png", np.zeros((32, 48, 3), np.uint8))
    assert ok
    answer = client.post("/infer", files={"file": ("a.png", png.tobytes(), "image/png")})
    assert answer.status_code == 503 and answer.json()["detail"]
