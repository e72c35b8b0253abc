"""A decompression bomb must be refused before it is decoded, not after.

A 62 KB PNG of 8000x8000 would make OpenCV allocate ~183 MB before a 413 checked on the decoded
bitmap; at the 16 MB upload limit a PNG can declare up to 2^30 pixels, about 3 GB per request.
``/infer`` reads the declared size from the header (trtseg.imageinfo) and refuses first.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
from fastapi import HTTPException

from deployments.routes_infer import decode_image


def test_bomb_is_refused_without_decoding_it() -> None:
    bomb = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(HTTPException) as refused:
            decode_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.status_code == 413
    assert peak < 32 * 2**20, f"refusing a {len(bomb)} byte upload allocated {peak / 2**20:.0f} MB"
