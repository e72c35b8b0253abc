"""What every route needs, held once per app (no module globals, so apps never share state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from trtseg.config import ApiConfig, PusherConfig

from deployments.control import ControlPlane
from deployments.metrics import RequestMetrics


@dataclass
class ApiContext:
    """The app's collaborators: the controller, the event (and incident) store, configuration and counters."""

    control: ControlPlane
    store: Any  # trtseg.db.EventStore (sync; called in a worker thread)
    config: ApiConfig
    pusher: PusherConfig = field(default_factory=PusherConfig)
    keyframe_dir: Path | None = None
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    # What URLs the server may be made to reach on a caller's behalf (camera sources); None: not checked.
    outbound: Any = None  # trtseg.outbound.urlguard.GuardPolicy

    @property
    def incidents(self) -> Any:
        """trtseg.db.IncidentStore on the event store's database (sync; called in a worker thread)."""
        return self.store.incidents

    @property
    def hls_dir(self) -> Path:
        return self.pusher.hls_dir


def get_context(request: Request) -> ApiContext:
    """FastAPI dependency: the ApiContext of the app serving this request."""
    return request.app.state.ctx
