"""What the CLI calls: start the whole pipeline on a connected Ray cluster, and stop it again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.common import CONTROLLER_NAME
from actors.controller import Controller
from trtseg.config import SystemConfig

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 120.0
CONTROLLER_CONCURRENCY = 256

_namespace: str | None = None


def start_system(config: SystemConfig, timeout_s: float = START_TIMEOUT_S) -> Any:
    """Create the controller (named ``trtseg-controller``), which starts sink, segmenters and cameras.

    Needs ``ray.init`` done. Returns the controller's handle once every configured camera was started.
    Paths in ``config`` should be absolute (``SystemConfig.with_paths_resolved``): actors may run
    elsewhere.
    """
    global _namespace
    if not ray.is_initialized():
        raise RuntimeError("connect to a Ray cluster first (ray.init)")
    namespace = config.cluster.namespace
    try:
        existing = ray.get_actor(CONTROLLER_NAME, namespace=namespace)
    except ValueError:
        existing = None
    if existing is not None:
        raise RuntimeError(f"a trtseg controller already runs in namespace '{namespace}'; stop it first")
    home = ray.get_runtime_context().get_node_id()
    controller = Controller.options(
        name=CONTROLLER_NAME,
        namespace=namespace,
        lifetime="detached" if config.cluster.detached else None,
        num_cpus=0,
        max_concurrency=CONTROLLER_CONCURRENCY,
        # Ray restarts a controller whose process died; it rebuilds the pipeline from the YAML and the
        # camera registry. Only read-only methods retry on the new process (see actors.controller).
        max_restarts=config.cluster.max_actor_restarts,
        max_task_retries=0,
        # On the starting process's node (the head when run by the CLI): it must outlive worker nodes.
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=home, soft=False),
    ).remote(config, home)
    try:
        started = ray.get(controller.start.remote(), timeout=timeout_s)
    except BaseException:
        _stop(controller)
        raise
    _namespace = namespace
    logger.info("system started namespace=%s cameras=%s", namespace, started.get("cameras"))
    return controller


def get_controller(namespace: str | None = None) -> Any:
    """The running controller's handle (ValueError when none runs)."""
    return ray.get_actor(CONTROLLER_NAME, namespace=namespace or _namespace or "trtseg")


def stop_system(namespace: str | None = None, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Shut the pipeline down in order and remove the controller; no-op when none runs."""
    try:
        controller = get_controller(namespace)
    except ValueError:
        logger.info("no trtseg controller to stop")
        return
    _stop(controller, timeout_s)


def _stop(controller: Any, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Ordered shutdown, then kill without restart: a deliberate stop must not bring Ray's restart."""
    try:
        summary = ray.get(controller.shutdown.remote(), timeout=timeout_s)
        logger.info("system stopped summary=%s", summary)
    except Exception as error:
        logger.error("controller shutdown failed error=%s", error)
    finally:
        ray.kill(controller, no_restart=True)


@contextmanager
def running_system(
    config: SystemConfig, start_timeout_s: float = START_TIMEOUT_S, stop_timeout_s: float = STOP_TIMEOUT_S
) -> Iterator[Any]:
    """``with running_system(config) as controller:`` the pipeline runs; on exit it stops in order.

    Holding the controller's handle for the whole block matters: a non-detached actor dies when its
    creator's last handle goes away, and would take its cameras down without the ordered shutdown.
    """
    controller = start_system(config, timeout_s=start_timeout_s)
    try:
        yield controller
    finally:
        _stop(controller, stop_timeout_s)
