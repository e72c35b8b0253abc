"""The HTTP API served by Ray Serve."""

import hashlib
import hmac
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from trtseg.config.base import Section

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})


def _secret(value: SecretStr | None) -> str | None:
    text = value.get_secret_value() if value is not None else ""
    return text or None


class ApiConfig(Section):
    """Bind address, auth and limits of the HTTP API."""

    host: str = Field(
        default="127.0.0.1",
        description="Bind address of Ray Serve's HTTP proxy; off loopback the API refuses to start without "
        "an admin token (api.admin_token).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    route_prefix: str = Field(default="/", pattern="^/", description="Path prefix of the API.")
    replicas: int = Field(default=1, ge=1, le=64, description="Serve replicas of the ingress deployment.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin role: reads and every change (cameras, zones, rules, outbound "
        "URLs). Empty (and no `token`): no auth, loopback only.",
    )
    viewer_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the viewer role: reads, media and acknowledging incidents; never changes. "
        "When set, reads need a token (admin or viewer).",
    )
    token: SecretStr | None = Field(
        default=None, description="Former name of admin_token, still accepted; admin_token wins when both are set."
    )
    token_for_reads: bool = Field(default=False, description="Require a token (admin or viewer) for every read.")
    link_secret: SecretStr | None = Field(
        default=None,
        description="Key of the short-lived signed media links (?exp=&sig=); empty: derived from the admin token. "
        "Every replica must share it.",
    )
    link_ttl_s: int = Field(
        default=600, ge=10, le=86400, description="How long a signed media link (key frame, clip, live view) is valid."
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty: none.")
    file_source_dir: Path | None = Field(
        default=Path("var/videos"), description="The only directory file:// camera sources may read from."
    )
    max_upload_mb: float = Field(default=16.0, gt=0, le=512, description="Largest image for on-demand inference.")
    live_fps: float = Field(default=10.0, gt=0, le=30, description="Frame rate of the MJPEG live views.")
    live_max_s: float = Field(
        default=3600.0, gt=0, le=86400, description="Longest one MJPEG live view runs before the client reconnects."
    )

    @model_validator(mode="after")
    def _distinct_tokens(self) -> "ApiConfig":
        admin, viewer = self.admin_secret(), _secret(self.viewer_token)
        if viewer is not None and admin is None:
            raise ValueError("viewer_token needs an admin_token too (else anyone is admin)")
        if viewer is not None and admin is not None and hmac.compare_digest(viewer.encode(), admin.encode()):
            raise ValueError("viewer_token must differ from admin_token")
        return self

    def admin_secret(self) -> str | None:
        """The admin token: ``admin_token``, else the older ``token``; None: auth is off."""
        return _secret(self.admin_token) or _secret(self.token)

    def viewer_secret(self) -> str | None:
        return _secret(self.viewer_token)

    @property
    def auth_enabled(self) -> bool:
        return self.admin_secret() is not None

    @property
    def reads_need_token(self) -> bool:
        return self.auth_enabled and (self.token_for_reads or self.viewer_secret() is not None)

    def link_key(self) -> bytes | None:
        """HMAC key of signed media links; None when auth is off (media is then open anyway)."""
        configured = _secret(self.link_secret)
        if configured:
            return hashlib.sha256(b"trtseg-link-secret\0" + configured.encode("utf-8")).digest()
        admin = self.admin_secret()
        if admin is None:
            return None
        return hmac.new(admin.encode("utf-8"), b"trtseg-media-links-v1", hashlib.sha256).digest()

    @property
    def on_loopback(self) -> bool:
        return self.host.strip().lower() in LOOPBACK_HOSTS

    def exposure_problem(self) -> str | None:
        """Why the API must not start as configured (bound off loopback without an admin token), or None."""
        if self.on_loopback or self.auth_enabled:
            return None
        return (
            f"api.host is {self.host} (reachable off this machine) but no admin token is set: set api.admin_token "
            "(for example through the environment, TRTSEG__API__ADMIN_TOKEN=...) or bind api.host to 127.0.0.1"
        )
