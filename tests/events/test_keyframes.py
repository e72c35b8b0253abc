"""KeyframeStore: the directory layout, atomic writes and refusal of paths leaving the root."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from trtseg.keyframes import KeyframePathError, KeyframeStore

DAY = date(2026, 11, 25)
EVENT = "0123456789abcdef0123456789abcdef"


def test_layout_and_atomic_write(tmp_path: Path) -> None:
    store = KeyframeStore(tmp_path / "kf", jpeg_quality=85)
    paths = store.save("block-7", "cam1", DAY, EVENT, {"raw": b"\xff\xd8raw", "annotated": b"\xff\xd8ann"})
    assert paths == {
        "raw": f"block-7/cam1/2026-11-25/{EVENT}_raw.jpg",
        "annotated": f"block-7/cam1/2026-11-25/{EVENT}_annotated.jpg",
    }
    assert store.read(paths["raw"]) == b"\xff\xd8raw"
    assert store.resolve(paths["annotated"]) == (tmp_path / "kf" / paths["annotated"]).resolve()
    # rewriting replaces the file whole and leaves no temporary files behind
    store.save("block-7", "cam1", DAY, EVENT, {"raw": b"\xff\xd8better"})
    assert store.read(paths["raw"]) == b"\xff\xd8better"
    assert sorted(os.listdir(tmp_path / "kf" / "block-7" / "cam1" / "2026-11-25")) == sorted(
        [f"{EVENT}_raw.jpg", f"{EVENT}_annotated.jpg"]
    )
    assert store.save("block-7", "cam1", DAY, EVENT, {"raw": None}) == {}


def test_free_text_site_cannot_shape_the_path(tmp_path: Path) -> None:
    store = KeyframeStore(tmp_path / "kf")
    paths = store.save("../../etc", "cam1", DAY, EVENT, {"raw": b"x"})
    assert not paths["raw"].startswith("..") and "/../" not in paths["raw"]
    assert store.resolve(paths["raw"]).is_relative_to((tmp_path / "kf").resolve())
    with pytest.raises(KeyframePathError, match="event_id"):
        store.save("s", "c", DAY, "../../x", {"raw": b"x"})
    with pytest.raises(KeyframePathError, match="kind"):
        store.relative_path("s", "c", DAY, EVENT, "thumb")


@pytest.mark.parametrize(
    "relative",
    ["../secret.jpg", "a/../../secret.jpg", "/etc/passwd", "", "  ", "a/./b.jpg", "a\x00b", "..\\secret.jpg", "~/x"],
)
def test_resolve_refuses_paths_leaving_the_root(tmp_path: Path, relative: str) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    store = KeyframeStore(tmp_path / "kf")
    (tmp_path / "kf").mkdir()
    with pytest.raises(KeyframePathError):
        store.resolve(relative)


def test_resolve_refuses_symlinks_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    root = tmp_path / "kf"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file.jpg").symlink_to(outside / "secret.jpg")
    store = KeyframeStore(root)
    for relative in ("link/secret.jpg", "file.jpg"):
        with pytest.raises(KeyframePathError, match="leaves"):
            store.read(relative)
    with pytest.raises(FileNotFoundError):
        store.resolve("site/cam/2026-11-25/missing.jpg")


def test_bad_quality_and_empty_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jpeg_quality"):
        KeyframeStore(tmp_path, jpeg_quality=5)
    with pytest.raises(ValueError, match="empty"):
        KeyframeStore(tmp_path).write("a/b.jpg", b"")


def test_images_are_encoded_at_the_store_quality(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    low = KeyframeStore(tmp_path / "low", jpeg_quality=20).save("s", "c", DAY, EVENT, {"raw": image})
    high = KeyframeStore(tmp_path / "high", jpeg_quality=95).save("s", "c", DAY, EVENT, {"raw": image})
    low_bytes = (tmp_path / "low" / low["raw"]).read_bytes()
    high_bytes = (tmp_path / "high" / high["raw"]).read_bytes()
    assert len(low_bytes) < len(high_bytes)
    decoded = cv2.imdecode(np.frombuffer(high_bytes, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
