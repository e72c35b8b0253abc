"""Header-only image sizes agree with what OpenCV decodes, for every upload format."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtseg.imageinfo import image_size


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (1280, 720), (333, 97), (4000, 16)])
def test_declared_size_matches_the_decoded_one(ext: str, width: int, height: int) -> None:
    image = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), np.uint8)
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    assert image_size(encoded.tobytes()) == (width, height)


def test_progressive_and_lossless_variants() -> None:
    image = np.full((90, 160, 3), 100, np.uint8)
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    lossless = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert image_size(progressive) == (160, 90)
    assert image_size(lossless) == (160, 90)


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a....", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b"x" * 64]
)
def test_unknown_or_truncated_headers_give_none(data: bytes) -> None:
    assert image_size(data) is None
