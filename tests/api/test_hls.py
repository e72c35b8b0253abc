"""HLS files: right content types, and no way out of PusherConfig.hls_dir."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nindex0.ts\n"


def test_serves_playlist_and_segments(client: TestClient, hls_dir: Path) -> None:
    (hls_dir / "cam1").mkdir()
    (hls_dir / "cam1" / "index.m3u8").write_text(PLAYLIST)
    (hls_dir / "cam1" / "index0.ts").write_bytes(b"\x47" * 188 * 4)
    playlist = client.get("/hls/cam1/index.m3u8")
    assert playlist.status_code == 200 and playlist.text == PLAYLIST
    assert playlist.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert playlist.headers["cache-control"] == "no-cache"
    segment = client.get("/hls/cam1/index0.ts")
    assert segment.headers["content-type"] == "video/mp2t" and len(segment.content) == 188 * 4
    assert client.get("/hls/cam1/index9.ts").status_code == 404


def test_traversal_is_refused(client: TestClient, hls_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.m3u8").write_text("secret")
    (hls_dir / "cam1").mkdir()
    (hls_dir / "cam1" / "link.m3u8").symlink_to(tmp_path / "outside.m3u8")
    for path in (
        "/hls/cam1/..%2F..%2Foutside.m3u8",
        "/hls/../outside.m3u8",
        "/hls/cam1/.hidden.m3u8",
        "/hls/cam1/link.m3u8",
        "/hls/..%2F/outside.m3u8",
        "/hls/cam1/index.m3u8%00.ts",
        "/hls/cam1/passwd",
    ):
        answer = client.get(path)
        assert answer.status_code in (404, 422), (path, answer.status_code)
        assert "secret" not in answer.text
