"""Evidence of an incident: key frames (raw, and annotated with the zone, the object and the verdict), and
the track of the object's mask outline that the dashboard draws over the incident's clip.

Key frames are encoded only at an incident's open, escalation and close (a JPEG of a 720p frame costs a few
milliseconds), never per frame. The close frame comes from a snapshot of the last frame in which
the object met its rule, copied at most once a second per camera while incidents are open: the
decoder's frame buffers are reused, so a picture kept for later must be a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


# ---------------------------------------------------------------------------------------- outline track
OUTLINE_KEY = "outline_track"  # the key of an incident's ``details`` that holds its outline track
OUTLINE_EVERY_S = 0.2  # at most 5 outlines a second: enough for an overlay that follows a walker
OUTLINE_SAMPLES = 150  # per incident; when full, every other sample goes and sampling halves
OUTLINE_POINTS = 16  # per polygon, after simplification
OUTLINE_OBJECTS = 4  # polygons per sample (count rules concern several objects)

Shape = tuple[str, Sequence[tuple[float, float]], bool]


def simplified_outline(
    crop: np.ndarray, offset: tuple[int, int], frame_shape: tuple[int, int], max_points: int
) -> list[list[float]]:
    """The largest outer contour of a 0/1 mask crop as at most ``max_points`` [x, y] points in 0..1 of the frame.

    Douglas-Peucker with a tolerance that doubles from 1 % of the contour's perimeter until the polygon
    is small enough: a few points draw a person or a cable recognisably at dashboard size.
    """
    contours, _ = cv2.findContours(
        np.ascontiguousarray(crop, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=offset
    )
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    epsilon = max(0.5, 0.01 * cv2.arcLength(contour, True))
    points = cv2.approxPolyDP(contour, epsilon, True)
    while len(points) > max_points:
        epsilon *= 2.0
        points = cv2.approxPolyDP(contour, epsilon, True)
    height, width = frame_shape
    return [[round(float(x) / width, 4), round(float(y) / height, 4)] for x, y in points.reshape(-1, 2)]


def outlines_of(detections: Detections | None, max_objects: int, max_points: int) -> list[list[list[float]]]:
    """Normalised outlines of the first ``max_objects`` instances (their boxes when there are no masks)."""
    if detections is None or not len(detections) or not all(detections.frame_shape):
        return []
    height, width = detections.frame_shape
    out: list[list[list[float]]] = []
    if detections.masks is None:
        for x1, y1, x2, y2 in detections.boxes[:max_objects].tolist():
            box = [
                [x1 / width, y1 / height],
                [x2 / width, y1 / height],
                [x2 / width, y2 / height],
                [x1 / width, y2 / height],
            ]
            out.append([[round(min(max(v, 0.0), 1.0), 4) for v in p] for p in box])
        return out
    for index in range(min(len(detections), max_objects)):
        x0, y0, crop = detections.masks.crop(index)
        polygon = simplified_outline(crop, (x0, y0), (height, width), max_points)
        if len(polygon) >= 2:
            out.append(polygon)
    return out


class OutlineRecorder:
    """Keeps, per open incident, the tracked object's mask outline over time for the clip overlay.

    Where it is stored, and why: in the incident's ``details`` under ``OUTLINE_KEY``, so it travels in
    the records the camera already sends (spool, outbox, the sink's one upsert per batch) and lands in
    the incident's row with no migration and no second writer. A JSON file beside the clip would need
    the decoder (which cuts clips) to learn what the output actor (which tracks) saw, across
    processes and possibly nodes; and the row's ``details`` is taken from the newest record, which
    always carries the whole (bounded) track. The track is bounded: at most ``max_samples`` samples
    of at most ``max_objects`` polygons of ``max_points`` points (about 30 kB of JSON); when full,
    every other sample is dropped and the interval doubles, so a long incident keeps its whole span
    at a coarser pace, as the trajectory does. The API leaves it out of listings.

    A track is ``{"t0": epoch of the incident's start, "every_s": current interval, "shapes": [the
    rule's zone or line as {"name", "points", "closed"}], "samples": [[seconds since t0, [polygon,
    ...]], ...]}``, polygons as [x, y] in 0..1 of the frame. It is copied on write: records already
    handed out keep the version they were made with.
    """

    def __init__(
        self,
        shapes_of: Callable[[Any], Sequence[Shape]],
        every_s: float = OUTLINE_EVERY_S,
        max_samples: int = OUTLINE_SAMPLES,
        max_points: int = OUTLINE_POINTS,
        max_objects: int = OUTLINE_OBJECTS,
    ) -> None:
        if every_s < 0 or max_samples < 2 or max_points < 3 or max_objects < 1:
            raise ValueError("every_s >= 0, max_samples >= 2, max_points >= 3 and max_objects >= 1")
        self.shapes_of = shapes_of
        self.every_s, self.max_samples = every_s, max_samples
        self.max_points, self.max_objects = max_points, max_objects
        self.samples = 0  # recorded, for the stats

    def observe(
        self, open_incidents: Mapping[Any, Any], observations: Sequence[Any], ts: float, records: list[Any]
    ) -> None:
        """Add this frame's outline to each open incident met in it (``ts``: capture time), and to the
        records made from those incidents in the same frame."""
        changed: dict[str, dict[str, Any]] = {}
        for obs in observations:
            incident = open_incidents.get(obs.key)
            if incident is None:
                continue
            track = incident.details.get(OUTLINE_KEY)
            if not isinstance(track, dict) or not isinstance(track.get("samples"), list):
                track = self._new_track(incident)
            samples: list[Any] = track["samples"]
            t = round(ts - float(track["t0"]), 3)
            if samples and t - float(samples[-1][0]) + 1e-6 < float(track["every_s"]):
                continue
            polygons = outlines_of(obs.detections, self.max_objects, self.max_points)
            if not polygons:
                continue
            samples = [*samples, [t, polygons]]
            every_s = float(track["every_s"])
            if len(samples) > self.max_samples:
                samples, every_s = samples[::2], max(2.0 * every_s, 1e-3)
            track = {**track, "every_s": every_s, "samples": samples}
            incident.details[OUTLINE_KEY] = track
            changed[incident.incident_id] = track
            self.samples += 1
        for record in records:
            track = changed.get(record.incident_id)
            if track is not None:
                record.details[OUTLINE_KEY] = track

    def _new_track(self, incident: Any) -> dict[str, Any]:
        shapes = [
            {"name": name, "points": [[float(x), float(y)] for x, y in points], "closed": bool(closed)}
            for name, points, closed in self.shapes_of(incident.rule)
        ]
        return {"t0": round(float(incident.started_ts), 3), "every_s": self.every_s, "shapes": shapes, "samples": []}
