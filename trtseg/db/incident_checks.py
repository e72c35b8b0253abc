"""Checks of an IncidentRecord before anything of it is written: RecordError names the bad field.

The sink calls these in ``submit``, so a bad record is refused to its producer at once instead of
being spooled, retried and finally rejected by the database. MySQL would truncate or round some
values silently; these checks make both databases refuse the same records.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import numpy as np

from trtseg.analytics.records import KEYFRAME_STAGES, IncidentRecord
from trtseg.db import schema as s
from trtseg.db.models import as_utc
from trtseg.db.store import RecordError

_INCIDENT_ID = re.compile(rf"^[A-Za-z0-9_-]{{1,{s.INCIDENT_ID_LEN}}}$")
MAX_TRAJECTORY_POINTS = 200
MAX_INT = 2**31 - 1
MAX_TRACK_ID = 2**63 - 1
SEVERITIES = ("detection", "alert")
# The IncidentRecord fields stored one to one as columns (key frames have columns of their own).
ROW_FIELDS: tuple[str, ...] = (
    "incident_id",
    "site",
    "camera_id",
    "rule",
    "rule_kind",
    "zone",
    "line",
    "track_id",
    "class_name",
    "severity",
    "status",
    "result",
    "started_at",
    "last_seen_at",
    "ended_at",
    "escalated_at",
    "confidence",
    "best_confidence",
    "fraction",
    "peak_fraction",
    "object_count",
    "peak_count",
    "frames_seen",
    "trajectory",
    "details",
    "instance",
)


class _Checker:
    """Field checks of one record; every error says which incident and which field."""

    def __init__(self, record: IncidentRecord) -> None:
        self.record = record
        self.who = f"incident {record.incident_id!r}"

    def fail(self, name: str, problem: str) -> RecordError:
        return RecordError(f"{self.who}: {name} {problem}")

    def text(self, name: str, limit: int, required: bool = True) -> str | None:
        value = getattr(self.record, name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(name, "must be a non-empty string")
        if len(value) > limit:
            raise self.fail(name, f"is {len(value)} characters, at most {limit}")
        return value

    def summary(self, name: str, limit: int) -> str:
        """Free text made from names (label, class, zone): cut to fit rather than lose the incident."""
        value = self.text(name, 1 << 20)
        assert value is not None
        return value if len(value) <= limit else value[: limit - 1] + "…"

    def unit(self, name: str, required: bool = True) -> float | None:
        value = getattr(self.record, name)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise self.fail(name, f"must be a number in 0..1, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise self.fail(name, f"must be in 0..1, got {number}")
        return number

    def count(self, name: str, required: bool = True, limit: int = MAX_INT) -> int | None:
        value = getattr(self.record, name)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise self.fail(name, f"must be an integer, got {type(value).__name__}")
        if not 0 <= int(value) <= limit:
            raise self.fail(name, f"must be in 0..{limit}, got {int(value)}")
        return int(value)

    def time(self, name: str, required: bool = True) -> datetime | None:
        value = getattr(self.record, name)
        if value is None and not required:
            return None
        if not isinstance(value, datetime):
            raise self.fail(name, f"must be a datetime, got {type(value).__name__}")
        try:
            utc = as_utc(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        assert utc is not None
        return utc.replace(tzinfo=None)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = getattr(self.record, name)
        if value not in allowed:
            raise self.fail(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    def plain_json(self, name: str, kind: type, required: bool) -> Any:
        value = getattr(self.record, name)
        if value is None and not required:
            return None
        if not isinstance(value, kind):
            raise self.fail(name, f"must be a {kind.__name__}, got {type(value).__name__}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self.fail(name, f"is not plain JSON ({exc})") from None
        return value

    def trajectory(self) -> list[list[float]]:
        points = self.record.trajectory
        if not isinstance(points, list | tuple):
            raise self.fail("trajectory", f"must be a list of [t, x, y] points, got {type(points).__name__}")
        if len(points) > MAX_TRAJECTORY_POINTS:
            raise self.fail("trajectory", f"has {len(points)} points, at most {MAX_TRAJECTORY_POINTS}")
        out: list[list[float]] = []
        for index, point in enumerate(points):
            try:
                values = [float(v) for v in point]
            except (TypeError, ValueError):
                raise self.fail(f"trajectory[{index}]", "must be three numbers [t, x, y]") from None
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise self.fail(f"trajectory[{index}]", f"must be three finite numbers [t, x, y], got {point!r}")
            out.append(values)
        return out

    def paths(self) -> dict[str, str | None]:
        paths = self.record.keyframe_paths
        if not isinstance(paths, dict):
            raise self.fail("keyframe_paths", "must map stage -> kind -> path")
        columns: dict[str, str | None] = {}
        for stage in KEYFRAME_STAGES:
            for kind in s.KEYFRAME_KINDS:
                columns[s.keyframe_column(stage, kind)] = None
        for stage, kinds in paths.items():
            if stage not in KEYFRAME_STAGES or not isinstance(kinds, dict):
                raise self.fail("keyframe_paths", f"stage must be one of {', '.join(KEYFRAME_STAGES)}, got {stage!r}")
            for kind, path in kinds.items():
                field = f"keyframe_paths.{stage}.{kind}"
                if kind not in s.KEYFRAME_KINDS:
                    raise self.fail("keyframe_paths", f"kind must be raw or annotated, got {kind!r}")
                if not isinstance(path, str) or not path or len(path) > s.PATH_LEN:
                    raise self.fail(field, f"must be a path of 1..{s.PATH_LEN} characters")
                columns[s.keyframe_column(stage, kind)] = path
        return columns

    def keyframes(self) -> None:
        frames = self.record.keyframes
        if not isinstance(frames, dict):
            raise self.fail("keyframes", "must map stage -> kind -> JPEG bytes")
        for stage, kinds in frames.items():
            if stage not in KEYFRAME_STAGES or not isinstance(kinds, dict):
                raise self.fail("keyframes", f"stage must be one of {', '.join(KEYFRAME_STAGES)}, got {stage!r}")
            for kind, data in kinds.items():
                if kind not in s.KEYFRAME_KINDS:
                    raise self.fail("keyframes", f"kind must be raw or annotated, got {kind!r}")
                if data is not None and not isinstance(data, bytes | bytearray | np.ndarray):
                    raise self.fail(f"keyframes.{stage}.{kind}", f"must be JPEG bytes, got {type(data).__name__}")


def incident_to_row(record: IncidentRecord, now: datetime) -> dict[str, Any]:
    """Checked column values of one record (``now``: naive UTC); RecordError names the first bad field."""
    if not isinstance(record, IncidentRecord):
        raise RecordError(f"expected an IncidentRecord, got {type(record).__name__}")
    if not isinstance(record.incident_id, str) or not _INCIDENT_ID.match(record.incident_id):
        raise RecordError(
            f"incident_id {record.incident_id!r} must be 1-{s.INCIDENT_ID_LEN} letters, digits, '_' or '-'"
        )
    c = _Checker(record)
    c.keyframes()
    row: dict[str, Any] = {
        "incident_id": record.incident_id,
        "site": c.text("site", s.SITE_LEN),
        "camera_id": c.text("camera_id", s.CAMERA_LEN),
        "rule": c.text("rule", s.NAME_LEN),
        "rule_kind": c.text("rule_kind", s.RULE_KIND_LEN),
        "zone": c.text("zone", s.NAME_LEN, required=False),
        "line": c.text("line", s.NAME_LEN, required=False),
        "track_id": c.count("track_id", required=False, limit=MAX_TRACK_ID),
        "class_name": c.text("class_name", s.CLASS_LEN, required=False),
        "severity": c.choice("severity", SEVERITIES),
        "status": c.choice("status", ("open", "closed")),
        "result": c.summary("result", s.RESULT_LEN),
        "started_at": c.time("started_at"),
        "last_seen_at": c.time("last_seen_at"),
        "ended_at": c.time("ended_at", required=False),
        "escalated_at": c.time("escalated_at", required=False),
        "confidence": c.unit("confidence"),
        "best_confidence": c.unit("best_confidence"),
        "fraction": c.unit("fraction", required=False),
        "peak_fraction": c.unit("peak_fraction", required=False),
        "object_count": c.count("object_count", required=False),
        "peak_count": c.count("peak_count", required=False),
        "frames_seen": c.count("frames_seen"),
        "trajectory": c.trajectory(),
        "details": c.plain_json("details", dict, required=True),
        "instance": c.plain_json("instance", dict, required=False),
        **c.paths(),
        "created_at": now,
        "updated_at": now,
    }
    return row
