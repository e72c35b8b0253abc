"""Real Ray clusters for the tests, on loopback, on free ports, torn down with only their own processes.

``ray stop`` would kill every Ray process on the machine (other test sessions' clusters too), so
clusters are built with ``ray.cluster_utils.Cluster``: its nodes are processes this test session
started, and ``shutdown()`` ends exactly those. Redis holds 6379 here, so the GCS always gets an
explicit free port. Clusters are module-scoped and small: the machine has few cores.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services.ports import free_port

logger = logging.getLogger(__name__)

NAMESPACE = "trtseg-test"
OBJECT_STORE_BYTES = 200 * 1024 * 1024


@dataclass
class RayTestCluster:
    """A running cluster the test process is connected to (``ray.init`` done)."""

    cluster: Any  # ray.cluster_utils.Cluster
    address: str
    namespace: str
    nodes: dict[str, Any] = field(default_factory=dict)  # name -> ray._private.node.Node
    temp_dir: str = ""

    def node_id(self, name: str) -> str:
        """Ray's node id of the node added under ``name``."""
        return str(self.nodes[name].node_id)

    def add_node(
        self, name: str, num_cpus: int = 2, resources: dict[str, float] | None = None, num_gpus: int = 0
    ) -> str:
        """Start another node on loopback (``num_gpus``: logical GPUs Ray schedules by); returns its node id."""
        node = self.cluster.add_node(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            node_ip_address="127.0.0.1",
            resources=resources or {},
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            temp_dir=self.temp_dir or None,
        )
        self.nodes[name] = node
        return str(node.node_id)

    def remove_node(self, name: str) -> None:
        """Kill one worker node's processes (a lost machine)."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)


def _keep_loopback() -> None:
    """Make this driver resolve 127.0.0.1 to itself, not to the machine's outward address.

    ``ray.init(address="127.0.0.1:port")`` rewrites a loopback host to the node's routable IP
    unless Ray's cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read at import, so
    the constant is set too); nodes here bind 127.0.0.1 only, so the rewrite would never connect.
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _start_cluster(
    head_cpus: int, head_resources: dict[str, float] | None = None, head_gpus: int = 0
) -> RayTestCluster:
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    _keep_loopback()
    # A private temp dir: sessions, sockets and the "current cluster" address file stay ours, so
    # another process's ray.init(address="auto") on this machine never finds a test cluster.
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    # ray.cluster_utils still records the head's address in Ray's default temp dir, which it does
    # not create: on a machine where Ray never ran, the first test cluster would fail to start.
    from ray._private.utils import get_ray_address_file

    Path(get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head_cpus,
            "num_gpus": head_gpus,
            "node_ip_address": "127.0.0.1",
            "gcs_server_port": free_port(),
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE_BYTES,
            "resources": head_resources or {},
            "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"},
            "temp_dir": temp_dir,
        },
    )
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=True)
    logger.info("ray test cluster started address=%s", cluster.address)
    return RayTestCluster(
        cluster=cluster,
        address=cluster.address,
        namespace=NAMESPACE,
        nodes={"head": cluster.head_node},
        temp_dir=temp_dir,
    )


def _stop_cluster(handle: RayTestCluster) -> None:
    import ray

    try:
        ray.shutdown()
    finally:
        handle.cluster.shutdown()
        if handle.temp_dir:
            shutil.rmtree(handle.temp_dir, ignore_errors=True)
        logger.info("ray test cluster stopped address=%s", handle.address)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[RayTestCluster]:
    """A single-node Ray cluster (4 logical CPUs) with this process connected as its driver."""
    pytest.importorskip("ray")
    handle = _start_cluster(head_cpus=4)
    try:
        yield handle
    finally:
        _stop_cluster(handle)


@pytest.fixture(scope="module")
def ray_two_nodes() -> Iterator[RayTestCluster]:
    """Two Ray nodes on loopback ('head' and 'worker'), each with a custom resource naming it."""
    pytest.importorskip("ray")
    # The head has room for everything: tests move the worker's actors onto it when it is removed.
    handle = _start_cluster(head_cpus=4, head_resources={"trtseg-test-head": 1.0})
    try:
        handle.add_node("worker", num_cpus=2, resources={"trtseg-test-worker": 1.0})
        handle.cluster.wait_for_nodes(timeout=60)
        yield handle
    finally:
        _stop_cluster(handle)


@pytest.fixture(scope="module")
def ray_logical_gpus() -> Iterator[RayTestCluster]:
    """A head node announcing one logical GPU (Ray schedules by it; nothing runs on a real GPU).

    Exercises GPU placement (one segmenter per GPU, cameras weighted by GPU) on machines without
    GPUs; tests add GPU nodes with ``add_node(..., num_gpus=n)``.
    """
    pytest.importorskip("ray")
    handle = _start_cluster(head_cpus=4, head_gpus=1)
    try:
        yield handle
    finally:
        _stop_cluster(handle)
