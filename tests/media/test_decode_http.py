"""HLS over HTTP through the real FFmpeg: plays, and a playlist cannot make it read local files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from tests.services.http_files import serve_directory
from tests.services.streaming import wait_until
from trtseg.config import CameraConfig
from trtseg.decode import CameraDecoder
from trtseg.sources import ffmpeg_input_options


@pytest.fixture
def hls_site(tmp_path: Path, small_clip: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on a free port serving a real HLS rendition of ``small_clip``."""
    site = tmp_path / "site"
    site.mkdir()
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(small_clip), "-c", "copy", "-f", "hls", "-hls_time", "1"]
    cmd += ["-hls_list_size", "0", "-hls_segment_filename", str(site / "s%d.ts"), str(site / "good.m3u8")]
    subprocess.run(cmd, check=True, timeout=60)
    with serve_directory(site) as base_url:
        yield base_url, site


def _run(url: str, seconds: float) -> dict:
    camera = CameraConfig(id="web", source=url, open_timeout_s=3, max_failures=1)
    decoder = CameraDecoder(camera).start()
    try:
        wait_until(lambda: decoder.state in ("failed", "stopped") or decoder.stats()["frames"] >= 10, seconds)
        return decoder.stats()
    finally:
        decoder.stop()


def test_hls_over_http_plays(hls_site: tuple[str, Path]) -> None:
    base, _site = hls_site
    stats = _run(f"{base}/good.m3u8", seconds=10)
    assert stats["frames"] >= 10 and (stats["width"], stats["height"]) == (640, 360), stats


def test_hls_playlist_cannot_reach_local_files(hls_site: tuple[str, Path]) -> None:
    """Defence in depth: FFmpeg's HLS demuxer refuses these too; the whitelist (next test) holds if it did not."""
    base, site = hls_site
    good = (site / "good.m3u8").read_text()
    # Same playlist, segments pointing at local copies: FFmpeg alone would read them from the disk.
    (site / "evil.m3u8").write_text(good.replace("s0.ts", f"file://{site}/s0.ts").replace("s1.ts", f"{site}/s1.ts"))
    evil = _run(f"{base}/evil.m3u8", seconds=10)
    assert evil["frames"] <= 26, evil  # at most the one remaining segment fetched over http
    only_local = good.replace("s0.ts", f"file://{site}/s0.ts").replace("s1.ts", f"file://{site}/s1.ts")
    (site / "local.m3u8").write_text(only_local.replace("s2.ts", f"file://{site}/s2.ts"))
    local = _run(f"{base}/local.m3u8", seconds=10)
    assert local["frames"] == 0, local


def test_protocol_whitelist_reaches_ffmpeg(small_clip: Path) -> None:
    """The options really bind FFmpeg: with http's whitelist, even a plain local file cannot be opened."""
    camera = CameraConfig(id="web", source="http://127.0.0.1/x", open_timeout_s=3)
    with pytest.raises(av.error.FFmpegError):
        av.open(f"file:{small_clip}", options=ffmpeg_input_options("http://127.0.0.1/x", camera), timeout=3)
    with av.open(f"file:{small_clip}", options=ffmpeg_input_options(f"file:{small_clip}", camera), timeout=3) as ok:
        assert ok.streams.video[0].codec_context.width == 640
