"""The evidence component of the readiness answer: clips and key frames that fail to be written, evidence
above its disk cap.

Evidence failing stops nothing (incidents are still recorded, streams still pushed), so the component
stays ``ready``; its ``state`` says ``failing`` (a camera's last clip failed, or the sink's last key
frame: disk full, unwritable) or ``over_cap`` (retention could not bring the evidence under
``max_disk_gb``) with the details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def evidence_health(
    decoders: Mapping[str, Mapping[str, Any]],
    retention: Mapping[str, Any] | None = None,
    sink: Mapping[str, Any] | None = None,
) -> dict:
    """``decoders``: camera id -> its decoder actor's stats (their ``clips`` summary); ``retention``: its stats;
    ``sink``: the sink's stats (``keyframes``, ``keyframe_failures``, ``keyframe_last_error``)."""
    failing: dict[str, str | None] = {}
    clips = failures = 0
    unsupported: list[str] = []
    for camera_id, stats in decoders.items():
        summary = stats.get("clips") if isinstance(stats, Mapping) else None
        if not summary:
            continue
        clips += int(summary.get("clips") or 0)
        failures += int(summary.get("failures") or 0)
        if summary.get("unsupported"):
            unsupported.append(camera_id)
        elif summary.get("ok") is False:
            failing[camera_id] = summary.get("last_error")
    last_run = (retention or {}).get("last_run") or {}
    over_cap = bool(last_run.get("over_cap"))
    sink = sink if isinstance(sink, Mapping) else {}
    keyframes_failing = sink.get("keyframes") == "failing"
    state = "failing" if failing or keyframes_failing else ("over_cap" if over_cap else "ok")
    return {
        "state": state,
        "ready": True,
        "clips": clips,
        "clip_failures": failures,
        "failing_cameras": failing,
        "cameras_without_clips": sorted(unsupported),
        "keyframes_failing": keyframes_failing,
        "keyframe_failures": int(sink.get("keyframe_failures") or 0),
        "keyframe_last_error": sink.get("keyframe_last_error"),
        "over_cap": over_cap,
        "evidence_bytes": last_run.get("evidence_bytes"),
        "retention_error": (retention or {}).get("last_error"),
        "retention_unreported": int((retention or {}).get("unreported") or 0),
    }
