"""Shared set-up of the Ray system tests: a small configuration and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tools.soak import MODEL, build_config
from trtseg.config import SystemConfig

__all__ = ["MODEL", "camera", "system_config", "wait_for"]

T = TypeVar("T")


def system_config(
    tmp: Path, media: Path, namespace: str, cameras: list[dict[str, Any]], **cluster: Any
) -> SystemConfig:
    """A light configuration: CPU ONNX Runtime, one thread, HLS into ``tmp``, SQLite in ``tmp``."""
    return build_config(tmp, media, namespace, cameras, cluster=cluster)


def camera(camera_id: str, clip: Path, **extra: Any) -> dict[str, Any]:
    return {"id": camera_id, "source": str(clip), "loop": True, "inference_fps": 4, "push": "hls", **extra}


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as error:  # the system may be between states; report the last error
            last = error
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")
