"""The root of the configuration tree: the whole system in one validated object."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from trtseg.config.api import ApiConfig
from trtseg.config.base import Section
from trtseg.config.camera import CameraConfig
from trtseg.config.clips import EvidenceConfig
from trtseg.config.cluster import ClusterConfig
from trtseg.config.engine import EngineConfig
from trtseg.config.outbound import OutboundConfig
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
    evidence: EvidenceConfig = Field(
        default_factory=EvidenceConfig, description="Incident clips on disk and retention of clips and key frames."
    )
    outbound: OutboundConfig = Field(
        default_factory=OutboundConfig, description="MQTT, webhooks and what outbound URLs may reach."
    )

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> SystemConfig:
        seen: set[str] = set()
        for camera in self.cameras:
            if camera.id in seen:
                raise ValueError(f"camera id '{camera.id}' is used more than once")
            seen.add(camera.id)
        return self

    def with_paths_resolved(self, root: Path) -> SystemConfig:
        """A copy whose relative file paths are anchored at ``root`` (the project checkout).

        Actors may run with another working directory (or on another node with the same checkout
        path), so every path leaves the driver absolute.
        """
        resolved = self.model_copy(deep=True)

        def anchor(path: Path) -> Path:
            return path if path.is_absolute() else (root / path).resolve()

        resolved.engine.model = anchor(resolved.engine.model)
        resolved.engine.cache_dir = anchor(resolved.engine.cache_dir)
        resolved.pusher.hls_dir = anchor(resolved.pusher.hls_dir)
        resolved.sink.keyframe_dir = anchor(resolved.sink.keyframe_dir)
        resolved.sink.spool_dir = anchor(resolved.sink.spool_dir)
        resolved.evidence.clip_dir = anchor(resolved.evidence.clip_dir)
        mqtt = resolved.outbound.mqtt
        if mqtt is not None:
            for name in ("ca_file", "cert_file", "key_file"):
                if getattr(mqtt, name) is not None:
                    setattr(mqtt, name, anchor(getattr(mqtt, name)))
        for hook in resolved.outbound.webhooks:
            if hook.ca_file is not None:
                hook.ca_file = anchor(hook.ca_file)
        if resolved.api.file_source_dir is not None:
            resolved.api.file_source_dir = anchor(resolved.api.file_source_dir)
        url = resolved.sink.database_url.get_secret_value()
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            resolved.sink.database_url = SecretStr("sqlite:///" + str(anchor(Path(url[len("sqlite:///") :]))))
        for camera in resolved.cameras:
            if "://" not in camera.source and not Path(camera.source).is_absolute():
                camera.source = str(anchor(Path(camera.source)))
        return resolved

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera with this id (KeyError when absent)."""
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(camera_id)
