"""The HTTP API served by Ray Serve."""

from pathlib import Path

from pydantic import Field, SecretStr

from trtseg.config.base import Section


class ApiConfig(Section):
    """Bind address, auth and limits of the HTTP API."""

    host: str = Field(default="127.0.0.1", description="Bind address of Ray Serve's HTTP proxy.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    route_prefix: str = Field(default="/", pattern="^/", description="Path prefix of the API.")
    replicas: int = Field(default=1, ge=1, le=64, description="Serve replicas of the ingress deployment.")
    token: SecretStr | None = Field(
        default=None, description="Bearer token for mutating endpoints; empty: no auth (local demo only)."
    )
    token_for_reads: bool = Field(default=False, description="Require the token for every endpoint.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty: none.")
    file_source_dir: Path | None = Field(
        default=Path("var/videos"), description="The only directory file:// camera sources may read from."
    )
    max_upload_mb: float = Field(default=16.0, gt=0, le=512, description="Largest image for on-demand inference.")
    live_fps: float = Field(default=10.0, gt=0, le=30, description="Frame rate of the MJPEG live views.")
    live_max_s: float = Field(
        default=3600.0, gt=0, le=86400, description="Longest one MJPEG live view runs before the client reconnects."
    )
