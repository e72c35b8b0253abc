"""Small builders for analytics tests: frames, tracked detections with masks, camera configs."""

from __future__ import annotations

from typing import Any

import numpy as np

from trtseg.config import CameraConfig
from trtseg.detections import Detections
from trtseg.frames import Frame
from trtseg.masks import InstanceMasks

NAMES = {0: "charging_cable", 1: "e_bike", 2: "person"}
H, W = 100, 200
T0 = 1_700_000_000.0
# The left half of the frame.
LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def frame(ts: float, seq: int = 0) -> Frame:
    return Frame("cam1", seq, ts, np.full((H, W, 3), 90, np.uint8))


def objects(*items: tuple[int, float, tuple[int, int, int, int]], ids: list[int] | None = None) -> Detections:
    """Instances as (class id, score, (x1, y1, x2, y2)) with box-filling masks; ``ids`` sets tracker ids."""
    if not items:
        empty = Detections.empty((H, W), NAMES)
        if ids is not None:
            empty.tracker_ids = np.zeros(0, np.int64)
        return empty
    masks = np.zeros((len(items), H, W), bool)
    for i, (_, _, (x1, y1, x2, y2)) in enumerate(items):
        masks[i, y1:y2, x1:x2] = True
    return Detections(
        boxes=np.array([b for _, _, b in items], np.float32),
        scores=np.array([s for _, s, _ in items], np.float32),
        class_ids=np.array([c for c, _, _ in items], np.int32),
        masks=InstanceMasks.from_dense(masks),
        names=NAMES,
        frame_shape=(H, W),
        tracker_ids=None if ids is None else np.array(ids, np.int64),
    )


def cable_at(outside: float, score: float = 0.8) -> tuple[int, float, tuple[int, int, int, int]]:
    """A 40-px-wide cable of which ``outside`` lies right of the frame's middle (outside LEFT_HALF)."""
    right = round(40 * outside)
    return (0, score, (100 - (40 - right), 40, 100 + right, 50))


def camera(rules: list[dict[str, Any]], zones: list[dict[str, Any]] | None = None, **extra: Any) -> CameraConfig:
    analytics = {
        "zones": zones if zones is not None else [{"name": "safe", "points": LEFT_HALF}],
        "lines": extra.pop("lines", []),
        "rules": rules,
        **extra.pop("analytics", {}),
    }
    extra.setdefault("classes", ["charging_cable", "e_bike", "person"])
    return CameraConfig(id="cam1", site="block-7", source="rtsp://127.0.0.1/x", analytics=analytics, **extra)
