"""Evidence: incident clips per camera (pre- and post-roll, cap) and how long clips and key frames are kept.

``ClipConfig`` is per camera (``CameraConfig.clips``), ``EvidenceConfig`` global
(``SystemConfig.evidence``). A camera's own ``retain_days`` / ``keyframe_retain_days`` override the
global ones; empty means "the global setting". A retention of 0 days is refused: it would delete
evidence while it is being written. Key frames are never deleted by age unless a key frame retention
is set explicitly (they predate clips and retention, and nobody asked for them to go).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from trtseg.config.base import Section

ClipSeverity = Literal["alert", "detection"]
MAX_RETAIN_DAYS = 36_500


def _days(value: int | None, field: str) -> int | None:
    if value is not None and value < 1:
        raise ValueError(
            f"{field} must be at least 1 day (got {value}): a retention of 0 would delete evidence while it is "
            "being written; leave it empty to keep it"
        )
    return value


class ClipConfig(Section):
    """Which of a camera's incidents get a clip of the source's own video, and how much of it."""

    enabled: bool = Field(default=True, description="Keep a rolling buffer of the stream and cut clips of incidents.")
    severities: list[ClipSeverity] = Field(
        default_factory=lambda: ["alert"],
        description="Incidents of these severities get a clip ('alert', 'detection'); an incident that escalates "
        "to an alert gets one from its escalation.",
    )
    pre_capture_s: float = Field(
        default=5.0, ge=0.0, le=60.0, description="Seconds of video before the incident opened (from a key frame)."
    )
    post_capture_s: float = Field(
        default=5.0, ge=0.0, le=300.0, description="Seconds of video after the last of the clip's incidents closed."
    )
    max_clip_s: float = Field(
        default=300.0,
        gt=0.0,
        le=3600.0,
        description="A clip longer than this is cut there and marked 'capped' (its incidents may go on).",
    )
    buffer_mb: float = Field(
        default=64.0,
        ge=1.0,
        le=4096.0,
        description="Bound of the camera's rolling buffer of compressed video in memory (MB); beyond it the "
        "oldest video goes even if pre-capture is cut short.",
    )
    retain_days: int | None = Field(
        default=None,
        le=MAX_RETAIN_DAYS,
        description="Days this camera's clips are kept; empty: evidence.clip_retain_days.",
    )
    keyframe_retain_days: int | None = Field(
        default=None,
        le=MAX_RETAIN_DAYS,
        description="Days this camera's key frames are kept; empty: evidence.keyframe_retain_days.",
    )

    @field_validator("retain_days")
    @classmethod
    def _clip_days(cls, value: int | None) -> int | None:
        return _days(value, "retain_days")

    @field_validator("keyframe_retain_days")
    @classmethod
    def _keyframe_days(cls, value: int | None) -> int | None:
        return _days(value, "keyframe_retain_days")

    @field_validator("severities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class EvidenceConfig(Section):
    """Where clips go, how long clips and key frames are kept, and how much disk they may take."""

    clip_dir: Path = Field(
        default=Path("var/clips"),
        description="Directory of incident clips (MP4) and their index; the API must see it (one node, or a shared "
        "file system).",
    )
    clip_retain_days: int | None = Field(
        default=30, le=MAX_RETAIN_DAYS, description="Days clips are kept (cameras may set their own); empty: no limit."
    )
    keyframe_retain_days: int | None = Field(
        default=None,
        le=MAX_RETAIN_DAYS,
        description="Days key frames are kept (cameras may set their own); empty: key frames are kept (those "
        "written before retention existed included).",
    )
    max_disk_gb: float | None = Field(
        default=None,
        gt=0.0,
        description="Disk the evidence may take; above it the oldest goes first (never an open incident's); "
        "empty: no cap.",
    )
    cap_keyframes: bool = Field(
        default=False,
        description="Count key frames in max_disk_gb and delete the oldest of them too (off: the cap deletes clips "
        "only).",
    )
    retention_interval_s: float = Field(default=300.0, ge=10.0, le=86_400.0, description="How often retention runs.")

    @field_validator("clip_retain_days")
    @classmethod
    def _clip_days(cls, value: int | None) -> int | None:
        return _days(value, "clip_retain_days")

    @field_validator("keyframe_retain_days")
    @classmethod
    def _keyframe_days(cls, value: int | None) -> int | None:
        return _days(value, "keyframe_retain_days")
