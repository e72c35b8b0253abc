"""The one result type of the system: the instances found in one frame.

Like supervision's ``Detections``: plain arrays, index-aligned, cheap to slice, and convertible to
the forms the rest of the system needs (polygons for storage and JSON, a dict for the API). Masks are
box crops (``trtseg.masks.InstanceMasks``), never full frames: that is what keeps a batch's results
small on the host and in Ray's object store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from trtseg.masks import InstanceMasks


@dataclass(slots=True)
class Detections:
    """Instances of one frame, in that frame's pixel coordinates.

    boxes: (N, 4) float32 xyxy; scores: (N,) float32; class_ids: (N,) int32;
    masks: ``InstanceMasks`` (N crops of an (H, W) frame; ``np.asarray`` gives the (N, H, W) bool
    array), or None when masks were not asked for.
    names: class id -> name for the model that produced them.
    tracker_ids: (N,) int64 track ids once a tracker has seen them (``trtseg.analytics.tracking``), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    masks: InstanceMasks | None = None
    names: dict[int, str] = field(default_factory=dict)
    frame_shape: tuple[int, int] = (0, 0)  # (height, width)
    tracker_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Checked here, where a wrong producer is named, rather than in whatever consumer trips on it.
        if self.tracker_ids is not None and len(self.tracker_ids) != len(self.boxes):
            raise ValueError(f"{len(self.tracker_ids)} tracker ids for {len(self.boxes)} instances")
        if self.masks is None:
            return
        if not isinstance(self.masks, InstanceMasks):
            raise TypeError(f"Detections.masks is InstanceMasks (see InstanceMasks.from_dense), not {type(self.masks)}")
        if len(self.masks) != len(self.boxes) or self.masks.frame_shape != tuple(self.frame_shape):
            raise ValueError(f"{self.masks!r} do not fit {len(self.boxes)} instances of a {self.frame_shape} frame")

    @classmethod
    def empty(
        cls, frame_shape: tuple[int, int] = (0, 0), names: dict[int, str] | None = None, with_masks: bool = True
    ) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int32),
            masks=InstanceMasks.empty(frame_shape) if with_masks else None,
            names=dict(names or {}),
            frame_shape=frame_shape,
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Detections:
        if isinstance(index, int):
            index = [index]
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            class_ids=self.class_ids[index],
            masks=None if self.masks is None else self.masks[index],
            names=self.names,
            frame_shape=self.frame_shape,
            tracker_ids=None if self.tracker_ids is None else self.tracker_ids[index],
        )

    @property
    def class_names(self) -> list[str]:
        return [self.names.get(int(c), str(int(c))) for c in self.class_ids]

    @property
    def areas(self) -> np.ndarray:
        """Mask areas in pixels (box areas when there are no masks)."""
        if self.masks is not None:
            return self.masks.areas().astype(np.float64)
        wh = np.clip(self.boxes[:, 2:] - self.boxes[:, :2], 0, None)
        return (wh[:, 0] * wh[:, 1]).astype(np.float64)

    def of_classes(self, names: Sequence[str]) -> Detections:
        """Only the instances whose class name is in ``names``."""
        wanted = {cid for cid, name in self.names.items() if name in set(names)}
        keep = np.array([int(c) in wanted for c in self.class_ids], dtype=bool)
        return self[np.flatnonzero(keep)]

    def polygons(self, epsilon_px: float = 1.0) -> list[list[list[float]]]:
        """Each instance's mask outline as a list of [x, y] points (largest contour, simplified)."""
        out: list[list[list[float]]] = []
        if self.masks is None:
            for x1, y1, x2, y2 in self.boxes.tolist():
                out.append([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
            return out
        # On each crop, shifted by its origin: the same points as on the full frame, found faster.
        return [outline(crop.view(np.uint8), epsilon_px, (x0, y0)) for x0, y0, crop in self.masks]

    def to_records(self, with_polygons: bool = True) -> list[dict[str, Any]]:
        """JSON-ready instances: class, score, box and (optionally) polygon."""
        polygons = self.polygons() if with_polygons else [None] * len(self)
        return [
            {
                "class_id": int(cid),
                "class_name": name,
                "score": round(float(score), 4),
                "box": [round(float(v), 1) for v in box],
                **({"polygon": [[round(x, 1), round(y, 1)] for x, y in poly]} if poly is not None else {}),
            }
            for cid, name, score, box, poly in zip(
                self.class_ids, self.class_names, self.scores, self.boxes, polygons, strict=True
            )
        ]


def outline(mask: np.ndarray, epsilon_px: float = 1.0, offset: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """The largest outer contour of a uint8 0/1 mask as [x, y] points (simplified), shifted by ``offset``."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    if not contours:
        return []
    largest = max(contours, key=cv2.contourArea)
    if epsilon_px > 0:
        largest = cv2.approxPolyDP(largest, epsilon_px, True)
    return largest.reshape(-1, 2).astype(float).tolist()
