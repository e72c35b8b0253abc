"""The controller's pool of segmentation actors: one per GPU of every alive node (or a few CPU ones).

Each watchdog pass syncs the pool with the cluster: segmenters on lost nodes are dropped, new nodes
and GPUs get theirs. Starting a segmenter (loading a model, building an engine) can take minutes,
so starts are never awaited inside a pass: a start is polled on the following passes until it
answers or its time is up.

A segmenter that dies for good on a node that is still there (killed without restart, restarts used
up) is replaced in place: its key and slot stay while the new one starts, so placement moves no
camera (moving one restarts its decoder and pusher: a gap in the stream, its incidents closed), and
once the new one answers, the decoders of its cameras are handed the new handle. Meanwhile those
cameras push their frames without detections (``trtseg.handoff``). A replacement that fails to start
drops the slot, and placement moves the cameras to the segmenters left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from actors.common import call
from actors.spawn import new_segmenter
from actors.supervisor import SegmenterEntry, is_dead, is_restarting, kill_quietly
from trtseg.config import SystemConfig
from trtseg.placement import SegmenterSlot, segmenter_slots_for_nodes

logger = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
START_TIMEOUT_S = 300.0
MISSED_PINGS = 3


@dataclass
class _Starting:
    slot: SegmenterSlot
    handle: Any
    ping: Any  # ObjectRef of its first ping
    since: float
    replaces: SegmenterEntry | None = None  # the dead segmenter whose slot it takes over


class SegmenterPool:
    """Segmenters by key, with their slots (node, weight) for placement."""

    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        self.entries: dict[str, SegmenterEntry] = {}
        self._starting: dict[str, _Starting] = {}
        self._handed: dict[str, Any] = {}  # key -> replacement whose cameras' decoders are to be told
        self.errors: dict[str, str] = {}
        self.replaced = 0

    def slots(self) -> list[SegmenterSlot]:
        return [entry.slot for entry in self.entries.values()]

    @property
    def starting(self) -> list[str]:
        return sorted(self._starting)

    async def sync(self) -> bool:
        """One pass: check running segmenters, poll starting ones, start missing ones; True on change."""
        nodes = await asyncio.to_thread(ray.nodes)
        cluster = self.config.cluster
        desired = {
            s.key: s for s in segmenter_slots_for_nodes(nodes, cluster.segmenters_per_gpu, cluster.cpu_segmenters)
        }
        changed = await self._check_running(desired)
        changed = self._poll_starting() or changed
        changed = self._retire_surplus(desired) or changed
        for key, slot in desired.items():
            if key not in self.entries and key not in self._starting:
                self._start(key, slot)
        if self._handed:
            await self._hand_over()
        return changed

    def _start(self, key: str, slot: SegmenterSlot, replaces: SegmenterEntry | None = None) -> None:
        handle = new_segmenter(slot, self.config)
        self._starting[key] = _Starting(slot, handle, handle.ping.remote(), time.monotonic(), replaces)
        logger.info("segmenter starting key=%s node=%s replacing=%s", key, slot.node_id, replaces is not None)

    async def _hand_over(self) -> None:
        """Give the decoders of a replaced segmenter's cameras the new handle (no camera restarts).

        The pool lives in the controller's process and knows segmenters, not cameras: it asks its
        own actor which cameras are placed on the key and for their decoders."""
        handed, self._handed = self._handed, {}
        try:
            controller = ray.get_runtime_context().current_actor
            placement = await call(controller.placement.remote(), PING_TIMEOUT_S, "placement")
        except Exception as error:  # not in an actor (tests of the pool alone) or the call failed
            logger.warning("segmenter hand-over skipped keys=%s error=%s", ",".join(handed), error)
            return
        for camera_id, where in placement["cameras"].items():
            handle = handed.get(where.get("segmenter") or "")
            if handle is None:
                continue
            try:
                actors = await call(controller.camera_actors.remote(camera_id), PING_TIMEOUT_S, "camera actors")
                if actors["decoder"] is not None:
                    await call(actors["decoder"].set_segmenter.remote(handle), PING_TIMEOUT_S, "set_segmenter")
                logger.info("camera handed to the new segmenter camera=%s key=%s", camera_id, where["segmenter"])
            except Exception as error:  # its frames keep going without detections; the watchdog may restore it
                logger.warning("segmenter hand-over failed camera=%s error=%s", camera_id, error)

    async def wait_ready(self, timeout_s: float) -> None:
        """At start-up: sync until no segmenter is still starting (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        await self.sync()
        while self._starting and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await self.sync()

    async def close_all(self) -> None:
        for entry in self.entries.values():
            try:
                await call(entry.handle.close.remote(), PING_TIMEOUT_S, "segmenter close")
            except Exception as error:
                logger.debug("segmenter close failed key=%s error=%s", entry.slot.key, error)
            kill_quietly(entry.handle)
        for start in self._starting.values():
            kill_quietly(start.handle)
        self.entries.clear()
        self._starting.clear()

    async def _check_running(self, desired: dict[str, SegmenterSlot]) -> bool:
        keys = list(self.entries)
        answers = await asyncio.gather(
            *(call(self.entries[k].handle.ping.remote(), PING_TIMEOUT_S, f"segmenter {k}") for k in keys),
            return_exceptions=True,
        )
        changed = False
        for key, info in zip(keys, answers, strict=True):
            entry = self.entries[key]
            if isinstance(info, BaseException):
                if key in self._starting:
                    continue  # dead, and its replacement is starting
                if is_restarting(info) and self._restarting_for(entry) < START_TIMEOUT_S:
                    continue  # Ray brings it back; its cameras push frames without detections meanwhile
                entry.failures += 1
                lost = is_dead(info) or entry.failures >= MISSED_PINGS
                slot = desired.get(key)
                if lost and slot is not None and slot.node_id == entry.slot.node_id:
                    logger.warning("segmenter lost, replacing it in place key=%s error=%s", key, info)
                    self.errors[key] = str(info)[:300]
                    kill_quietly(entry.handle)
                    self._start(key, entry.slot, replaces=entry)
                    continue
                if lost or key not in desired:
                    logger.warning("segmenter lost key=%s error=%s", key, info)
                    self.errors[key] = str(info)[:300]
                    kill_quietly(entry.handle)
                    del self.entries[key]
                    changed = True
                continue
            entry.failures, entry.restarting_since = 0, None
            if entry.incarnation != info["incarnation"]:
                entry.incarnation = info["incarnation"]
                entry.restarts += 1
            if info["node_id"] != entry.slot.node_id:  # Ray restarted it elsewhere (soft affinity)
                logger.info("segmenter moved key=%s node=%s", key, info["node_id"])
                entry.slot = SegmenterSlot(entry.slot.key, info["node_id"], entry.slot.weight)
                changed = True
        return changed

    @staticmethod
    def _restarting_for(entry: SegmenterEntry) -> float:
        """Seconds since Ray first said ``entry`` is restarting."""
        now = time.monotonic()
        if entry.restarting_since is None:
            entry.restarting_since = now
        return now - entry.restarting_since

    def _retire_surplus(self, desired: dict[str, SegmenterSlot]) -> bool:
        """Stop segmenters the cluster no longer wants, once their replacements run (capacity first)."""
        surplus = [key for key in self.entries if key not in desired]
        if not surplus or self._starting:
            return False
        for key in surplus:
            logger.info("segmenter retired key=%s", key)
            kill_quietly(self.entries.pop(key).handle)
        return True

    def _poll_starting(self) -> bool:
        changed = False
        for key, start in list(self._starting.items()):
            ready, _ = ray.wait([start.ping], timeout=0)
            if not ready:
                if time.monotonic() - start.since > START_TIMEOUT_S:
                    logger.error("segmenter did not start in time key=%s", key)
                    self.errors[key] = f"did not start in {START_TIMEOUT_S:g} s"
                    kill_quietly(start.handle)
                    del self._starting[key]
                    changed = self._drop_replaced(key, start) or changed
                continue
            del self._starting[key]
            try:
                info = ray.get(start.ping)
            except Exception as error:
                logger.error("segmenter failed to start key=%s error=%s", key, error)
                self.errors[key] = str(error)[:300]
                kill_quietly(start.handle)
                changed = self._drop_replaced(key, start) or changed
                continue
            slot = SegmenterSlot(key, info["node_id"], start.slot.weight)
            entry = SegmenterEntry(slot, start.handle, info["incarnation"], info["names"])
            if start.replaces is not None:
                entry.restarts = start.replaces.restarts + 1
                self.replaced += 1
                if slot.node_id == start.replaces.slot.node_id:  # else placement moves its cameras
                    self._handed[key] = start.handle
            self.entries[key] = entry
            self.errors.pop(key, None)
            changed = True
            logger.info("segmenter ready key=%s node=%s replaced=%s", key, slot.node_id, start.replaces is not None)
        return changed

    def _drop_replaced(self, key: str, start: _Starting) -> bool:
        """A replacement that did not start: the dead one's slot goes too (its cameras are moved)."""
        if start.replaces is None or self.entries.get(key) is not start.replaces:
            return False
        del self.entries[key]
        return True
