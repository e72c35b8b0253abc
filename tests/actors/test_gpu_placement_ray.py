"""GPU placement on a real Ray cluster with logical GPUs: one segmenter per GPU, and a node that joins
with a GPU takes over its share of the cameras (the engine itself runs on the CPU here)."""

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

NAMESPACE = "trtseg-test-gpu-placement"


@pytest.fixture(scope="module")
def gpu_system(
    ray_logical_gpus: RayTestCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, RayTestCluster]]:
    from actors.launch import running_system

    media = tmp_path_factory.mktemp("gpu-media")
    clip = make_test_clip(media / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    tmp = tmp_path_factory.mktemp("gpu-system")
    cameras = [camera("east", clip, inference_fps=2), camera("west", clip, inference_fps=2)]
    config = system_config(tmp, media, NAMESPACE, cameras, cpu_segmenters=3)
    with running_system(config, start_timeout_s=240) as controller:
        yield controller, ray_logical_gpus


def _frames(controller: Any) -> dict[str, int]:
    import ray

    cameras = ray.get(controller.list_cameras.remote(), timeout=30)
    return {c["id"]: int(c.get("stats", {}).get("output", {}).get("frames", 0)) for c in cameras}


def test_node_joining_with_a_gpu_takes_cameras(gpu_system: tuple[Any, RayTestCluster]) -> None:
    import ray

    controller, cluster = gpu_system
    head = cluster.node_id("head")
    placement = ray.get(controller.placement.remote(), timeout=30)
    assert list(placement["segmenters"].values()) == [head], "one segmenter for the head's one GPU, no CPU ones"
    assert all(key.startswith("gpu-") for key in placement["segmenters"])
    assert {p["node_id"] for p in placement["cameras"].values()} == {head}

    worker = cluster.add_node("gpu-worker", num_cpus=2, num_gpus=1)

    def spread() -> dict[str, Any] | None:
        ray.get(controller.check_now.remote(), timeout=120)
        now = ray.get(controller.placement.remote(), timeout=30)
        on = {p["node_id"] for p in now["cameras"].values()}
        return now if set(now["segmenters"].values()) == {head, worker} and on == {head, worker} else None

    placement = wait_for(spread, 180, "the new GPU node's segmenter to take a camera", interval_s=2.0)
    for info in placement["cameras"].values():
        assert info["node_id"] == placement["segmenters"][info["segmenter"]]
    before = _frames(controller)
    wait_for(
        lambda: all(n > before[cid] + 2 for cid, n in _frames(controller).items()),
        90,
        "both cameras to push after the move",
    )
