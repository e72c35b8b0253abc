"""Shared set-up of the Ray system tests: a small configuration and bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trtseg.config import SystemConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "trtseg-cable-n.onnx"

T = TypeVar("T")


def system_config(
    tmp: Path, media: Path, namespace: str, cameras: list[dict[str, Any]], **cluster: Any
) -> SystemConfig:
    """A light configuration: CPU ONNX Runtime, one thread, HLS into ``tmp``, SQLite in ``tmp``."""
    data = {
        "cluster": {"namespace": namespace, "watchdog_interval_s": 1.0, "cpu_segmenters": 1, **cluster},
        "engine": {
            "model": str(MODEL),
            "backend": "onnxruntime",
            "device": "cpu",
            "batch_size": 4,
            "max_wait_ms": 10,
            "intra_op_threads": 1,
        },
        "pusher": {
            "hls_dir": str(tmp / "hls"),
            "preset": "ultrafast",
            "threads": 1,
            "hls_segment_s": 1.0,
            "gop_s": 1.0,
            "bitrate_kbps": 300,
        },
        "sink": {
            "database_url": f"sqlite:///{tmp / 'events.db'}",
            "keyframe_dir": str(tmp / "keyframes"),
            "spool_dir": str(tmp / "spool"),
        },
        "api": {"file_source_dir": str(media)},
        "cameras": cameras,
    }
    return parse_config(data, "test")


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
