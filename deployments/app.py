"""The Serve application: the API's FastAPI app as the ingress of a Ray Serve deployment.

Each replica builds its app at start-up (``__serve_build_asgi_app__``): a handle on the controller
actor and its own EventStore. Replicas share nothing else, so any number can run.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from trtseg.config import SystemConfig
from trtseg.outbound.urlguard import cluster_ports, policy_from_config

from deployments.api import create_app
from deployments.control import ControlError, RayControlPlane

logger = logging.getLogger(__name__)

APP_NAME = "trtseg"
DEPLOYMENT_NAME = "trtseg-api"


@serve.deployment(name=DEPLOYMENT_NAME, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=200)
@serve.ingress()
class ApiServer:
    """One API replica."""

    def __init__(self, config: SystemConfig) -> None:
        self._config = config
        self._store: Any = None

    async def __serve_build_asgi_app__(self) -> FastAPI:
        from trtseg.db import EventStore

        control = RayControlPlane(namespace=self._config.cluster.namespace)
        try:
            url = await control.event_store_url()
        except ControlError as error:
            logger.warning("controller gave no event store url, using the configured one error=%s", error)
            url = self._config.sink.database_url.get_secret_value()
        self._store = EventStore(url)
        self._store.migrate()
        logger.info("api replica ready namespace=%s", self._config.cluster.namespace)
        return create_app(
            control,
            self._store,
            self._config.api,
            pusher=self._config.pusher,
            keyframe_dir=self._config.sink.keyframe_dir,
            clip_dir=self._config.evidence.clip_dir,
            outbound=policy_from_config(self._config.outbound, cluster_ports(self._config)),
            webhooks=self._config.outbound.webhooks,
        )


def _absolute(config: SystemConfig) -> SystemConfig:
    """Relative directories are meant from where the system is launched, not a replica's own cwd."""
    data = config.model_copy(deep=True)
    data.pusher.hls_dir = data.pusher.hls_dir.resolve()
    data.sink.keyframe_dir = data.sink.keyframe_dir.resolve()
    data.evidence.clip_dir = data.evidence.clip_dir.resolve()
    if data.api.file_source_dir is not None:
        data.api.file_source_dir = data.api.file_source_dir.resolve()
    return data


def build_app(config: SystemConfig) -> Any:
    """The bound deployment (a Serve Application), replicas from ApiConfig.replicas."""
    return ApiServer.options(num_replicas=config.api.replicas).bind(_absolute(config))


def deploy(config: SystemConfig, blocking: bool = False) -> Any:
    """Start Serve's HTTP proxy on ApiConfig.host:port and run the API; Ray must be initialised. Refuses
    (ConfigError) to bind off loopback without an admin token."""
    problem = config.api.exposure_problem()
    if problem:
        from trtseg.config import ConfigError

        raise ConfigError(problem)
    serve.start(http_options={"host": config.api.host, "port": config.api.port})
    handle = serve.run(build_app(config), name=APP_NAME, route_prefix=config.api.route_prefix, blocking=blocking)
    logger.info("api deployed host=%s port=%d prefix=%s", config.api.host, config.api.port, config.api.route_prefix)
    return handle
