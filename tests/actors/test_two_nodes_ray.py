"""Two Ray nodes on loopback: cameras spread over the segmenters of both nodes, each camera's actors on
its segmenter's node; losing a node moves its cameras to the survivor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.actors.system_helpers import MODEL, camera, system_config, wait_for
from tests.services.ray_cluster import RayTestCluster
from tests.services.streaming import make_test_clip

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_file(), reason="models/trtseg-cable-n.onnx is missing"),
]

NAMESPACE = "trtseg-test-two-nodes"


@pytest.fixture(scope="module")
def two_node_system(
    ray_two_nodes: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, RayTestCluster]]:
    from actors.launch import running_system

    media = tmp_path_factory.mktemp("two-nodes-media")
    clip = make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    tmp = tmp_path_factory.mktemp("two-nodes-system")
    cameras = [camera("north", clip), camera("south", clip)]
    config = system_config(tmp, media, NAMESPACE, cameras, cpu_segmenters=2)
    with running_system(config, start_timeout_s=240) as controller:
        yield controller, ray_two_nodes


def _cameras(controller: Any) -> dict[str, dict[str, Any]]:
    import ray

    return {c["id"]: c for c in ray.get(controller.list_cameras.remote(), timeout=30)}


def _wait_pushing(controller: Any, what: str) -> None:
    """Every camera hands a few more frames to its encoder than it had when this was called."""
    before = {cid: c["stats"]["output"].get("frames", 0) for cid, c in _cameras(controller).items()}
    wait_for(
        lambda: all(
            c.get("stats", {}).get("output", {}).get("frames", 0) > before[cid] + 2
            for cid, c in _cameras(controller).items()
        ),
        90,
        what,
    )


def _all_pushing(controller: Any, minimum: int = 1) -> dict[str, dict[str, Any]] | None:
    cameras = _cameras(controller)
    frames = [c.get("stats", {}).get("output", {}).get("frames", 0) for c in cameras.values()]
    return cameras if frames and all(f >= minimum for f in frames) else None


def test_cameras_run_on_both_nodes(two_node_system: tuple[Any, RayTestCluster]) -> None:
    import ray

    controller, cluster = two_node_system
    nodes = {cluster.node_id("head"), cluster.node_id("worker")}
    placement = ray.get(controller.placement.remote(), timeout=30)
    assert set(placement["segmenters"].values()) == nodes, "one CPU segmenter on each node"
    assert {p["node_id"] for p in placement["cameras"].values()} == nodes, "one camera on each node"
    for info in placement["cameras"].values():
        assert info["node_id"] == placement["segmenters"][info["segmenter"]], "camera follows its segmenter"

    cameras = wait_for(lambda: _all_pushing(controller, 5), 90, "both cameras to push frames")
    for found in cameras.values():
        assert found["state"] == "live"
        assert found["stats"]["output"]["inferred"] > 0
    # The decoder reports the node it really runs on.
    handles = {cid: ray.get(controller.camera_actors.remote(cid), timeout=30) for cid in cameras}
    for cid, actors in handles.items():
        where = ray.get(actors["decoder"].ping.remote(), timeout=30)["node_id"]
        assert where == placement["cameras"][cid]["node_id"]


def test_lost_node_moves_its_cameras(two_node_system: tuple[Any, RayTestCluster]) -> None:
    import ray

    controller, cluster = two_node_system
    head = cluster.node_id("head")
    where = ray.get(controller.ping.remote(), timeout=30)
    assert where["node_id"] == head, (where, head, ray.get_runtime_context().get_node_id())
    cluster.remove_node("worker")

    def all_on_head() -> dict[str, Any] | None:
        ray.get(controller.check_now.remote(), timeout=120)
        placement = ray.get(controller.placement.remote(), timeout=30)
        nodes = {p["node_id"] for p in placement["cameras"].values()}
        return placement if nodes == {head} and set(placement["segmenters"].values()) == {head} else None

    wait_for(all_on_head, 120, "cameras and segmenters to move to the head node", interval_s=2.0)
    _wait_pushing(controller, "both cameras to push again from the head node")


def test_joining_node_takes_a_cpu_segmenter_and_cameras(two_node_system: tuple[Any, RayTestCluster]) -> None:
    import ray

    controller, cluster = two_node_system
    head = cluster.node_id("head")
    joined = cluster.add_node("worker2", num_cpus=2)

    def spread() -> dict[str, Any] | None:
        ray.get(controller.check_now.remote(), timeout=120)
        placement = ray.get(controller.placement.remote(), timeout=30)
        segmenter_nodes = sorted(placement["segmenters"].values())
        camera_nodes = {p["node_id"] for p in placement["cameras"].values()}
        return placement if segmenter_nodes == sorted([head, joined]) and camera_nodes == {head, joined} else None

    placement = wait_for(spread, 180, "a CPU segmenter and a camera to move to the new node", interval_s=2.0)
    for info in placement["cameras"].values():
        assert info["node_id"] == placement["segmenters"][info["segmenter"]]
    _wait_pushing(controller, "both cameras to push after the move")
