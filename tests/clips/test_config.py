"""Clip and evidence settings: defaults, and a retention of 0 refused with a message naming the field."""

from __future__ import annotations

import pytest
from pydantic import Field, ValidationError

from trtseg.clips.camera import hold_s, ring_lookback_s
from trtseg.config import CameraConfig, SystemConfig
from trtseg.config.clips import ClipConfig, EvidenceConfig
from trtseg.config.loader import format_validation_error


class Camera(CameraConfig):
    """CameraConfig with its clips, as the lead wires it (``clips: ClipConfig``)."""

    clips: ClipConfig = Field(default_factory=ClipConfig)


class System(SystemConfig):
    cameras: list[Camera] = Field(default_factory=list)  # type: ignore[assignment]
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)


def test_defaults() -> None:
    clips, evidence = ClipConfig(), EvidenceConfig()
    assert clips.enabled and clips.severities == ["alert"]
    assert (clips.pre_capture_s, clips.post_capture_s, clips.max_clip_s) == (5.0, 5.0, 300.0)
    assert clips.retain_days is None and clips.keyframe_retain_days is None
    assert evidence.clip_retain_days == 30 and evidence.keyframe_retain_days is None
    assert evidence.max_disk_gb is None and not evidence.cap_keyframes


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"cameras": [{"id": "c", "source": "rtsp://x/1", "clips": {"retain_days": 0}}]},
            "cameras.0.clips.retain_days",
        ),
        (
            {"cameras": [{"id": "c", "source": "rtsp://x/1", "clips": {"keyframe_retain_days": 0}}]},
            "cameras.0.clips.keyframe_retain_days",
        ),
        ({"evidence": {"clip_retain_days": 0}}, "evidence.clip_retain_days"),
        ({"evidence": {"keyframe_retain_days": -3}}, "evidence.keyframe_retain_days"),
    ],
)
def test_a_retention_of_zero_is_refused_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        System.model_validate(data)
    message = format_validation_error(caught.value, "site.yaml")
    leaf = field.rsplit(".", 1)[1]
    assert f"  {field}: {leaf} must be at least 1 day" in message, message
    assert "leave it empty to keep it" in message


def test_bad_clip_settings_are_refused() -> None:
    for bad in ({"severities": ["urgent"]}, {"pre_capture_s": -1}, {"max_clip_s": 0}, {"buffer_mb": 0}, {"x": 1}):
        with pytest.raises(ValidationError):
            ClipConfig.model_validate(bad)
    assert ClipConfig(severities=["alert", "alert", "detection"]).severities == ["alert", "detection"]


def test_buffer_and_hold_follow_the_rules() -> None:
    rules = [
        {"name": "a", "kind": "presence", "classes": ["charging_cable"], "min_duration_s": 3.0, "close_after_s": 12.0},
        {"name": "b", "kind": "presence", "classes": ["charging_cable"], "min_duration_s": 1.0, "close_after_s": 5.0},
    ]
    camera = Camera(id="c", source="rtsp://x/1", analytics={"rules": rules})
    clips = ClipConfig(pre_capture_s=5.0, post_capture_s=5.0)
    assert ring_lookback_s(camera, clips) == pytest.approx(5.0 + 3.0 + 2.0)
    assert hold_s(camera, clips) == pytest.approx(12.0 - 5.0 + 2.0)
    plain = Camera(id="d", source="rtsp://x/1")
    assert ring_lookback_s(plain, clips) == pytest.approx(7.0) and hold_s(plain, clips) == pytest.approx(2.0)
