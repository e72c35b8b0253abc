"""Key frames of an incident: the raw picture and one annotated with the zone, the object and the verdict.

Encoded only at an incident's open, escalation and close (a JPEG of a 720p frame costs a few
milliseconds), never per frame. The close frame comes from a snapshot of the last frame in which
the object met its rule, copied at most once a second per camera while incidents are open: the
decoder's frame buffers are reused, so a picture kept for later must be a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from trtseg.annotate import FONT, BoxAnnotator, MaskAnnotator, ShapeAnnotator
from trtseg.detections import Detections
from trtseg.keyframes import encode_jpeg

SNAPSHOT_EVERY_S = 1.0


@dataclass(slots=True, frozen=True)
class Snapshot:
    """A copied picture, shared by the incidents seen in it."""

    ts: float
    image: np.ndarray


def annotated_keyframe(
    image: np.ndarray,
    detections: Detections | None,
    shapes: Sequence[tuple[str, Sequence[tuple[float, float]], bool]],
    caption: str,
    alert: bool,
) -> np.ndarray:
    """A copy of ``image`` with the rule's zone or line, the object's mask and outline, and the verdict."""
    scene = image.copy()
    ShapeAnnotator(shapes).annotate(scene)
    if detections is not None and len(detections) and detections.frame_shape == scene.shape[:2]:
        MaskAnnotator(alpha=0.45).annotate(scene, detections)
        BoxAnnotator().annotate(scene, detections)
        color = (0, 0, 255) if alert else (0, 200, 0)
        polygons = [np.asarray(p, np.int32).reshape(-1, 1, 2) for p in detections.polygons() if len(p) >= 2]
        cv2.polylines(scene, polygons, True, color, 2, cv2.LINE_AA)
    height = scene.shape[0]
    scale = max(0.5, height / 720.0 * 0.8)
    thickness = max(1, round(scale * 2))
    (tw, th), baseline = cv2.getTextSize(caption, FONT, scale, thickness)
    y = height - th - baseline - 12
    cv2.rectangle(scene, (0, y), (tw + 16, height), (0, 0, 160) if alert else (0, 100, 0), cv2.FILLED)
    cv2.putText(scene, caption, (8, height - baseline - 6), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return scene


def keyframe_jpegs(
    image: np.ndarray,
    detections: Detections | None,
    shapes: Sequence[tuple[str, Sequence[tuple[float, float]], bool]],
    caption: str,
    alert: bool,
    quality: int,
    raw: bytes | None = None,
) -> dict[str, bytes]:
    """{'raw': JPEG, 'annotated': JPEG} of one stage of one incident (``raw``: the picture already encoded)."""
    return {
        "raw": raw if raw is not None else encode_jpeg(image, quality),
        "annotated": encode_jpeg(annotated_keyframe(image, detections, shapes, caption, alert), quality),
    }
