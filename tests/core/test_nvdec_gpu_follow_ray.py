"""NVDEC follows its segmenter's GPU: a real Ray cluster with two logical GPUs on one node, two actors
that each hold one and answer ``ping`` with ``actors.common.identity`` as the segmenter does."""

from __future__ import annotations

from typing import Any

import pytest

from tests.services.ray_cluster import RayTestCluster
from trtseg.config import CameraConfig
from trtseg.decode_nvdec import NvdecCameraDecoder, make_decoder
from trtseg.nvdec_stream import segmenter_gpu

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _gpu_holder() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class GpuHolder:
        """Holds one logical GPU and pings like SegmenterActor (the same identity record)."""

        def __init__(self) -> None:
            from actors.common import identity

            self._identity = identity("segmenter", "gpu-test")

        def ping(self) -> dict[str, Any]:
            return self._identity

    return GpuHolder


def test_each_nvdec_decoder_takes_its_segmenters_gpu(
    ray_logical_gpus: RayTestCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    ray_logical_gpus.add_node("two-gpus", num_cpus=1, num_gpus=2, resources={"two-gpus": 2.0})
    ray_logical_gpus.cluster.wait_for_nodes(timeout=60)
    holder = _gpu_holder()
    actors = [holder.options(num_gpus=1, resources={"two-gpus": 1.0}).remote() for _ in range(2)]
    pings = ray.get([actor.ping.remote() for actor in actors], timeout=60)
    assert sorted(ping["gpu_ids"] for ping in pings) == [["0"], ["1"]], pings
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # a decoder seeing every GPU of its node
    assert sorted(segmenter_gpu(actor) for actor in actors) == [0, 1]
    camera = CameraConfig(id="g", source="rtsp://cam/1", decoder="nvdec")
    for actor, ping in zip(actors, pings, strict=True):
        decoder = make_decoder(camera, segmenter=actor)
        assert isinstance(decoder, NvdecCameraDecoder) and decoder.gpu_id == int(ping["gpu_ids"][0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # a decoder that sees only the node's GPU 1
    assert sorted(segmenter_gpu(actor) for actor in actors) == [0, 0]
    cpu_only = holder.options(num_gpus=0).remote()  # a CPU segmenter has no GPU: NVDEC on GPU 0
    assert ray.get(cpu_only.ping.remote(), timeout=60)["gpu_ids"] == [] and segmenter_gpu(cpu_only) == 0
