"""One pydantic tree configures the whole system; one module per concern."""

from trtseg.config.api import ApiConfig
from trtseg.config.camera import CameraConfig, EventRules, RegionOfInterest
from trtseg.config.clips import ClipConfig, EvidenceConfig
from trtseg.config.cluster import ClusterConfig
from trtseg.config.engine import EngineConfig
from trtseg.config.loader import ConfigError, load_config, parse_config
from trtseg.config.pusher import PusherConfig
from trtseg.config.sink import SinkConfig
from trtseg.config.system import SystemConfig

__all__ = [
    "ApiConfig",
    "CameraConfig",
    "ClipConfig",
    "ClusterConfig",
    "ConfigError",
    "EngineConfig",
    "EventRules",
    "EvidenceConfig",
    "PusherConfig",
    "RegionOfInterest",
    "SinkConfig",
    "SystemConfig",
    "load_config",
    "parse_config",
]
