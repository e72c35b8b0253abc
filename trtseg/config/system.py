"""The root of the configuration tree: the whole system in one validated object."""

from __future__ import annotations

from pydantic import Field, model_validator

from trtseg.config.api import ApiConfig
from trtseg.config.base import Section
from trtseg.config.camera import CameraConfig
from trtseg.config.cluster import ClusterConfig
from trtseg.config.engine import EngineConfig
from trtseg.config.pusher import PusherConfig
from trtseg.config.sink import SinkConfig


class SystemConfig(Section):
    """Everything trtseg runs: cluster, engine, cameras, pushers, sink and API."""

    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Ray cluster and placement.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="Segmentation engine.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Cameras started at launch.")
    pusher: PusherConfig = Field(default_factory=PusherConfig, description="Encoding and pushing.")
    sink: SinkConfig = Field(default_factory=SinkConfig, description="Event database and key frames.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP API.")

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> SystemConfig:
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.id in seen:
                raise ValueError(f"camera id '{camera.id}' is used more than once")
            seen.add(camera.id)
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera with this id (KeyError when absent)."""
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(camera_id)
