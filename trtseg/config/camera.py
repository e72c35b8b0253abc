"""One camera: where its video comes from, where the annotated stream goes, what counts as an event."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from trtseg.config.analytics import AnalyticsConfig
from trtseg.config.base import Section
from trtseg.config.clips import ClipConfig

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "file")
PUSH_SCHEMES = ("rtmp", "rtmps", "rtsp", "srt", "hls", "none")

Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]


class RegionOfInterest(Section):
    """A polygon in normalised frame coordinates (0..1); events count only detections inside it."""

    points: list[tuple[Fraction01, Fraction01]] = Field(
        min_length=3, description="Polygon vertices as (x, y), each in 0..1 of the frame's width and height."
    )


class EventRules(Section):
    """When detections of a class of interest become an event, and when it ends."""

    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0, description="Detections below it are ignored.")
    min_area: float = Field(
        default=0.0002, ge=0.0, le=1.0, description="Smallest mask area, as a fraction of the frame, that counts."
    )
    window: int = Field(default=5, ge=1, le=1000, description="N: the number of recent inferred frames looked at.")
    min_hits: int = Field(default=3, ge=1, le=1000, description="K: frames of the last N that must show the class.")
    close_after_s: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="T: seconds without the class after which the event closes."
    )
    region: RegionOfInterest | None = Field(default=None, description="Optional region of the frame that counts.")

    @model_validator(mode="after")
    def _hits_fit_window(self) -> EventRules:
        if self.min_hits > self.window:
            raise ValueError(f"min_hits ({self.min_hits}) cannot exceed window ({self.window})")
        return self


class CameraConfig(Section):
    """A camera and everything the pipeline does with it."""

    id: str = Field(pattern=CAMERA_ID_PATTERN, description="Unique id: letters, digits, '_', '.', '-'.")
    site: str = Field(default="default", min_length=1, max_length=128, description="Monitoring site it belongs to.")
    name: str | None = Field(default=None, max_length=128, description="Human name shown on the stream and page.")
    source: str = Field(description="Stream URL (rtsp, rtmp, http(s), srt) or a video file (file:// or a path).")
    loop: bool = Field(default=False, description="Restart a file source at its end (demo and tests).")
    rtsp_transport: str = Field(default="tcp", pattern="^(tcp|udp)$", description="RTSP transport.")
    open_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Timeout to open and read the source.")
    reconnect_backoff_s: float = Field(
        default=0.5, gt=0, le=60, description="First wait before reconnecting a lost source; doubles each failure."
    )
    reconnect_backoff_max_s: float = Field(
        default=10.0, gt=0, le=600, description="Longest wait between reconnect attempts."
    )
    max_failures: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Consecutive failed connects after which the decoder gives up (state 'failed'); 0: keep trying.",
    )
    decoder: Literal["cpu", "nvdec"] = Field(
        default="cpu",
        description="Where the stream is decoded: 'cpu' (PyAV/FFmpeg, frames in host memory) or 'nvdec' "
        "(the GPU's video decoder through PyNvVideoCodec: no CPU spent decoding, each frame downloaded once "
        "for annotation and encoding; GPU machines with PyNvVideoCodec and CuPy only).",
    )
    decode_threads: int = Field(
        default=1,
        ge=0,
        le=64,
        description="FFmpeg threads decoding this camera (decoder 'cpu'). 1: no added latency and the least CPU "
        "per frame, right when a node decodes many cameras; 0: FFmpeg's choice (frame threads, each holding "
        "back one frame: about 16 frames, 0.6 s at 25 fps, on a 16-core node), for a few very large streams.",
    )
    inference_fps: float | None = Field(
        default=None, gt=0, le=120, description="Infer at most this many frames a second; empty: every frame."
    )
    push: str = Field(
        default="hls",
        description="Where the annotated stream goes: an rtmp://, rtsp:// or srt:// URL, 'hls' "
        "(files the HTTP API serves) or 'none'.",
    )
    push_mode: Literal["always", "on_demand", "never"] = Field(
        default="always",
        description="When the annotated stream is encoded: 'always' (every frame), 'on_demand' (from a "
        "viewer's request, the HLS playlist, MJPEG, latest JPEG or POST /cameras/{id}/watch, until "
        "pusher.on_demand_idle_s pass without one) or 'never' (nothing encoded; the latest JPEG is drawn "
        "when asked). Detections, tracking, rules, incidents, key frames and clips run on every frame in "
        "every mode.",
    )
    classes: list[str] = Field(
        default_factory=lambda: ["charging_cable"], description="Classes of interest that raise events."
    )
    confidence: float = Field(default=0.25, ge=0.0, le=1.0, description="Detection confidence threshold.")
    iou: float = Field(default=0.7, ge=0.0, le=1.0, description="NMS IoU threshold.")
    events: EventRules = Field(default_factory=EventRules, description="Event rules for the classes of interest.")
    analytics: AnalyticsConfig = Field(
        default_factory=AnalyticsConfig, description="Tracking, zones, lines and the rules that raise incidents."
    )
    enabled: bool = Field(default=True, description="A disabled camera is kept in the registry but not run.")
    clips: ClipConfig = Field(
        default_factory=ClipConfig,
        description="Incident clips: which severities, pre- and post-capture, cap, buffer, retention days.",
    )

    @field_validator("source")
    @classmethod
    def _source_scheme(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("source is empty")
        scheme = urlsplit(value).scheme.lower()
        if scheme and len(scheme) > 1 and scheme not in SOURCE_SCHEMES:
            raise ValueError(f"scheme '{scheme}' is not allowed; use one of {', '.join(SOURCE_SCHEMES)}")
        if re.search(r"[\s\x00-\x1f]", value):
            raise ValueError("source contains whitespace or control characters")
        return value

    @field_validator("push")
    @classmethod
    def _push_target(cls, value: str) -> str:
        value = value.strip()
        scheme = urlsplit(value).scheme.lower() if "://" in value else value.lower()
        if scheme not in PUSH_SCHEMES:
            raise ValueError(f"push must be 'hls', 'none' or a {'/'.join(PUSH_SCHEMES[:4])} URL, got '{value}'")
        return value if "://" in value else scheme

    @model_validator(mode="after")
    def _rule_classes_inferred(self) -> CameraConfig:
        # Inference keeps only the classes of interest, so a rule on any other class would never fire.
        wanted = set(self.classes)
        if not wanted:  # no filter: every class is inferred
            return self
        for index, rule in enumerate(self.analytics.rules):
            missing = [c for c in rule.classes if c not in wanted]
            if missing:
                raise ValueError(
                    f"analytics.rules.{index}.classes: {', '.join(missing)} not among the camera's classes "
                    f"({', '.join(self.classes) or 'none'}); add them to classes"
                )
        return self

    def events_as_analytics(self) -> AnalyticsConfig:
        """The presence rule that reproduces ``events`` per tracked object (K of N, thresholds, region).

        With the tracker disabled it is keyed by class, exactly as events are; with it, one incident
        per object. The region becomes a zone that an object is in when any mask pixel overlaps it.
        """
        rules = self.events
        zones = []
        rule: dict[str, object] = {
            "name": "events",
            "kind": "presence",
            "classes": list(self.classes),
            "min_confidence": rules.min_confidence,
            "min_area": rules.min_area,
            "window": rules.window,
            "min_hits": rules.min_hits,
            "close_after_s": rules.close_after_s,
        }
        if rules.region is not None:
            zones.append({"name": "events_region", "points": list(rules.region.points)})
            rule.update(zone="events_region", min_inside=1e-9, hysteresis=0.0, median_frames=1)
        return AnalyticsConfig.model_validate(
            {"tracker": self.analytics.tracker.model_dump(), "zones": zones, "rules": [rule]}
        )
