"""Response and request models of the HTTP API (they are the OpenAPI schema users read)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from trtseg.db.models import EventCount


class Problem(BaseModel):
    """Every error answer: a readable message, plus the request id for the logs."""

    detail: Any = Field(description="What was wrong, in words (or pydantic's list of field errors).")
    request_id: str | None = Field(default=None, description="Id of the request in the server's logs.")

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "camera 'cam9' not found"}]})


class Liveness(BaseModel):
    """The API process answers."""

    status: str = Field(description="Always 'ok' when the API answers.", examples=["ok"])


class Readiness(BaseModel):
    """Whether every component the controller reports is ready."""

    ready: bool = Field(description="True when every component is ready.")
    components: dict[str, Any] = Field(default_factory=dict, description="Each component's state, from the controller.")
    detail: str | None = Field(default=None, description="Why not ready, when that is known.")


class VersionInfo(BaseModel):
    """Versions of trtseg and of the runtime it runs on."""

    trtseg: str = Field(examples=["0.1.0"])
    python: str = Field(examples=["3.11.9"])
    ray: str = Field(examples=["2.60.0"])
    fastapi: str = Field(examples=["0.115.0"])


class CameraStatus(BaseModel):
    """One camera: its configuration, pipeline state and figures (as the controller reports them)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "cam1",
                    "state": "live",
                    "config": {"id": "cam1", "site": "block-7", "source": "rtsp://10.0.0.5/stream1"},
                    "stats": {"fps_in": 25.0, "dropped": 3},
                }
            ]
        },
    )

    id: str = Field(description="Camera id.")
    state: str = Field(default="unknown", description="connecting, live, reconnecting, failed, stopped or disabled.")
    config: dict[str, Any] = Field(default_factory=dict, description="The camera's configuration.")
    stats: dict[str, Any] = Field(default_factory=dict, description="Figures: frames in/out, drops, fps, latency.")
    push_mode: str | None = Field(
        default=None, description="When the stream is encoded: always, on_demand or never (the config's push_mode)."
    )
    pushing: bool | None = Field(default=None, description="Whether the stream is being encoded now.")


class WatchStatus(BaseModel):
    """A camera's stream after a viewer asked for it (streams on demand)."""

    camera_id: str
    push_mode: str = Field(description="always, on_demand or never.")
    demanded: bool = Field(description="Pictures are wanted now: the encoder runs from the next frame.")
    pushing: bool = Field(description="The encoder runs now.")
    viewers: int = Field(description="Distinct viewers within the idle time.")
    starts: int = Field(description="On-demand encoder starts so far.")
    stops: int = Field(description="On-demand encoder stops so far (idle).")
    idle_s: float = Field(description="Seconds without a viewer after which an on-demand stream stops.")
    hls_ready: bool = Field(default=False, description="The HLS playlist of the running encoder is there.")


class StreamUrls(BaseModel):
    """Where the camera's annotated stream can be watched."""

    model_config = ConfigDict(extra="allow")

    camera_id: str
    live_mjpeg: str = Field(description="MJPEG view served by this API.")
    frame_jpeg: str = Field(description="Latest annotated JPEG served by this API.")
    hls: str | None = Field(default=None, description="HLS playlist served by this API, when the camera pushes HLS.")
    pushed: dict[str, Any] = Field(default_factory=dict, description="URLs from the controller (RTMP/RTSP/SRT/HLS).")


class Instance(BaseModel):
    """One segmented instance."""

    class_id: int
    class_name: str
    score: float = Field(ge=0, le=1)
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels.", min_length=4, max_length=4)
    polygon: list[list[float]] | None = Field(default=None, description="Mask outline as [x, y] pixel points.")


class InferenceResult(BaseModel):
    """Instances found in an uploaded image."""

    width: int
    height: int
    count: int
    instances: list[Instance]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "width": 640,
                    "height": 480,
                    "count": 1,
                    "instances": [
                        {
                            "class_id": 0,
                            "class_name": "charging_cable",
                            "score": 0.87,
                            "box": [120.0, 40.5, 180.0, 300.0],
                            "polygon": [[120.0, 40.5], [180.0, 40.5], [150.0, 300.0]],
                        }
                    ],
                }
            ]
        }
    )


class Counts(BaseModel):
    """Event counts grouped by the requested keys."""

    group_by: list[str]
    rows: list[EventCount] = Field(description="One row per group: the keys' values (others null) and 'count'.")
