"""Shared pieces of the reliability tests: small clips made with the real FFmpeg, bounded waits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def ffmpeg_clip(path: Path, seconds: float, size: tuple[int, int], fps: int = 10, fmt: str = "mp4") -> Path:
    """A testsrc2 H.264 clip (``fmt``: mp4, mpegts or h264 for a raw Annex-B stream)."""
    width, height = size
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(fps), "-bf", "0", "-f", fmt, str(path),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    return path


def poll(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """Wait until ``probe`` returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")
