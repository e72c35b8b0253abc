"""Which segmentation actor serves which camera, and so on which node the camera's actors run.

Plain functions over plain data, so the policy is tested without Ray: cameras go to the segmenter
with the least load, where load is cameras divided by the segmenter's weight (its share of a GPU,
so a node with more or bigger GPUs takes more cameras). A camera's decoder and pusher follow its
segmenter's node. Rebalancing keeps cameras where they are unless moving one clearly evens out the
load, because every move restarts a camera's stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SegmenterSlot:
    """A segmentation actor as placement sees it: its key, its node and its capacity weight."""

    key: str
    node_id: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(f"segmenter {self.key}: weight must be positive, got {self.weight}")


@dataclass(slots=True)
class PlacementPlan:
    """Camera -> segmenter key, and which cameras changed segmenter (so their actors move)."""

    assignment: dict[str, str]
    moved: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)

    def node_of(self, camera_id: str, segmenters: Iterable[SegmenterSlot]) -> str | None:
        """The node the camera's actors should run on."""
        key = self.assignment.get(camera_id)
        return next((slot.node_id for slot in segmenters if slot.key == key), None)


def loads(assignment: Mapping[str, str], segmenters: Iterable[SegmenterSlot]) -> dict[str, float]:
    """Weighted load (cameras / weight) of every segmenter."""
    slots = {slot.key: slot for slot in segmenters}
    counts = dict.fromkeys(slots, 0)
    for key in assignment.values():
        if key in counts:
            counts[key] += 1
    return {key: counts[key] / slots[key].weight for key in slots}


def plan(
    cameras: Iterable[str],
    segmenters: Iterable[SegmenterSlot],
    current: Mapping[str, str] | None = None,
    rebalance: bool = True,
    max_moves: int | None = None,
) -> PlacementPlan:
    """Place ``cameras`` on ``segmenters``, starting from ``current`` (camera -> segmenter key).

    Cameras whose segmenter still exists stay; new cameras and those of lost segmenters go to the
    least-loaded segmenter; then, with ``rebalance``, cameras move from the most to the least
    loaded segmenter while that strictly lowers the busier side (at most ``max_moves`` moves).
    """
    slots = sorted(segmenters, key=lambda slot: slot.key)
    camera_ids = sorted(set(cameras))
    current = dict(current or {})
    if not slots:
        return PlacementPlan(assignment={}, unplaced=camera_ids)
    by_key = {slot.key: slot for slot in slots}
    counts = dict.fromkeys(by_key, 0)
    assignment: dict[str, str] = {}
    for camera_id in camera_ids:
        key = current.get(camera_id)
        if key in by_key:
            assignment[camera_id] = key
            counts[key] += 1
    moved: list[str] = []
    for camera_id in camera_ids:
        if camera_id in assignment:
            continue
        key = _least_loaded(counts, by_key)
        assignment[camera_id] = key
        counts[key] += 1
        if current.get(camera_id) is not None:
            moved.append(camera_id)
    if rebalance:
        moved.extend(_even_out(assignment, counts, by_key, max_moves if max_moves is not None else len(camera_ids)))
    result = PlacementPlan(assignment=assignment, moved=sorted(set(moved)))
    if result.moved:
        logger.info("placement moved cameras=%s", ",".join(result.moved))
    return result


def _least_loaded(counts: dict[str, int], slots: Mapping[str, SegmenterSlot]) -> str:
    """The segmenter whose load after taking one more camera is lowest (ties: larger weight, key)."""
    return min(counts, key=lambda key: ((counts[key] + 1) / slots[key].weight, -slots[key].weight, key))


def _even_out(
    assignment: dict[str, str], counts: dict[str, int], slots: Mapping[str, SegmenterSlot], budget: int
) -> list[str]:
    moved: list[str] = []
    while len(moved) < budget:
        busiest = max(counts, key=lambda key: (counts[key] / slots[key].weight, key))
        target = _least_loaded(counts, slots)
        if busiest == target or counts[busiest] == 0:
            break
        if (counts[target] + 1) / slots[target].weight >= counts[busiest] / slots[busiest].weight:
            break  # the move would not lower the highest load
        # Move the camera that arrived last on the busiest segmenter (highest id: deterministic).
        camera_id = max(cid for cid, key in assignment.items() if key == busiest)
        assignment[camera_id] = target
        counts[busiest] -= 1
        counts[target] += 1
        moved.append(camera_id)
    return moved


def segmenter_slots_for_nodes(
    nodes: Iterable[Mapping[str, object]], segmenters_per_gpu: int, cpu_segmenters: int
) -> list[SegmenterSlot]:
    """The segmenters a cluster should run, from ``ray.nodes()``-like records.

    One per GPU (times ``segmenters_per_gpu``, each weighing its share of the GPU) on every alive
    node with GPUs; on a cluster without GPUs, ``cpu_segmenters`` CPU segmenters spread round-robin
    over the alive nodes.
    """
    alive = sorted(
        (node for node in nodes if node.get("Alive", node.get("alive", True))),
        key=lambda node: str(node.get("NodeID")),
    )
    slots: list[SegmenterSlot] = []
    for node in alive:
        resources = node.get("Resources") or {}
        assert isinstance(resources, Mapping)
        gpus = int(float(resources.get("GPU", 0) or 0))
        for gpu in range(gpus):
            for index in range(segmenters_per_gpu):
                slots.append(
                    SegmenterSlot(
                        key=f"gpu-{str(node['NodeID'])[:12]}-{gpu}-{index}",
                        node_id=str(node["NodeID"]),
                        weight=1.0 / segmenters_per_gpu,
                    )
                )
    if slots or not alive:
        return slots
    # The key names the node, so a node joining or leaving changes the wanted set and the pool
    # moves CPU segmenters (and so cameras) to spread over the nodes there are now.
    per_node: dict[str, int] = {}
    for index in range(cpu_segmenters):
        node_id = str(alive[index % len(alive)]["NodeID"])
        count = per_node.get(node_id, 0)
        per_node[node_id] = count + 1
        slots.append(SegmenterSlot(key=f"cpu-{node_id[:12]}-{count}", node_id=node_id, weight=1.0))
    return slots
