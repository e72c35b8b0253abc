"""How the pipeline's actors are created: resources, restarts and node placement in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.common import SINK_NAME
from actors.decoder import DecoderActor
from actors.pusher import PusherActor
from actors.segmenter import MAX_CONCURRENCY, SegmenterActor
from actors.sink import SinkActor
from trtseg.config import CameraConfig, SystemConfig
from trtseg.outbound.urlguard import cluster_ports
from trtseg.placement import SegmenterSlot

# Logical CPUs asked of Ray: small, because decoding and encoding cost far less than a core per
# camera at typical rates and Ray's accounting must not cap cameras per node before the GPU does.
CAMERA_ACTOR_CPUS = 0.1
SINK_CPUS = 0.1
CPU_SEGMENTER_CPUS = 1.0
GPU_SEGMENTER_CPUS = 0.5
PUSHER_TASK_RETRIES = 3
# An NVDEC decoder takes no share of the GPU from Ray (the segmenters hold it all; the video engine
# is a separate unit) but must see the device: Ray versions that hide GPUs from actors asking for
# none are told not to.
NVDEC_DECODER_OPTIONS: dict[str, Any] = {"runtime_env": {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}}}


def _affinity(node_id: str | None, soft: bool = True) -> dict[str, Any]:
    if not node_id:
        return {}
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)}


def new_segmenter(slot: SegmenterSlot, config: SystemConfig) -> Any:
    """A segmentation actor for ``slot``: a share of one GPU pinned to its node, or a CPU one."""
    gpu = slot.key.startswith("gpu-")
    engine = config.engine
    if not gpu and engine.device.startswith("cuda"):
        engine = engine.model_copy(update={"device": "cpu"})
    options: dict[str, Any] = {
        "num_cpus": GPU_SEGMENTER_CPUS if gpu else CPU_SEGMENTER_CPUS,
        "num_gpus": slot.weight if gpu else 0,
        "max_concurrency": MAX_CONCURRENCY,
        "max_restarts": config.cluster.max_actor_restarts,
        "max_task_retries": 0,  # a frame is not worth re-running after a crash: the next one is coming
        # A GPU segmenter belongs to its node's GPU; a CPU one may move if its node is lost.
        **_affinity(slot.node_id, soft=not gpu),
    }
    return SegmenterActor.options(**options).remote(engine, slot.key)


def new_sink(config: SystemConfig, node_id: str | None) -> Any:
    """The event sink, on the node whose disk holds the database file, spool and key frames."""
    return SinkActor.options(
        name=SINK_NAME,
        namespace=config.cluster.namespace,
        num_cpus=SINK_CPUS,
        max_concurrency=4,
        max_restarts=config.cluster.max_actor_restarts,
        max_task_retries=-1,
        **_affinity(node_id, soft=True),
    ).remote(config.sink, config.pusher.jpeg_quality, config.outbound, cluster_ports(config))


def new_camera_actors(
    camera: CameraConfig,
    config: SystemConfig,
    segmenter: Any,
    node_id: str | None,
    names: dict[int, str],
    sink: Any,
) -> tuple[Any, Any]:
    """The camera's pusher and decoder, both on its segmenter's node when it has room (soft)."""
    file_dir: Path | None = config.api.file_source_dir
    pusher = PusherActor.options(
        num_cpus=CAMERA_ACTOR_CPUS,
        max_restarts=config.cluster.max_actor_restarts,
        max_task_retries=PUSHER_TASK_RETRIES,
        **_affinity(node_id),
    ).remote(camera, config.pusher, names, sink)
    decoder = DecoderActor.options(
        num_cpus=CAMERA_ACTOR_CPUS,
        max_restarts=config.cluster.max_actor_restarts,
        max_task_retries=-1,
        **_affinity(node_id),
        **(NVDEC_DECODER_OPTIONS if camera.decoder == "nvdec" else {}),
    ).remote(
        camera,
        segmenter,
        pusher,
        config.cluster.frames_in_flight,
        file_dir,
        config.cluster.frame_transport,
        config.evidence,
    )
    return decoder, pusher
